//! Appends audit entries from four tasks until it is killed, printing
//! `ack SEQ ENTRY_ID ENTRY_HASH` for every entry the store acknowledged as durable.
//!
//! `tests/audit_store.rs` runs it, kills it with SIGKILL mid-append, and checks that every
//! acknowledged entry is in the reopened store.

use std::error::Error;

use admission_server::store::{Append, Appended, AuditStore, NewEntry, Scope, StoreOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: audit_append_until_killed DATABASE_URL")?;
    let store = AuditStore::open(&url, StoreOptions::default()).await?;
    let mut writers = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                let append = Append {
                    entry: entry(&format!("child-{writer}-{i}")),
                    consume: Vec::new(),
                    on_refused: None,
                    idempotency: None,
                    admission: None,
                    approval_write: None,
                };
                match store.append(append).await {
                    Ok(Appended::Committed(receipt)) => println!(
                        "ack {} {} {}",
                        receipt.seq, receipt.entry_id, receipt.entry_hash
                    ),
                    other => return Err(format!("append {writer}-{i} failed: {other:?}")),
                }
            }
            Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(())
}

fn entry(entry_id: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        actor_cert_sha256: "0".repeat(64),
        initiated_by: "durability-test".to_owned(),
        action: "deploy.admit".to_owned(),
        scope: Scope {
            org_id: "acme".to_owned(),
            project_id: "payments".to_owned(),
            environment_id: "prod".to_owned(),
        },
        outcome: "admitted".to_owned(),
        grpc_code: "OK".to_owned(),
        ..NewEntry::default()
    }
}
