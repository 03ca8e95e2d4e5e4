//! The audit trail's Merkle tree on SQLite, and on PostgreSQL when `ADMISSION_TEST_DATABASE_URL`
//! is set: the stored tree equals `admission-log`'s in-memory tree over the entries' hashes,
//! its proofs verify, an older trail's tree is built at open, a failed batch stores no hash,
//! out-of-range arguments are `InvalidInput` naming the field, and checkpoints round-trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use admission_contract::Reason;
use admission_log::tree::{stored_hash_count, stored_hash_index, tree_hash};
use admission_log::{Hash, MemoryHashes, empty_root, verify_consistency, verify_inclusion};
use admission_server::app::failure::Failure;
use admission_server::domain::rejection::Rejection;
use admission_server::store::{
    Append, Appended, AuditStore, CommitObserver, IdempotencyKey, ListFilter, NewEntry, Scope,
    StoreError, StoreOptions,
};
use common::store::{Backend, TestDb};
use sqlx::Connection;

on_both_backends!(
    stored_tree_matches_the_memory_tree_and_proofs_verify,
    open_builds_a_missing_or_partial_tree,
    a_failed_batch_stores_no_tree_hash,
    out_of_range_arguments_are_invalid_input,
    checkpoints_and_leaves_round_trip,
    verify_tree_reports_stored_hashes_that_disagree,
);

/// Batch sizes of every group commit.
#[derive(Debug, Default)]
struct Batches(Mutex<Vec<usize>>);

impl CommitObserver for Batches {
    fn committed(&self, appends: usize, _took: Duration) {
        self.0.lock().unwrap().push(appends);
    }
}

fn options(batches: &Arc<Batches>) -> StoreOptions {
    StoreOptions {
        durable_timeout: Duration::from_secs(30),
        commit_observer: Some(batches.clone()),
        ..StoreOptions::default()
    }
}

fn entry(entry_id: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        action: "deploy.admit".to_owned(),
        scope: Scope {
            org_id: "acme".to_owned(),
            project_id: "payments".to_owned(),
            environment_id: "prod".to_owned(),
        },
        outcome: "admitted".to_owned(),
        grpc_code: "OK".to_owned(),
        request_id: format!("req-{entry_id}"),
        ..NewEntry::default()
    }
}

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

/// Appends `count` entries that queue while the chain lock is held elsewhere, so that the
/// writer commits them in batches of more than one.
async fn append_round(db: &TestDb, store: &AuditStore, prefix: &str, count: usize) {
    let lock = db.lock().await;
    let appends = (0..count).map(|i| store.append(plain(entry(&format!("{prefix}-{i}")))));
    let all = futures::future::join_all(appends);
    tokio::pin!(all);
    // One poll queues every append; the writer then waits on the lock with the first ones.
    assert!(futures::poll!(&mut all).is_pending());
    lock.release().await;
    for result in all.await {
        assert!(matches!(result, Ok(Appended::Committed(_))), "{result:?}");
    }
}

/// A trail of several batches: 1, 5, 9 and 16 appends, then 3 one by one.
async fn make_trail(db: &TestDb, store: &AuditStore) {
    for (round, count) in [1, 5, 9, 16].into_iter().enumerate() {
        append_round(db, store, &format!("r{round}"), count).await;
    }
    for i in 0..3 {
        let appended = store.append(plain(entry(&format!("single-{i}")))).await;
        assert!(matches!(appended, Ok(Appended::Committed(_))));
    }
}

/// The entry hashes, in seq order, as the entries record them.
async fn leaves(store: &AuditStore) -> Vec<Hash> {
    let mut leaves = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = store
            .list(&ListFilter::default(), 1000, &token)
            .await
            .unwrap();
        for entry in page {
            assert_eq!(entry.seq, leaves.len() as u64 + 1);
            let mut leaf = [0; 32];
            hex::decode_to_slice(&entry.entry_hash, &mut leaf).unwrap();
            leaves.push(leaf);
        }
        if next.is_empty() {
            return leaves;
        }
        token = next;
    }
}

fn memory_tree(leaves: &[Hash]) -> MemoryHashes {
    let mut tree = MemoryHashes::new();
    tree.append(leaves).unwrap();
    tree
}

/// Every size's root equals the in-memory tree's, and the head is the whole trail's.
async fn assert_tree_equals_entries(store: &AuditStore) -> Vec<Hash> {
    let leaves = leaves(store).await;
    let n = leaves.len() as u64;
    let memory = memory_tree(&leaves);
    assert_eq!(
        store.tree_head().await.unwrap(),
        (n, memory.root().unwrap())
    );
    for size in 0..=n {
        let expected = tree_hash(size, &memory).unwrap();
        assert_eq!(
            store.tree_root(size).await.unwrap(),
            expected,
            "size {size}"
        );
    }
    let report = store.verify_tree().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.tree_size, report.leaves_checked), (n, n));
    leaves
}

/// Rows of `audit_tree`, read on a connection of its own.
async fn stored_rows(db: &TestDb) -> u64 {
    let sql = "SELECT COUNT(*) FROM audit_tree";
    let count: i64 = match db.backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    };
    u64::try_from(count).unwrap()
}

async fn stored_tree_matches_the_memory_tree_and_proofs_verify(db: &TestDb) {
    let batches = Arc::new(Batches::default());
    let store = AuditStore::open(&db.url, options(&batches)).await.unwrap();
    make_trail(db, &store).await;
    let most = batches.0.lock().unwrap().iter().copied().max();
    assert!(most > Some(1), "batches {:?}", batches.0.lock().unwrap());

    let leaves = assert_tree_equals_entries(&store).await;
    let n = leaves.len() as u64;
    assert_eq!(n, 34);
    assert_eq!(stored_rows(db).await, stored_hash_count(n));
    let memory = memory_tree(&leaves);
    let roots: Vec<Hash> = (0..=n).map(|s| tree_hash(s, &memory).unwrap()).collect();
    for size in 1..=n {
        for index in 0..size {
            let proof = store.inclusion_proof(index, size).await.unwrap();
            let (leaf, root) = (&leaves[index as usize], &roots[size as usize]);
            verify_inclusion(index, size, leaf, &proof, root)
                .unwrap_or_else(|e| panic!("inclusion ({index}, {size}): {e}"));
        }
        for old in 1..=size {
            let proof = store.consistency_proof(old, size).await.unwrap();
            let (old_root, new_root) = (&roots[old as usize], &roots[size as usize]);
            verify_consistency(old, size, old_root, new_root, &proof)
                .unwrap_or_else(|e| panic!("consistency ({old}, {size}): {e}"));
        }
    }
}

async fn open_builds_a_missing_or_partial_tree(db: &TestDb) {
    let batches = Arc::new(Batches::default());
    let store = AuditStore::open(&db.url, options(&batches)).await.unwrap();
    make_trail(db, &store).await;
    let before = store.tree_head().await.unwrap();
    drop(store);

    // A trail from before the tree: no stored hash at all.
    db.execute("DELETE FROM audit_tree").await;
    let store = db.open().await;
    assert_eq!(store.tree_head().await.unwrap(), before);
    assert_tree_equals_entries(&store).await;
    drop(store);

    // The newest half of the hashes lost, ending part-way through a leaf's hashes.
    let half = stored_hash_count(before.0) / 2;
    assert_ne!(stored_hash_count(before.0 / 2), half);
    db.execute(&format!("DELETE FROM audit_tree WHERE idx >= {half}"))
        .await;
    let store = db.open().await;
    assert_eq!(store.tree_head().await.unwrap(), before);
    assert_tree_equals_entries(&store).await;

    // Hashes lost under a running store: its appends leave the gap to the build, which the
    // next open completes, including the entries appended meanwhile.
    db.execute("DELETE FROM audit_tree").await;
    let appended = store.append(plain(entry("while-short"))).await;
    assert!(matches!(appended, Ok(Appended::Committed(_))));
    assert_eq!(stored_rows(db).await, 0);
    assert_eq!(store.tree_head().await, Err(StoreError::Unavailable));
    assert!(!store.verify_tree().await.unwrap().ok);
    drop(store);
    let store = db.open().await;
    assert_eq!(store.tree_head().await.unwrap().0, before.0 + 1);
    assert_tree_equals_entries(&store).await;
    assert_eq!(stored_rows(db).await, stored_hash_count(before.0 + 1));
}

async fn a_failed_batch_stores_no_tree_hash(db: &TestDb) {
    let store = db.open().await;
    make_trail(db, &store).await;
    let (size, root) = store.tree_head().await.unwrap();
    // The idempotency rows are written after the entries and their tree hashes: refusing one
    // fails the batch after its hashes were inserted in the transaction.
    db.execute(if db.is_postgres() {
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.request_id = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_boom BEFORE INSERT ON idempotency \
         FOR EACH ROW EXECUTE FUNCTION refuse_boom();"
    } else {
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON idempotency \
         WHEN NEW.request_id = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END;"
    })
    .await;
    let boom = Append {
        idempotency: Some(IdempotencyKey {
            caller: "spiffe://acme.example/orchestrator/ci".to_owned(),
            request_id: "boom".to_owned(),
            fingerprint: "fp".to_owned(),
        }),
        ..plain(entry("boom"))
    };
    assert_eq!(store.append(boom).await, Err(StoreError::Unavailable));
    assert_eq!(store.tree_head().await.unwrap(), (size, root));
    assert_eq!(stored_rows(db).await, stored_hash_count(size));

    let after = store.append(plain(entry("after"))).await;
    assert!(matches!(after, Ok(Appended::Committed(ref r)) if r.seq == size + 1));
    assert_tree_equals_entries(&store).await;
    assert_eq!(stored_rows(db).await, stored_hash_count(size + 1));
}

/// The `InvalidInput` error and what a caller is answered for it.
fn assert_invalid(
    result: Result<impl std::fmt::Debug, StoreError>,
    field: &'static str,
    text: &str,
) {
    let Err(error) = result else {
        panic!("expected InvalidInput on {field}, got {result:?}");
    };
    assert_eq!(
        error,
        StoreError::InvalidInput {
            field,
            description: text.to_owned()
        }
    );
    let unavailable = || Rejection::new(Reason::AuditUnavailable, "unused");
    let Failure::Rejected(rejection) = Failure::from_store(error, unavailable) else {
        panic!("{field}: expected a rejection");
    };
    assert_eq!(rejection.reason, Reason::RequestInvalid);
    assert_eq!(rejection.message, format!("{field} {text}"));
}

async fn out_of_range_arguments_are_invalid_input(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.tree_head().await.unwrap(), (0, empty_root()));
    assert_eq!(store.tree_root(0).await.unwrap(), empty_root());
    let beyond = "is 1, beyond the tree size 0";
    assert_invalid(store.tree_root(1).await, "tree_size", beyond);
    assert_invalid(
        store.inclusion_proof(0, 0).await,
        "leaf_index",
        "is 0, not below the tree size 0",
    );
    assert_invalid(store.consistency_proof(1, 1).await, "new_size", beyond);

    for i in 0..3 {
        let appended = store.append(plain(entry(&format!("e{i}")))).await;
        assert!(matches!(appended, Ok(Appended::Committed(_))));
    }
    let beyond = "is 4, beyond the tree size 3";
    assert_invalid(store.tree_root(4).await, "tree_size", beyond);
    assert_invalid(store.inclusion_proof(0, 4).await, "tree_size", beyond);
    assert_invalid(
        store.inclusion_proof(3, 3).await,
        "leaf_index",
        "is 3, not below the tree size 3",
    );
    assert_invalid(
        store.inclusion_proof(u64::MAX, 2).await,
        "leaf_index",
        &format!("is {}, not below the tree size 2", u64::MAX),
    );
    assert_invalid(store.consistency_proof(1, 4).await, "new_size", beyond);
    assert_invalid(
        store.consistency_proof(3, 2).await,
        "old_size",
        "is 3, above new_size 2",
    );
    assert_invalid(
        store.consistency_proof(0, 2).await,
        "old_size",
        "must be at least 1",
    );
    assert_invalid(store.save_checkpoint(4, "note").await, "tree_size", beyond);
    assert_invalid(
        store.tree_root(u64::MAX).await,
        "tree_size",
        &format!("is {}, beyond the tree size 3", u64::MAX),
    );
    assert_eq!(
        store.consistency_proof(3, 3).await.unwrap(),
        Vec::<Hash>::new()
    );
    assert_eq!(
        store.inclusion_proof(0, 1).await.unwrap(),
        Vec::<Hash>::new()
    );
}

async fn checkpoints_and_leaves_round_trip(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let mut receipts = Vec::new();
    for i in 0..3 {
        match store.append(plain(entry(&format!("e{i}")))).await {
            Ok(Appended::Committed(receipt)) => receipts.push(receipt),
            other => panic!("expected a commit, got {other:?}"),
        }
    }
    let before = SystemTime::now() - Duration::from_micros(1);
    store.save_checkpoint(1, "note of 1\n").await.unwrap();
    store.save_checkpoint(3, "note of 3\n").await.unwrap();
    // The same size again keeps the first note.
    store
        .save_checkpoint(3, "another note of 3\n")
        .await
        .unwrap();
    store.save_checkpoint(2, "note of 2\n").await.unwrap();
    let (size, note, created_at) = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!((size, note.as_str()), (3, "note of 3\n"));
    assert!(before <= created_at && created_at <= SystemTime::now());

    for receipt in &receipts {
        assert_eq!(
            store.leaf_of(&receipt.entry_id).await.unwrap(),
            Some((receipt.seq - 1, receipt.entry_hash.clone()))
        );
    }
    assert_eq!(store.leaf_of("not-recorded").await.unwrap(), None);
}

async fn verify_tree_reports_stored_hashes_that_disagree(db: &TestDb) {
    let store = db.open().await;
    make_trail(db, &store).await;
    let (size, _) = store.tree_head().await.unwrap();
    drop(store);
    let copy_leaf_0_to = |index: u64| {
        format!(
            "UPDATE audit_tree SET hash = (SELECT hash FROM audit_tree WHERE idx = 0) \
             WHERE idx = {index}"
        )
    };
    let expected = |first_bad_leaf: u64, problem: &str| admission_server::store::TreeReport {
        ok: false,
        tree_size: size,
        leaves_checked: first_bad_leaf,
        first_bad_leaf: Some(first_bad_leaf),
        problem: problem.to_owned(),
    };

    // A leaf hash changed: reported at its leaf. The store still opens.
    assert_eq!(stored_hash_index(0, 5), 8);
    db.execute(&copy_leaf_0_to(8)).await;
    let store = db.open().await;
    assert_eq!(
        store.verify_tree().await.unwrap(),
        expected(5, "the stored hash 8 (level 0) differs from the entries")
    );
    // The chain itself is intact, and Audit.Verify reports the tree at that entry.
    assert!(store.verify().await.unwrap().ok);
    let verified = admission_server::app::audit::verify(&store, Default::default())
        .await
        .unwrap();
    assert!(!verified.ok);
    assert_eq!(verified.first_bad_seq, 0);
    let tree = verified.tree.expect("the tree check");
    assert!(!tree.ok);
    assert_eq!((tree.tree_size, tree.first_bad_seq), (size, 6));
    assert_eq!(
        tree.problem,
        "the stored hash 8 (level 0) differs from the entries"
    );
    drop(store);

    // An interior hash changed too (leaves 0–1's subtree, not on the root's path): reported at
    // the leaf that completes it, the first one.
    assert_eq!(stored_hash_index(1, 0), 2);
    db.execute(&copy_leaf_0_to(2)).await;
    let store = db.open().await;
    assert_eq!(
        store.verify_tree().await.unwrap(),
        expected(1, "the stored hash 2 (level 1) differs from the entries")
    );
}
