//! CPU time of audit appends: `cargo run --release -p admission-server --example
//! audit_append_cpu -- DATABASE_URL [APPENDS] [TASKS]` appends APPENDS entries (default 20000)
//! from TASKS concurrent tasks (default 64, so the writer group-commits) to a fresh store and
//! prints this process's user and system CPU time per append (SQLite's work included; a
//! PostgreSQL server's own work is not). Used to measure what keeping the Merkle tree costs.

use std::error::Error;
use std::time::Instant;

use admission_server::store::{Append, Appended, AuditStore, NewEntry, Scope, StoreOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: audit_append_cpu DATABASE_URL [APPENDS] [TASKS]")?;
    let appends: u64 = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let tasks: u64 = args.next().map_or(Ok(64), |a| a.parse())?;
    let store = AuditStore::open(&url, StoreOptions::default()).await?;
    let cpu_before = cpu_seconds()?;
    let wall = Instant::now();
    let mut writers = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in (task..appends).step_by(tasks as usize) {
                let append = Append {
                    entry: entry(&format!("cpu-{i}")),
                    consume: Vec::new(),
                    on_refused: None,
                    idempotency: None,
                    admission: None,
                    approval_write: None,
                };
                match store.append(append).await {
                    Ok(Appended::Committed(_)) => {}
                    other => return Err(format!("append {i} failed: {other:?}")),
                }
            }
            Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let cpu = cpu_seconds()? - cpu_before;
    let wall = wall.elapsed().as_secs_f64();
    println!(
        "appends {appends} tasks {tasks}: cpu {:.1} µs/append, wall {:.1} µs/append",
        cpu * 1e6 / appends as f64,
        wall * 1e6 / appends as f64
    );
    Ok(())
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux, in clock
/// ticks of 1/100 s).
fn cpu_seconds() -> Result<f64, Box<dyn Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn entry(entry_id: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        actor_cert_sha256: "0".repeat(64),
        initiated_by: "cpu-measure".to_owned(),
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
