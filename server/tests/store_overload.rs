//! Admission control of the audit writer, on SQLite and on PostgreSQL when
//! `ADMISSION_TEST_DATABASE_URL` is set: an append is refused `Overloaded` at once when the
//! queue is full, and when it waited in the queue past its bound; nothing is recorded for
//! either, and the store stays healthy, because being busy is not failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use admission_server::store::{
    Append, Appended, AuditStore, ListFilter, NewEntry, StoreError, StoreOptions,
};
use common::store::TestDb;

on_both_backends!(full_queue_and_stale_appends_are_refused_unrecorded);

fn append(entry_id: &str) -> Append {
    Append {
        entry: NewEntry {
            entry_id: entry_id.to_owned(),
            actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
            outcome: "admitted".to_owned(),
            ..NewEntry::default()
        },
        consume: Vec::new(),
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    }
}

async fn full_queue_and_stale_appends_are_refused_unrecorded(db: &TestDb) {
    let options = StoreOptions {
        durable_timeout: Duration::from_secs(20),
        queue_capacity: 1,
        max_queue_wait: Duration::from_millis(300),
        idle_probe_interval: Duration::from_secs(600),
        ..StoreOptions::default()
    };
    let store = AuditStore::open(&db.url, options).await.unwrap();
    assert!(matches!(
        store.append(append("before")).await,
        Ok(Appended::Committed(_))
    ));
    let mut health = store.health();
    assert!(*health.borrow_and_update());

    // The writer takes "first" and waits for the lock; "second" waits in the queue.
    let lock = db.lock().await;
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.append(append("first")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn({
        let store = store.clone();
        async move { store.append(append("second")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The queue is full: refused without waiting for the writer.
    assert_eq!(
        store.append(append("third")).await,
        Err(StoreError::Overloaded)
    );
    // "second" outstays its queue bound while the writer is held up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;

    assert!(matches!(first.await.unwrap(), Ok(Appended::Committed(_))));
    assert_eq!(second.await.unwrap(), Err(StoreError::Overloaded));
    assert!(*health.borrow(), "a busy store is not unhealthy");
    assert!(!health.has_changed().unwrap(), "health never flipped");

    let (entries, _) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    let ids: Vec<_> = entries.iter().map(|e| e.entry.entry_id.as_str()).collect();
    assert_eq!(ids, ["before", "first"]);
    assert!(store.verify().await.unwrap().ok);
}
