//! `Audit.Verify` compares every idempotency row with the chain: its decision_id names an entry
//! of the same request and caller, and only an admitted entry has a stored admission. Rows are
//! edited in the database as an attacker with write access would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use admission_server::store::{
    Append, Appended, AuditStore, DerivedMismatch, IdempotencyKey, NewEntry, Receipt, Scope,
};
use common::store::TestDb;

on_both_backends!(verify_reports_idempotency_rows_the_chain_disagrees_with);

const CALLER: &str = "spiffe://acme.example/orchestrator/ci";

/// An append of a decision on `request_id`, keyed by it, with an admission when admitted.
fn keyed(request_id: &str, outcome: &str) -> Append {
    let admitted = outcome == "admitted";
    Append {
        entry: NewEntry {
            entry_id: format!("dec-{request_id}"),
            actor: CALLER.to_owned(),
            action: "deploy.admit".to_owned(),
            scope: Scope {
                org_id: "acme".to_owned(),
                project_id: "payments".to_owned(),
                environment_id: "prod".to_owned(),
            },
            outcome: outcome.to_owned(),
            grpc_code: if admitted { "OK" } else { "PERMISSION_DENIED" }.to_owned(),
            request_id: request_id.to_owned(),
            ..NewEntry::default()
        },
        consume: vec![],
        on_refused: None,
        idempotency: Some(IdempotencyKey {
            caller: CALLER.to_owned(),
            request_id: request_id.to_owned(),
            fingerprint: format!("fp-{request_id}"),
        }),
        admission: admitted.then(|| b"encoded admission".to_vec()),
        approval_write: None,
    }
}

async fn commit(store: &AuditStore, append: Append) -> Receipt {
    match store.append(append).await.unwrap() {
        Appended::Committed(receipt) => receipt,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Verify's mismatches after `sql`, which the next statement undoes (`undo`); the trail then
/// verifies clean again.
async fn mismatches_after(
    db: &TestDb,
    store: &AuditStore,
    sql: &str,
    undo: &str,
) -> Vec<DerivedMismatch> {
    db.execute(sql).await;
    let report = store.verify().await.unwrap();
    assert!(!report.ok, "{sql}: {report:?}");
    assert_eq!(report.first_bad_seq, 0, "{sql}: the chain itself is intact");
    db.execute(undo).await;
    let clean = store.verify().await.unwrap();
    assert!(clean.ok && clean.mismatches.is_empty(), "{undo}: {clean:?}");
    report.mismatches
}

fn mismatch(request_id: &str, field: &'static str, stored: &str, derived: &str) -> DerivedMismatch {
    DerivedMismatch {
        approval_id: String::new(),
        idempotency_key: Some((CALLER.to_owned(), request_id.to_owned())),
        field,
        stored: stored.to_owned(),
        derived: derived.to_owned(),
    }
}

async fn verify_reports_idempotency_rows_the_chain_disagrees_with(db: &TestDb) {
    let store = db.open().await;
    commit(&store, keyed("req-a", "admitted")).await;
    commit(&store, keyed("req-b", "admitted")).await;
    commit(&store, keyed("req-r", "rejected")).await;
    let clean = store.verify().await.unwrap();
    assert!(clean.ok && clean.mismatches.is_empty(), "{clean:?}");

    // A key pointed at another request's decision.
    assert_eq!(
        mismatches_after(
            db,
            &store,
            "UPDATE idempotency SET decision_id = 'dec-req-b' WHERE request_id = 'req-a'",
            "UPDATE idempotency SET decision_id = 'dec-req-a' WHERE request_id = 'req-a'",
        )
        .await,
        [mismatch(
            "req-a",
            "decision",
            "dec-req-b",
            &format!("entry records request req-b by {CALLER}"),
        )]
    );
    // A key whose decision has no entry at all.
    assert_eq!(
        mismatches_after(
            db,
            &store,
            "UPDATE idempotency SET decision_id = 'dec-gone' WHERE request_id = 'req-b'",
            "UPDATE idempotency SET decision_id = 'dec-req-b' WHERE request_id = 'req-b'",
        )
        .await,
        [mismatch("req-b", "decision", "dec-gone", "no entry")]
    );
    // A key moved to another caller: its entry records a different actor.
    assert_eq!(
        mismatches_after(
            db,
            &store,
            "UPDATE idempotency SET caller = 'mallory' WHERE request_id = 'req-a'",
            &format!("UPDATE idempotency SET caller = '{CALLER}' WHERE request_id = 'req-a'"),
        )
        .await,
        [DerivedMismatch {
            idempotency_key: Some(("mallory".to_owned(), "req-a".to_owned())),
            ..mismatch(
                "req-a",
                "decision",
                "dec-req-a",
                &format!("entry records request req-a by {CALLER}"),
            )
        }]
    );
    // A rejection given an admission, which a retry would then be answered with; and an
    // admission's stored answer removed.
    assert_eq!(
        mismatches_after(
            db,
            &store,
            "UPDATE idempotency SET admission = (SELECT i.admission FROM idempotency i \
             WHERE i.request_id = 'req-a') WHERE request_id = 'req-r'",
            "UPDATE idempotency SET admission = NULL WHERE request_id = 'req-r'",
        )
        .await,
        [mismatch(
            "req-r",
            "admission",
            "admission",
            "outcome rejected"
        )]
    );
    assert_eq!(
        mismatches_after(
            db,
            &store,
            "UPDATE idempotency SET admission = NULL WHERE request_id = 'req-b'",
            "UPDATE idempotency SET admission = (SELECT i.admission FROM idempotency i \
             WHERE i.request_id = 'req-a') WHERE request_id = 'req-b'",
        )
        .await,
        [mismatch(
            "req-b",
            "admission",
            "no admission",
            "outcome admitted"
        )]
    );

    // Deleting the entry a key names, keeping the key, breaks the chain itself: that is
    // reported by position, and nothing is derived from a broken chain.
    db.execute("DELETE FROM audit_entries WHERE entry_id = 'dec-req-b'")
        .await;
    let report = store.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, 3, "{report:?}");
    assert!(report.mismatches.is_empty(), "{report:?}");
}
