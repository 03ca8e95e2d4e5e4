//! Audit store behaviour on SQLite, and on PostgreSQL when `ADMISSION_TEST_DATABASE_URL` is set:
//! chain and listing, tamper detection, one chain across instances, atomic approval use,
//! idempotency, fail-closed with recovery, and durability of acknowledged entries across SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use admission_contract::{Reason, pb};
use admission_server::app::{audit as service, failure::Failure};
use admission_server::domain::approval::ApprovalState;
use admission_server::store::chain::GENESIS_HASH;
use admission_server::store::{
    Append, Appended, ApprovalRow, ApprovalUse, ApprovalWrite, AuditEntry, AuditStore,
    IdempotencyKey, ListFilter, NewEntry, Receipt, RefusalRecord, Scope, StoreError, StoreOptions,
    UseRefusal,
};
use common::store::TestDb;

on_both_backends!(
    list_pages_and_filters,
    verify_detects_edit_delete_and_reorder,
    verify_reads_text_with_tabs_newlines_and_backslashes,
    two_instances_extend_one_chain,
    single_use_approval_is_consumed_once,
    concurrent_batches_consume_uses_and_keep_keys,
    revoked_approval_is_refused,
    refused_shadow_admission_is_kept_for_retries,
    approval_writes_compare_and_set,
    idempotency_duplicate_and_conflict,
    unwritable_store_fails_closed_and_recovers,
    idle_store_reports_failure_without_traffic,
    acknowledged_entries_survive_sigkill,
);

/// The environment most tests use.
fn prod() -> Scope {
    scope("acme", "payments", "prod")
}

/// A scope.
fn scope(org: &str, project: &str, env: &str) -> Scope {
    Scope {
        org_id: org.to_owned(),
        project_id: project.to_owned(),
        environment_id: env.to_owned(),
    }
}

/// A deploy decision entry.
fn entry(entry_id: &str, scope: &Scope, outcome: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        actor_cert_sha256: "ab".repeat(32),
        initiated_by: "alice@acme.example".to_owned(),
        action: "deploy.admit".to_owned(),
        scope: scope.clone(),
        spec_hash: format!("sha256:{}", "cd".repeat(32)),
        capabilities: vec!["deploy".to_owned(), "db.migrate".to_owned()],
        approval_ids: vec![],
        approvers: vec![],
        outcome: outcome.to_owned(),
        reason: if outcome == "rejected" {
            "POLICY_DENIED".to_owned()
        } else {
            String::new()
        },
        grpc_code: if outcome == "rejected" {
            "PERMISSION_DENIED".to_owned()
        } else {
            "OK".to_owned()
        },
        request_id: format!("req-{entry_id}"),
        detail: "detail with = and : and\na newline".to_owned(),
    }
}

/// An append of just an entry.
fn plain(entry: NewEntry) -> Append {
    Append {
        entry,
        consume: vec![],
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    }
}

/// An idempotency key.
fn key(caller: &str, request_id: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        caller: caller.to_owned(),
        request_id: request_id.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

/// Appends and expects a commit.
async fn commit(store: &AuditStore, append: Append) -> Receipt {
    match store.append(append).await {
        Ok(Appended::Committed(receipt)) => receipt,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Every entry, following page tokens.
async fn list_all(store: &AuditStore, filter: &ListFilter, page_size: u32) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = store.list(filter, page_size, &token).await.unwrap();
        all.extend(page);
        if next.is_empty() {
            return all;
        }
        token = next;
    }
}

fn ids(entries: &[AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.entry.entry_id.clone()).collect()
}

async fn list_pages_and_filters(db: &TestDb) {
    let store = db.open().await;
    let scopes = [
        prod(),
        scope("acme", "payments", "staging"),
        scope("other", "web", "prod"),
    ];
    let mut appended = Vec::new();
    for i in 0..25 {
        let outcome = if i % 3 == 0 { "rejected" } else { "admitted" };
        let new = entry(&format!("dec-{i:02}"), &scopes[i % 3], outcome);
        let receipt = commit(&store, plain(new.clone())).await;
        assert_eq!(receipt.seq, i as u64 + 1);
        appended.push((new, receipt));
    }

    // Three pages of 10, 10 and 5, in seq order, chained, exactly as appended.
    let (first, token) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    assert_eq!(first.len(), 10);
    assert!(!token.is_empty());
    let (second, token) = store
        .list(&ListFilter::default(), 10, &token)
        .await
        .unwrap();
    assert_eq!(second.len(), 10);
    let (third, token) = store
        .list(&ListFilter::default(), 10, &token)
        .await
        .unwrap();
    assert_eq!(third.len(), 5);
    assert_eq!(token, "");
    let all: Vec<AuditEntry> = first.into_iter().chain(second).chain(third).collect();
    let mut prev = GENESIS_HASH.to_owned();
    for (listed, (new, receipt)) in all.iter().zip(&appended) {
        assert_eq!(&listed.entry, new);
        assert_eq!(listed.seq, receipt.seq);
        assert_eq!(listed.entry_hash, receipt.entry_hash);
        assert_eq!(listed.recorded_at, receipt.recorded_at);
        assert_eq!(listed.prev_hash, prev);
        prev.clone_from(&listed.entry_hash);
    }

    // Page size 0 means the default of 100: everything on one page.
    let (everything, token) = store.list(&ListFilter::default(), 0, "").await.unwrap();
    assert_eq!(everything.len(), 25);
    assert_eq!(token, "");

    let expect = |pred: &dyn Fn(&AuditEntry) -> bool| -> Vec<String> {
        ids(&all.iter().filter(|e| pred(e)).cloned().collect::<Vec<_>>())
    };
    let by_env = ListFilter {
        scope: Some(prod()),
        ..ListFilter::default()
    };
    let listed = list_all(&store, &by_env, 3).await;
    assert_eq!(ids(&listed), expect(&|e| e.entry.scope == prod()));
    assert_eq!(listed.len(), 9);

    let by_org = ListFilter {
        scope: Some(scope("acme", "", "")),
        ..ListFilter::default()
    };
    let listed = list_all(&store, &by_org, 4).await;
    assert_eq!(ids(&listed), expect(&|e| e.entry.scope.org_id == "acme"));
    assert_eq!(listed.len(), 17);

    let by_outcome = ListFilter {
        outcome: Some("rejected".to_owned()),
        ..ListFilter::default()
    };
    let listed = list_all(&store, &by_outcome, 2).await;
    assert_eq!(ids(&listed), expect(&|e| e.entry.outcome == "rejected"));
    assert_eq!(listed.len(), 9);

    let since = all[12].recorded_at;
    let by_time = ListFilter {
        since: Some(since),
        ..ListFilter::default()
    };
    let listed = list_all(&store, &by_time, 5).await;
    assert_eq!(ids(&listed), expect(&|e| e.recorded_at >= since));
    assert!(listed.len() >= 13);

    let combined = ListFilter {
        scope: Some(prod()),
        outcome: Some("admitted".to_owned()),
        since: Some(since),
    };
    let listed = list_all(&store, &combined, 1).await;
    assert_eq!(
        ids(&listed),
        expect(&|e| e.entry.scope == prod()
            && e.entry.outcome == "admitted"
            && e.recorded_at >= since)
    );

    assert_eq!(
        store.list(&ListFilter::default(), 10, "bogus!").await,
        Err(StoreError::InvalidPageToken)
    );

    // The service layer: wire types, and a bad token is REQUEST_INVALID on page_token.
    let response = service::list(
        &store,
        pb::ListAuditRequest {
            environment: Some(pb::EnvironmentRef {
                org_id: "acme".into(),
                project_id: "payments".into(),
                environment_id: "prod".into(),
            }),
            outcome: String::new(),
            since: None,
            page_size: 100,
            page_token: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(response.entries.len(), 9);
    assert_eq!(response.next_page_token, "");
    assert_eq!(response.entries[0], pb::AuditEntry::from(all[0].clone()));
    assert_eq!(response.entries[0].seq, 1);
    assert_eq!(
        response.entries[0]
            .resource_scope
            .as_ref()
            .unwrap()
            .environment_id,
        "prod"
    );
    let Failure::Rejected(rejection) = service::list(
        &store,
        pb::ListAuditRequest {
            page_token: "bogus".into(),
            ..pb::ListAuditRequest::default()
        },
    )
    .await
    .unwrap_err() else {
        panic!("a bad page token is a rejection");
    };
    assert_eq!(rejection.reason, Reason::RequestInvalid);
    assert_eq!(rejection.field_violations[0].0, "page_token");

    let verified = service::verify(&store, pb::VerifyAuditRequest {})
        .await
        .unwrap();
    assert_eq!(
        verified,
        pb::VerifyAuditResponse {
            ok: true,
            entries_checked: 25,
            first_bad_seq: 0,
            // The wire form of the stored hash.
            head_hash: format!("sha256:{}", appended[24].1.entry_hash),
            mismatches: Vec::new(),
            tree: Some(pb::TreeCheck {
                ok: true,
                tree_size: 25,
                first_bad_seq: 0,
                problem: String::new(),
            }),
        }
    );
}

/// A fresh database with 10 entries in `db`; returns the receipts.
async fn ten_entries(db: &TestDb) -> Vec<Receipt> {
    let store = db.open().await;
    let mut receipts = Vec::new();
    for i in 1..=10 {
        receipts.push(commit(&store, plain(entry(&format!("e{i}"), &prod(), "admitted"))).await);
    }
    receipts
}

/// Text that a bulk read has to escape (tabs, newlines, backslashes, a literal `\N`) verifies,
/// and an edit of it is still found.
async fn verify_reads_text_with_tabs_newlines_and_backslashes(db: &TestDb) {
    let store = db.open().await;
    let details = [
        "tab\there",
        "line\nbreak\r\n",
        r"back\slash \N \\",
        "\u{8}\u{b}\u{c} ünï",
    ];
    for (i, detail) in details.iter().enumerate() {
        let mut e = entry(&format!("esc-{i}"), &prod(), "admitted");
        e.detail = (*detail).to_owned();
        commit(&store, plain(e)).await;
    }
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, 4);
    let listed = list_all(&store, &ListFilter::default(), 10).await;
    let mut stored: Vec<&str> = listed.iter().map(|e| e.entry.detail.as_str()).collect();
    let mut written = details.to_vec();
    stored.sort_unstable();
    written.sort_unstable();
    assert_eq!(stored, written);

    db.execute("UPDATE audit_entries SET detail = 'line\nbreak' WHERE entry_id = 'esc-1'")
        .await;
    let report = store.verify().await.unwrap();
    assert_eq!((report.ok, report.first_bad_seq), (false, 2));
}

async fn verify_detects_edit_delete_and_reorder(db: &TestDb) {
    let store = db.open().await;
    let empty = store.verify().await.unwrap();
    assert_eq!(
        (
            empty.ok,
            empty.entries_checked,
            empty.first_bad_seq,
            empty.head_hash.as_str()
        ),
        (true, 0, 0, GENESIS_HASH)
    );
    drop(store);

    // Each case runs on its own copy of the chain.
    let cases: [(&str, u64, u64); 10] = [
        ("", 0, 10),
        (
            "UPDATE audit_entries SET detail = 'edited' WHERE seq = 4",
            4,
            10,
        ),
        (
            "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 10",
            10,
            10,
        ),
        (
            "UPDATE audit_entries SET capabilities = '[ \"deploy\",\"db.migrate\"]' WHERE seq = 6",
            6,
            10,
        ),
        (
            "UPDATE audit_entries SET recorded_at = recorded_at + 1 WHERE seq = 2",
            2,
            10,
        ),
        ("DELETE FROM audit_entries WHERE seq = 5", 6, 9),
        ("DELETE FROM audit_entries WHERE seq = 1", 2, 9),
        ("DELETE FROM audit_entries WHERE seq = 10", 10, 9),
        (
            "UPDATE audit_entries SET seq = -1 WHERE seq = 3; \
             UPDATE audit_entries SET seq = 3 WHERE seq = 7; \
             UPDATE audit_entries SET seq = 7 WHERE seq = -1;",
            3,
            10,
        ),
        // A forged row appended past the recorded head.
        (
            "INSERT INTO audit_entries SELECT 11, 'forged', recorded_at, actor, actor_cert_sha256, \
             initiated_by, action, org_id, project_id, environment_id, spec_hash, capabilities, \
             approval_ids, approvers, outcome, reason, grpc_code, request_id, detail, entry_hash, \
             entry_hash FROM audit_entries WHERE seq = 10",
            11,
            10,
        ),
    ];
    for (tamper, first_bad_seq, checked) in cases {
        let case_db = if db.is_postgres() {
            TestDb::postgres("verify case").await.unwrap()
        } else {
            TestDb::sqlite()
        };
        let receipts = ten_entries(&case_db).await;
        if !tamper.is_empty() {
            case_db.execute(tamper).await;
        }
        let store = case_db.open().await;
        let report = store.verify().await.unwrap();
        assert_eq!(report.ok, first_bad_seq == 0, "{tamper}");
        assert_eq!(report.first_bad_seq, first_bad_seq, "{tamper}");
        assert_eq!(report.entries_checked, checked, "{tamper}");
        if first_bad_seq == 0 {
            assert_eq!(report.head_hash, receipts[9].entry_hash);
        }
        drop(store);
        case_db.cleanup().await;
    }
}

async fn two_instances_extend_one_chain(db: &TestDb) {
    let first = db.open().await;
    let second = db.open().await;
    let mut tasks = Vec::new();
    for (n, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        for i in 0..100 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                commit(
                    &store,
                    plain(entry(&format!("s{n}-{i}"), &prod(), "admitted")),
                )
                .await
            }));
        }
    }
    let mut seqs = BTreeSet::new();
    for task in tasks {
        assert!(seqs.insert(task.await.unwrap().seq));
    }
    assert_eq!(seqs, (1..=200).collect::<BTreeSet<u64>>());
    let report = second.verify().await.unwrap();
    assert!(report.ok);
    assert_eq!(report.entries_checked, 200);
    assert_eq!(report.first_bad_seq, 0);
    let listed = list_all(&first, &ListFilter::default(), 1000).await;
    let listed_seqs: Vec<u64> = listed.iter().map(|e| e.seq).collect();
    assert_eq!(listed_seqs, (1..=200).collect::<Vec<u64>>());
    assert_eq!(report.head_hash, listed[199].entry_hash);
}

fn approval_use(approval_id: &str, max_uses: u32) -> ApprovalUse {
    ApprovalUse {
        approval_id: approval_id.to_owned(),
        max_uses,
        scope: prod(),
        spec_hash: format!("sha256:{}", "cd".repeat(32)),
        capabilities: vec!["deploy".to_owned()],
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        approvers: vec!["bob@acme.example".to_owned()],
    }
}

/// An admit that consumes `uses`, recording a rejection with the refusal if refused.
fn admit_consuming(entry_id: &str, uses: Vec<ApprovalUse>) -> Append {
    let mut admitted = entry(entry_id, &prod(), "admitted");
    admitted.approval_ids = uses.iter().map(|u| u.approval_id.clone()).collect();
    let rejected_id = entry_id.to_owned();
    Append {
        entry: admitted,
        consume: uses,
        on_refused: Some(Box::new(move |refusal: &UseRefusal| {
            let mut rejected = entry(&rejected_id, &prod(), "rejected");
            let (reason, code) = match refusal {
                UseRefusal::Revoked { .. } => ("APPROVAL_REVOKED", "PERMISSION_DENIED"),
                UseRefusal::Exhausted { .. } => ("APPROVAL_CONSUMED", "FAILED_PRECONDITION"),
            };
            rejected.reason = reason.to_owned();
            rejected.grpc_code = code.to_owned();
            RefusalRecord {
                entry: rejected,
                admission: None,
            }
        })),
        idempotency: None,
        admission: Some(b"admission".to_vec()),
        approval_write: None,
    }
}

/// Many appends at once on two instances, so batches hold several each: an offline
/// credential's first uses (the row is created in a batch that also counts later uses), uses
/// of the row once it exists, idempotency keys, and a retry of a stored admission. Exactly
/// `max_uses` are admitted, each key keeps its own answer, and the chain verifies.
async fn concurrent_batches_consume_uses_and_keep_keys(db: &TestDb) {
    let stores = [db.open().await, db.open().await];
    let spawn = |i: usize, request_id: String| {
        let store = stores[i % 2].clone();
        tokio::spawn(async move {
            let mut append = admit_consuming(&format!("many-{i}"), vec![approval_use("apr-m", 25)]);
            let caller = "spiffe://acme.example/orchestrator/ci";
            append.idempotency = Some(key(caller, &request_id, &format!("fp-{i}")));
            append.admission = Some(format!("admission-{i}").into_bytes());
            store.append(append).await.unwrap()
        })
    };
    let tasks: Vec<_> = (0..60).map(|i| spawn(i, format!("req-many-{i}"))).collect();
    let mut admitted = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Appended::Committed(_) => admitted.push(i),
            Appended::Refused { refusal, .. } => {
                assert!(matches!(
                    refusal,
                    UseRefusal::Exhausted { max_uses: 25, .. }
                ));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted.len(), 25);
    let row = stores[1].approval("apr-m").await.unwrap().unwrap();
    assert_eq!((row.uses, row.max_uses, row.version), (25, 25, 25));

    // A retry of an admitted request gets its own stored admission back, nothing recorded.
    let first = admitted[0];
    match spawn(first + 100, format!("req-many-{first}"))
        .await
        .unwrap()
    {
        Appended::RequestIdConflict { .. } => {}
        other => panic!("a different fingerprint is a conflict, got {other:?}"),
    }
    let mut retry = admit_consuming("retry", vec![approval_use("apr-m", 25)]);
    let (caller, request_id) = (
        "spiffe://acme.example/orchestrator/ci",
        format!("req-many-{first}"),
    );
    retry.idempotency = Some(key(caller, &request_id, &format!("fp-{first}")));
    match stores[0].append(retry).await.unwrap() {
        Appended::Duplicate { admission } => {
            assert_eq!(admission, format!("admission-{first}").into_bytes());
        }
        other => panic!("expected the stored admission, got {other:?}"),
    }
    let report = stores[0].verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, 60);
}

/// A shadow-mode admission decided inside the append (its use refused) is stored with the
/// idempotency key like any admission, with the hash of the entry that recorded it.
async fn refused_shadow_admission_is_kept_for_retries(db: &TestDb) {
    use prost::Message;

    let store = db.open().await;
    commit(
        &store,
        admit_consuming("first", vec![approval_use("apr_shadow", 1)]),
    )
    .await;

    let shadow = pb::Admission {
        decision_id: "second".to_owned(),
        shadow_reason: "APPROVAL_CONSUMED".to_owned(),
        ..pb::Admission::default()
    };
    let encoded = shadow.encode_to_vec();
    let mut append = admit_consuming("second", vec![approval_use("apr_shadow", 1)]);
    append.idempotency = Some(key("orchestrator", "req-shadow", "fp-1"));
    append.on_refused = Some(Box::new(move |_: &UseRefusal| RefusalRecord {
        entry: entry("second", &prod(), "admitted_shadow"),
        admission: Some(encoded),
    }));
    let Ok(Appended::Refused { receipt, .. }) = store.append(append).await else {
        panic!("the single use is gone, so the append is refused");
    };

    let (fingerprint, stored) = store
        .idempotency("orchestrator", "req-shadow")
        .await
        .unwrap()
        .expect("the request id is recorded");
    assert_eq!(fingerprint, "fp-1");
    let stored = pb::Admission::decode(stored.expect("admission kept").as_slice()).unwrap();
    assert_eq!(
        stored,
        pb::Admission {
            audit_entry_hash: receipt.entry_hash,
            ..shadow
        }
    );
}

async fn single_use_approval_is_consumed_once(db: &TestDb) {
    // Two instances on one database; the approval has no row yet (an offline credential).
    let stores = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(admit_consuming(
                    &format!("race-{i}"),
                    vec![approval_use("apr-1", 1)],
                ))
                .await
                .unwrap()
        }));
    }
    let (mut committed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Appended::Committed(_) => committed += 1,
            Appended::Refused { refusal, .. } => {
                assert_eq!(
                    refusal,
                    UseRefusal::Exhausted {
                        approval_id: "apr-1".to_owned(),
                        uses: 1,
                        max_uses: 1
                    }
                );
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((committed, refused), (1, 49));
    let row = stores[0].approval("apr-1").await.unwrap().unwrap();
    assert_eq!(
        (row.uses, row.max_uses, row.state.as_str()),
        (1, 1, "approved")
    );
    assert_eq!(row.scope, prod());
    assert_eq!(row.approvers, vec!["bob@acme.example".to_owned()]);

    let all = list_all(&stores[1], &ListFilter::default(), 100).await;
    assert_eq!(all.len(), 50);
    assert_eq!(
        all.iter().filter(|e| e.entry.outcome == "admitted").count(),
        1
    );
    assert_eq!(
        all.iter()
            .filter(|e| e.entry.reason == "APPROVAL_CONSUMED")
            .count(),
        49
    );
    assert!(stores[0].verify().await.unwrap().ok);

    // All or nothing: a second, fresh approval is not consumed when the first is exhausted.
    let refused = stores[0]
        .append(admit_consuming(
            "both",
            vec![approval_use("apr-2", 1), approval_use("apr-1", 1)],
        ))
        .await
        .unwrap();
    assert!(matches!(refused, Appended::Refused { .. }));
    assert_eq!(stores[0].approval("apr-2").await.unwrap(), None);
}

fn approval_row(approval_id: &str, state: &str, created_secs: u64) -> ApprovalRow {
    let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    ApprovalRow {
        approval_id: approval_id.to_owned(),
        state: state.parse().unwrap(),
        scope: prod(),
        action: "deploy".to_owned(),
        spec_hash: format!("sha256:{}", "cd".repeat(32)),
        capabilities: vec!["deploy".to_owned()],
        requested_by: "spiffe://acme.example/orchestrator/ci".to_owned(),
        initiated_by: "alice@acme.example".to_owned(),
        justification: "release 42".to_owned(),
        created_at: at(created_secs),
        expires_at: at(created_secs + 3600),
        approvals_required: 1,
        approvers: vec![],
        credentials: vec![],
        uses: 0,
        max_uses: 2,
        decision_reason: String::new(),
        version: 1,
        updated_at: at(created_secs),
    }
}

fn approval_event(entry_id: &str, outcome: &str, write: ApprovalWrite) -> Append {
    let mut event = entry(entry_id, &prod(), outcome);
    event.action = "approval.event".to_owned();
    Append {
        approval_write: Some(write),
        ..plain(event)
    }
}

async fn revoked_approval_is_refused(db: &TestDb) {
    let store = db.open().await;
    let row = approval_row("apr-r", "revoked", 1_800_000_000);
    commit(
        &store,
        approval_event("rev", "approval_revoked", ApprovalWrite::Insert(row)),
    )
    .await;
    let result = store
        .append(admit_consuming("try", vec![approval_use("apr-r", 5)]))
        .await
        .unwrap();
    let Appended::Refused { refusal, receipt } = result else {
        panic!("expected a refusal, got {result:?}");
    };
    assert_eq!(
        refusal,
        UseRefusal::Revoked {
            approval_id: "apr-r".to_owned()
        }
    );
    assert_eq!(receipt.seq, 2);
    let (entries, _) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    assert_eq!(entries[1].entry.reason, "APPROVAL_REVOKED");
    assert_eq!(entries[1].entry.outcome, "rejected");
    let row = store.approval("apr-r").await.unwrap().unwrap();
    assert_eq!((row.uses, row.version), (0, 1));

    // An approval write in a refused append is undone with the consumption.
    let mut fresh = approval_row("apr-new", "approved", 1_800_000_100);
    fresh.max_uses = 1;
    let mut append = admit_consuming("write-then-refuse", vec![approval_use("apr-r", 5)]);
    append.approval_write = Some(ApprovalWrite::Insert(fresh));
    let result = store.append(append).await.unwrap();
    assert!(matches!(result, Appended::Refused { .. }));
    assert_eq!(store.approval("apr-new").await.unwrap(), None);

    // Without an entry to record on refusal, a consuming append is a caller error.
    let mut missing = admit_consuming("no-fallback", vec![approval_use("apr-r", 5)]);
    missing.on_refused = None;
    assert_eq!(
        store.append(missing).await,
        Err(StoreError::MissingRefusalEntry)
    );
}

async fn approval_writes_compare_and_set(db: &TestDb) {
    let store = db.open().await;
    let older = approval_row("apr-old", "pending", 1_800_000_000);
    let newer = approval_row("apr-new", "pending", 1_800_000_500);
    commit(
        &store,
        approval_event(
            "c1",
            "approval_created",
            ApprovalWrite::Insert(older.clone()),
        ),
    )
    .await;
    commit(
        &store,
        approval_event(
            "c2",
            "approval_created",
            ApprovalWrite::Insert(newer.clone()),
        ),
    )
    .await;
    assert_eq!(
        store
            .append(approval_event(
                "c3",
                "approval_created",
                ApprovalWrite::Insert(newer.clone())
            ))
            .await
            .unwrap(),
        Appended::ApprovalVersionConflict
    );

    let mut approved = older.clone();
    approved.state = ApprovalState::Approved;
    approved.approvers = vec!["bob@acme.example".to_owned()];
    approved.credentials = vec!["payload.signature".to_owned()];
    let update = |row: ApprovalRow, expected_version| ApprovalWrite::Update {
        row,
        expected_version,
    };
    assert_eq!(
        store
            .append(approval_event(
                "d0",
                "approval_approved",
                update(approved.clone(), 7)
            ))
            .await
            .unwrap(),
        Appended::ApprovalVersionConflict
    );
    let receipt = commit(
        &store,
        approval_event("d1", "approval_approved", update(approved.clone(), 1)),
    )
    .await;
    assert_eq!(receipt.seq, 3);
    let stored = store.approval("apr-old").await.unwrap().unwrap();
    assert_eq!(
        stored,
        ApprovalRow {
            version: 2,
            ..approved.clone()
        }
    );
    // The same expected version again loses the race.
    assert_eq!(
        store
            .append(approval_event(
                "d2",
                "approval_approved",
                update(approved.clone(), 1)
            ))
            .await
            .unwrap(),
        Appended::ApprovalVersionConflict
    );

    // Consuming a use bumps uses and version.
    commit(
        &store,
        admit_consuming("use", vec![approval_use("apr-old", 1)]),
    )
    .await;
    let used = store.approval("apr-old").await.unwrap().unwrap();
    assert_eq!((used.uses, used.max_uses, used.version), (1, 2, 3));

    let eligible = store
        .approvals_for(&prod(), "deploy", &older.spec_hash)
        .await
        .unwrap();
    let order: Vec<&str> = eligible.iter().map(|r| r.approval_id.as_str()).collect();
    assert_eq!(order, ["apr-new", "apr-old"]);
    assert_eq!(eligible[0], newer);
    assert_eq!(
        store
            .approvals_for(
                &scope("acme", "payments", "staging"),
                "deploy",
                &older.spec_hash
            )
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(store.verify().await.unwrap().entries_checked, 4);
}

async fn idempotency_duplicate_and_conflict(db: &TestDb) {
    let store = db.open().await;
    let caller = "spiffe://acme.example/orchestrator/ci";
    let admitted = Append {
        idempotency: Some(key(caller, "req-1", "fp-a")),
        admission: Some(b"encoded admission".to_vec()),
        ..plain(entry("dec-1", &prod(), "admitted"))
    };
    let receipt = commit(&store, admitted).await;
    assert_eq!(
        store.idempotency(caller, "req-1").await.unwrap(),
        Some(("fp-a".to_owned(), Some(b"encoded admission".to_vec())))
    );
    assert_eq!(store.idempotency(caller, "req-2").await.unwrap(), None);
    assert_eq!(
        store.idempotency("someone-else", "req-1").await.unwrap(),
        None
    );

    let retry = Append {
        idempotency: Some(key(caller, "req-1", "fp-a")),
        admission: Some(b"another admission".to_vec()),
        ..plain(entry("dec-2", &prod(), "admitted"))
    };
    assert_eq!(
        store.append(retry).await.unwrap(),
        Appended::Duplicate {
            admission: b"encoded admission".to_vec()
        }
    );
    // A retry that was rejected (it read the state the admission left) gets the admission.
    let rejected_retry = Append {
        idempotency: Some(key(caller, "req-1", "fp-a")),
        ..plain(entry("dec-2r", &prod(), "rejected"))
    };
    assert_eq!(
        store.append(rejected_retry).await.unwrap(),
        Appended::Duplicate {
            admission: b"encoded admission".to_vec()
        }
    );
    let conflicting = Append {
        idempotency: Some(key(caller, "req-1", "fp-b")),
        ..plain(entry("dec-3", &prod(), "admitted"))
    };
    assert_eq!(
        store.append(conflicting).await.unwrap(),
        Appended::RequestIdConflict {
            decision_id: receipt.entry_id.clone()
        }
    );
    // Nothing was written for any of them.
    let report = store.verify().await.unwrap();
    assert_eq!(
        (report.entries_checked, report.head_hash),
        (1, receipt.entry_hash)
    );

    // A rejection keeps the key without an admission: the same request is decided again.
    let rejected = Append {
        idempotency: Some(key(caller, "req-9", "fp-r")),
        ..plain(entry("dec-9", &prod(), "rejected"))
    };
    commit(&store, rejected).await;
    assert_eq!(
        store.idempotency(caller, "req-9").await.unwrap(),
        Some(("fp-r".to_owned(), None))
    );
    let admitted_later = Append {
        idempotency: Some(key(caller, "req-9", "fp-r")),
        admission: Some(b"later".to_vec()),
        ..plain(entry("dec-10", &prod(), "admitted"))
    };
    commit(&store, admitted_later).await;
    assert_eq!(
        store.idempotency(caller, "req-9").await.unwrap(),
        Some(("fp-r".to_owned(), Some(b"later".to_vec())))
    );
    assert_eq!(
        store
            .append(plain(entry("dec-10", &prod(), "admitted")))
            .await,
        Err(StoreError::DuplicateEntryId)
    );
}

async fn unwritable_store_fails_closed_and_recovers(db: &TestDb) {
    let store = db.open_with(Duration::from_millis(500)).await;
    commit(&store, plain(entry("before", &prod(), "admitted"))).await;
    let mut health = store.health();
    assert!(*health.borrow());

    let lock = db.lock().await;
    assert_eq!(
        store
            .append(plain(entry("during", &prod(), "admitted")))
            .await,
        Err(StoreError::Unavailable)
    );
    health.wait_for(|healthy| !*healthy).await.unwrap();
    lock.release().await;
    // The probe notices recovery without any append and without reopening.
    health.wait_for(|healthy| *healthy).await.unwrap();

    let receipt = commit(&store, plain(entry("after", &prod(), "admitted"))).await;
    assert_eq!(receipt.seq, 2);
    let entries = list_all(&store, &ListFilter::default(), 10).await;
    assert_eq!(ids(&entries), ["before", "after"]);
    assert!(store.verify().await.unwrap().ok);
}

async fn idle_store_reports_failure_without_traffic(db: &TestDb) {
    let options = StoreOptions {
        durable_timeout: Duration::from_millis(500),
        idle_probe_interval: Duration::from_millis(100),
        ..StoreOptions::default()
    };
    let store = AuditStore::open(&db.url, options).await.unwrap();
    let mut health = store.health();
    assert!(*health.borrow());

    // No appends at all: the idle probe finds the store unwritable, then writable again.
    let lock = db.lock().await;
    health.wait_for(|healthy| !*healthy).await.unwrap();
    lock.release().await;
    health.wait_for(|healthy| *healthy).await.unwrap();
    commit(&store, plain(entry("after", &prod(), "admitted"))).await;
    assert!(store.verify().await.unwrap().ok);
}

/// Acknowledgements the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 40;

async fn acknowledged_entries_survive_sigkill(db: &TestDb) {
    // Create the schema first so the child starts appending at once.
    drop(db.open().await);
    let mut child = tokio::process::Command::new(append_until_killed())
        .arg(&db.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut acked = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(ack) = parse_ack(&line) {
            acked.push(ack);
            if acked.len() == ACKS_BEFORE_KILL {
                // SIGKILL while other appends are in flight.
                child.start_kill().unwrap();
                break;
            }
        }
    }
    // Acknowledgements printed before the kill are still in the pipe.
    while let Some(line) = lines.next_line().await.unwrap() {
        acked.extend(parse_ack(&line));
    }
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "the child must have been killed");
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let store = db.open().await;
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    let listed = list_all(&store, &ListFilter::default(), 1000).await;
    for (seq, entry_id, entry_hash) in &acked {
        let found = &listed[usize::try_from(*seq).unwrap() - 1];
        assert_eq!(
            (&found.entry.entry_id, &found.entry_hash),
            (entry_id, entry_hash)
        );
    }
    assert_eq!(report.entries_checked, listed.len() as u64);
    println!(
        "durability: {} acknowledged before SIGKILL, {} recorded",
        acked.len(),
        listed.len()
    );
}

fn parse_ack(line: &str) -> Option<(u64, String, String)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    let seq = parts.next()?.parse().ok()?;
    Some((seq, parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// The `audit_append_until_killed` example, which `cargo test` builds next to the test binaries
/// (`target/<profile>/examples/`).
fn append_until_killed() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir
        .join("examples")
        .join("audit_append_until_killed");
    assert!(
        path.exists(),
        "{} is missing; build it with cargo build -p admission-server --examples",
        path.display()
    );
    path
}

/// An in-memory SQLite database is refused at open, naming what to configure instead: the
/// trail would vanish with the process, and Verify reads the file through a connection of
/// its own.
#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused() {
    for url in ["sqlite::memory:", "sqlite://trail.db?mode=memory"] {
        match AuditStore::open(url, StoreOptions::default()).await {
            Err(StoreError::Open(message)) => {
                assert!(message.contains("in-memory"), "{url}: {message}");
                assert!(message.contains("sqlite://PATH"), "{url}: {message}");
            }
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url} was opened"),
        }
    }
}
