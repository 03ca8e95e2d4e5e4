//! recorded_at along the chain, on SQLite and on PostgreSQL when `ADMISSION_TEST_DATABASE_URL`
//! is set: the writer never records a batch earlier than the head entry (a clock stepped back),
//! so a `since` filter starts at one seek of the time index; a trail whose older entries are
//! out of order (written before that rule, found by the migration) is still listed exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use admission_server::store::chain::{self, GENESIS_HASH};
use admission_server::store::{Append, Appended, AuditStore, ListFilter, NewEntry, Receipt, Scope};
use common::store::TestDb;

on_both_backends!(
    a_batch_after_a_later_head_takes_its_time,
    older_entries_out_of_order_are_listed_exactly,
);

/// An admission entry in acme/payments/prod.
fn entry(entry_id: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        actor_cert_sha256: "ab".repeat(32),
        initiated_by: "alice@acme.example".to_owned(),
        action: "deploy.admit".to_owned(),
        scope: Scope {
            org_id: "acme".to_owned(),
            project_id: "payments".to_owned(),
            environment_id: "prod".to_owned(),
        },
        spec_hash: format!("sha256:{}", "cd".repeat(32)),
        capabilities: vec!["deploy".to_owned()],
        approval_ids: vec![],
        approvers: vec![],
        outcome: "admitted".to_owned(),
        reason: String::new(),
        grpc_code: "OK".to_owned(),
        request_id: format!("req-{entry_id}"),
        detail: String::new(),
    }
}

async fn commit(store: &AuditStore, entry_id: &str) -> Receipt {
    let append = Append {
        entry: entry(entry_id),
        consume: vec![],
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    };
    match store.append(append).await {
        Ok(Appended::Committed(receipt)) => receipt,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn micros(time: SystemTime) -> i64 {
    i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

/// Writes entry `planted-<seq>` at `recorded_at` after `prev` with SQL, as another writer (or
/// an earlier version) would have, and moves the head to it; returns its hash.
async fn plant(db: &TestDb, seq: u64, recorded_at: i64, prev: &str) -> String {
    let e = entry(&format!("planted-{seq}"));
    let hash = chain::entry_hash(seq, recorded_at, &e, prev);
    let list = chain::canonical_list;
    db.execute(&format!(
        "INSERT INTO audit_entries (seq, entry_id, recorded_at, actor, actor_cert_sha256, \
         initiated_by, action, org_id, project_id, environment_id, spec_hash, capabilities, \
         approval_ids, approvers, outcome, reason, grpc_code, request_id, detail, prev_hash, \
         entry_hash) VALUES ({seq}, '{}', {recorded_at}, '{}', '{}', '{}', '{}', '{}', '{}', \
         '{}', '{}', '{}', '{}', '{}', '{}', '', '{}', '{}', '', '{prev}', '{hash}')",
        e.entry_id,
        e.actor,
        e.actor_cert_sha256,
        e.initiated_by,
        e.action,
        e.scope.org_id,
        e.scope.project_id,
        e.scope.environment_id,
        e.spec_hash,
        list(&e.capabilities),
        list(&e.approval_ids),
        list(&e.approvers),
        e.outcome,
        e.grpc_code,
        e.request_id,
    ))
    .await;
    db.execute(&format!(
        "UPDATE audit_head SET seq = {seq}, entry_hash = '{hash}' WHERE id = 1"
    ))
    .await;
    hash
}

/// Entry ids listed with `since`, following page tokens (pages of 2).
async fn listed_since(store: &AuditStore, since: SystemTime) -> Vec<String> {
    let filter = ListFilter {
        since: Some(since),
        ..ListFilter::default()
    };
    let (mut ids, mut token) = (Vec::new(), String::new());
    loop {
        let (page, next) = store.list(&filter, 2, &token).await.unwrap();
        ids.extend(page.into_iter().map(|e| e.entry.entry_id));
        if next.is_empty() {
            return ids;
        }
        token = next;
    }
}

fn at(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap())
}

/// A head entry recorded an hour ahead of this clock (another replica's clock, or this one's
/// before it was stepped back): the next batch is recorded at the head's time, not earlier.
async fn a_batch_after_a_later_head_takes_its_time(db: &TestDb) {
    let store = db.open().await;
    let first = commit(&store, "first").await;
    let later = micros(SystemTime::now() + Duration::from_secs(3600));
    plant(db, 2, later, &first.entry_hash).await;

    let third = commit(&store, "third").await;
    assert_eq!(third.seq, 3);
    assert_eq!(third.recorded_at, at(later));

    assert_eq!(
        listed_since(&store, at(later)).await,
        ["planted-2", "third"]
    );
    assert!(listed_since(&store, at(later + 1)).await.is_empty());
    assert_eq!(
        listed_since(&store, first.recorded_at).await,
        ["first", "planted-2", "third"]
    );

    // The planted entry has no tree hashes yet; reopening completes the tree.
    drop(store);
    let report = db.open().await.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, 3);
}

/// A trail whose first entry is later than its second (a clock stepped back before this
/// version): the migration's statement finds where order starts, and `since` walks the trail
/// rather than trusting the time index's first match.
async fn older_entries_out_of_order_are_listed_exactly(db: &TestDb) {
    let store = db.open().await;
    let base = micros(SystemTime::now()) - 3_600_000_000;
    let h1 = plant(db, 1, base + 3_000, GENESIS_HASH).await;
    let h2 = plant(db, 2, base + 1_000, &h1).await;
    plant(db, 3, base + 2_000, &h2).await;

    let dir = if db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let path = format!(
        "{}/migrations/{dir}/0003_ordered_time.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    let migration = std::fs::read_to_string(&path).unwrap();
    let update = &migration[migration.find("UPDATE audit_head").unwrap()..];
    db.execute(update).await;

    // The time index's first match at or after base + 1500 is seq 3; seq 1 matches too.
    assert_eq!(
        listed_since(&store, at(base + 1_500)).await,
        ["planted-1", "planted-3"]
    );
    let fourth = commit(&store, "fourth").await;
    assert_eq!(
        listed_since(&store, at(base + 1_500)).await,
        ["planted-1", "planted-3", "fourth"]
    );
    assert_eq!(listed_since(&store, fourth.recorded_at).await, ["fourth"]);
    assert!(
        listed_since(&store, fourth.recorded_at + Duration::from_micros(1))
            .await
            .is_empty()
    );
}
