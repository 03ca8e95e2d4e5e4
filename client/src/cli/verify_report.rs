//! How `admissionctl audit verify` shows a Verify report, alone or after the consistency
//! check of `--since-checkpoint`: one line for people, one JSON object for machines.

use admission_contract::hash::wire_hash;
use admission_contract::pb;
use serde_json::{Value, json};

/// The report in words: ok, or what disagrees and where.
pub(super) fn verify_line(report: &pb::VerifyAuditResponse) -> String {
    if report.ok {
        format!(
            "ok: {} entries checked, head {}",
            report.entries_checked,
            wire_hash(&report.head_hash)
        )
    } else if let Some(tree) = report
        .tree
        .as_ref()
        .filter(|tree| !tree.ok && report.first_bad_seq == 0 && report.mismatches.is_empty())
    {
        format!(
            "TREE MISMATCH: the stored Merkle tree disagrees with the entries ({} entries \
             checked): {}",
            report.entries_checked, tree.problem
        )
    } else if report.first_bad_seq == 0 && !report.mismatches.is_empty() {
        let mut text = format!(
            "MISMATCH: {} row(s) disagree with the chain ({} entries checked)",
            report.mismatches.len(),
            report.entries_checked
        );
        for mismatch in &report.mismatches {
            let row = if mismatch.approval_id.is_empty() {
                format!("idempotency {} {}", mismatch.caller, mismatch.request_id)
            } else {
                format!("approval {}", mismatch.approval_id)
            };
            text.push_str(&format!(
                "\n{row}: {} stored {:?}, chain records {:?}",
                mismatch.field, mismatch.stored, mismatch.derived
            ));
        }
        text
    } else {
        format!(
            "TAMPERED: first bad seq {} ({} entries checked)",
            report.first_bad_seq, report.entries_checked
        )
    }
}

/// The report as JSON, every field with hashes in the wire format.
pub(super) fn verify_json(report: &pb::VerifyAuditResponse) -> Value {
    json!({
        "ok": report.ok,
        "entries_checked": report.entries_checked,
        "first_bad_seq": report.first_bad_seq,
        "head_hash": wire_hash(&report.head_hash),
        "mismatches": report.mismatches.iter().map(|mismatch| json!({
            "approval_id": mismatch.approval_id,
            "caller": mismatch.caller,
            "request_id": mismatch.request_id,
            "field": mismatch.field,
            "stored": mismatch.stored,
            "derived": mismatch.derived,
        })).collect::<Vec<_>>(),
        "tree": report.tree.as_ref().map(|tree| json!({
            "ok": tree.ok,
            "tree_size": tree.tree_size,
            "first_bad_seq": tree.first_bad_seq,
            "problem": tree.problem,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_lines() {
        let ok = pb::VerifyAuditResponse {
            ok: true,
            entries_checked: 3,
            first_bad_seq: 0,
            head_hash: "ab".repeat(32),
            mismatches: Vec::new(),
            tree: None,
        };
        assert_eq!(
            verify_line(&ok),
            format!("ok: 3 entries checked, head sha256:{}", "ab".repeat(32))
        );
        // A server that sends the bare hex reads the same.
        let prefixed = pb::VerifyAuditResponse {
            head_hash: format!("sha256:{}", "ab".repeat(32)),
            ..ok.clone()
        };
        assert_eq!(verify_line(&prefixed), verify_line(&ok));
        let bad = pb::VerifyAuditResponse {
            ok: false,
            entries_checked: 9,
            first_bad_seq: 6,
            head_hash: String::new(),
            mismatches: Vec::new(),
            tree: None,
        };
        assert_eq!(
            verify_line(&bad),
            "TAMPERED: first bad seq 6 (9 entries checked)"
        );
        let tree = pb::VerifyAuditResponse {
            ok: false,
            entries_checked: 9,
            first_bad_seq: 0,
            head_hash: "ab".repeat(32),
            mismatches: Vec::new(),
            tree: Some(pb::TreeCheck {
                ok: false,
                tree_size: 9,
                first_bad_seq: 6,
                problem: "the stored hash 8 (level 0) differs from the entries".into(),
            }),
        };
        assert_eq!(
            verify_line(&tree),
            "TREE MISMATCH: the stored Merkle tree disagrees with the entries (9 entries \
             checked): the stored hash 8 (level 0) differs from the entries"
        );
        let mismatched = pb::VerifyAuditResponse {
            ok: false,
            entries_checked: 4,
            first_bad_seq: 0,
            head_hash: "ab".repeat(32),
            mismatches: vec![
                pb::DerivedStateMismatch {
                    approval_id: "apr_1".into(),
                    field: "uses".into(),
                    stored: "0".into(),
                    derived: "1".into(),
                    ..pb::DerivedStateMismatch::default()
                },
                pb::DerivedStateMismatch {
                    field: "decision".into(),
                    stored: "dec_2".into(),
                    derived: "no entry".into(),
                    caller: "ci".into(),
                    request_id: "r-1".into(),
                    ..pb::DerivedStateMismatch::default()
                },
            ],
            tree: None,
        };
        assert_eq!(
            verify_line(&mismatched),
            "MISMATCH: 2 row(s) disagree with the chain (4 entries checked)\n\
             approval apr_1: uses stored \"0\", chain records \"1\"\n\
             idempotency ci r-1: decision stored \"dec_2\", chain records \"no entry\""
        );
    }
}
