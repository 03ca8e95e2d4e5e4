//! The state the chain implies for each approval (uses consumed, revocation), and its
//! comparison with the `approvals` table: the chain is the record, the table a cache of it.

use std::collections::HashMap;

use futures::TryStreamExt;

use super::*;
use crate::domain::approval::ApprovalState;
use crate::domain::outcome::Outcome;
use crate::store::DerivedMismatch;

/// Approval rows read per query while comparing: bounds the rows held at once.
const ROW_CHUNK: i64 = 10_000;

/// What the chain records about one approval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Recorded {
    /// Uses consumed by admissions.
    uses: u64,
    /// Whether a revocation entry names it.
    revoked: bool,
}

/// Per approval id, what the entries walked so far record.
#[derive(Clone, Debug, Default)]
pub(super) struct DerivedState {
    approvals: HashMap<String, Recorded>,
}

/// A disagreement, and whether a write that committed after the walk could explain it (a use
/// consumed or a revocation made meanwhile only ever raises what the table holds).
pub(super) struct Found {
    pub(super) mismatch: DerivedMismatch,
    pub(super) maybe_later_write: bool,
}

// === impl DerivedState ===

impl DerivedState {
    /// Counts what one entry records: every admitted outcome consumed one use of each approval
    /// it names (a shadow admission whose use was refused names none), and a revocation entry
    /// revokes its approval. Other entries (rejections, previews, reviews) change no use.
    pub(super) fn record(&mut self, outcome: &str, approval_ids: &str) {
        let Ok(outcome) = outcome.parse::<Outcome>() else {
            return;
        };
        let consumes = matches!(
            outcome,
            Outcome::Admitted | Outcome::AdmittedBreakGlass | Outcome::AdmittedShadow
        );
        let revokes = outcome == Outcome::ApprovalRevoked;
        if !(consumes || revokes) || approval_ids == "[]" {
            return;
        }
        // The walk has already checked the list is canonical JSON; a row that is not fails
        // its hash and the chain is reported broken instead.
        let Ok(ids) = serde_json::from_str::<Vec<String>>(approval_ids) else {
            return;
        };
        for id in ids {
            let recorded = self.approvals.entry(id).or_default();
            if consumes {
                recorded.uses += 1;
            }
            recorded.revoked |= revokes;
        }
    }

    /// Compares one stored row with the chain and forgets the approval (what is left after
    /// the last row has no row at all).
    fn compare(&mut self, id: &str, state: &str, uses: i64, found: &mut Vec<Found>) {
        let recorded = self.approvals.remove(id).unwrap_or_default();
        let stored_uses = u64::try_from(uses).ok();
        if stored_uses != Some(recorded.uses) {
            found.push(Found {
                maybe_later_write: stored_uses.is_some_and(|stored| stored > recorded.uses),
                mismatch: mismatch(id, "uses", uses.to_string(), recorded.uses.to_string()),
            });
        }
        let stored_revoked = state == ApprovalState::Revoked.as_str();
        if recorded.revoked != stored_revoked {
            let derived = if recorded.revoked {
                ApprovalState::Revoked.as_str().to_owned()
            } else {
                "not revoked".to_owned()
            };
            found.push(Found {
                maybe_later_write: stored_revoked,
                mismatch: mismatch(id, "state", state.to_owned(), derived),
            });
        }
    }

    /// Approvals the chain consumed or revoked that no stored row matched.
    fn rowless(self, found: &mut Vec<Found>) {
        let mut left: Vec<_> = self.approvals.into_iter().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, recorded) in left {
            let derived = format!("uses {}", recorded.uses);
            found.push(Found {
                maybe_later_write: false,
                mismatch: mismatch(&id, "row", String::new(), derived),
            });
        }
    }
}

fn mismatch(id: &str, field: &'static str, stored: String, derived: String) -> DerivedMismatch {
    DerivedMismatch {
        approval_id: id.to_owned(),
        idempotency_key: None,
        field,
        stored,
        derived,
    }
}

// === impl Db ===

impl Db {
    /// Every approval row compared with `derived`, in approval id order, `ROW_CHUNK` rows at
    /// a time; then the approvals the chain names that have no row.
    pub(super) async fn derived_mismatches(
        &self,
        mut derived: DerivedState,
    ) -> Result<Vec<Found>, StoreError> {
        const ROWS: &str = "SELECT approval_id, state, uses FROM approvals \
             WHERE approval_id > $1 ORDER BY approval_id LIMIT $2";
        let mut found = Vec::new();
        let mut after = String::new();
        loop {
            let mut read = 0;
            let start = std::mem::take(&mut after);
            on_backend!(Db, self, pool => {
                let mut rows = sqlx::query_as::<_, (String, String, i64)>(ROWS)
                    .bind(start.as_str())
                    .bind(ROW_CHUNK)
                    .fetch(pool);
                while let Some((id, state, uses)) = rows.try_next().await.map_err(unavailable)? {
                    derived.compare(&id, &state, uses, &mut found);
                    read += 1;
                    after = id;
                }
            });
            if read < ROW_CHUNK {
                break;
            }
        }
        derived.rowless(&mut found);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compared(derived: &mut DerivedState, id: &str, state: &str, uses: i64) -> Vec<String> {
        let mut found = Vec::new();
        derived.compare(id, state, uses, &mut found);
        found
            .iter()
            .map(|f| {
                let m = &f.mismatch;
                format!(
                    "{} {} {}/{} {}",
                    m.approval_id, m.field, m.stored, m.derived, f.maybe_later_write
                )
            })
            .collect()
    }

    #[test]
    fn admissions_consume_and_revocations_revoke() {
        let mut derived = DerivedState::default();
        derived.record("admitted", r#"["a","b"]"#);
        derived.record("admitted_shadow", r#"["a"]"#);
        derived.record("admitted_break_glass", "[]");
        derived.record("rejected", r#"["a"]"#);
        derived.record("previewed", r#"["a"]"#);
        derived.record("approval_approved", r#"["b"]"#);
        derived.record("approval_revoked", r#"["b"]"#);
        assert!(compared(&mut derived, "a", "approved", 2).is_empty());
        assert_eq!(
            compared(&mut derived, "b", "approved", 0),
            ["b uses 0/1 false", "b state approved/revoked false"]
        );
        assert_eq!(
            compared(&mut derived, "c", "revoked", 3),
            ["c uses 3/0 true", "c state revoked/not revoked true"]
        );
        derived.record("admitted", r#"["gone"]"#);
        let mut found = Vec::new();
        derived.rowless(&mut found);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].mismatch,
            mismatch("gone", "row", String::new(), "uses 1".into())
        );
        assert!(!found[0].maybe_later_write);
    }
}
