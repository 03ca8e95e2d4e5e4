//! Writes a small log's public artefacts into a directory, for verifiers that are not this
//! crate (`tests/transparency/verify_fixtures.py`): `log.pub`, `spec.kv`, `receipt.json`, two
//! signed checkpoints and `proofs.json` with the entry hashes, inclusion proofs and a
//! consistency proof (hashes base64, as in the proto3 JSON of the Audit RPCs).
//!
//! Usage: `cargo run -p admission-log --example transparency_fixtures -- DIR`

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use admission_log::{
    Checkpoint, Hash, LogError, LogKey, MemoryHashes, ReceiptFacts, Statement, sign_receipt,
    tree::{prove_consistency, prove_inclusion, tree_hash},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "admission.example/fixtures";
const SPEC: &str = "image=registry.example/app:2.1\nreplicas=3\n";
const OLD_SIZE: u64 = 5;
const NEW_SIZE: u64 = 13;
/// The seq the receipt is about.
const RECEIPT_SEQ: u64 = 9;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: transparency_fixtures DIR");
        return ExitCode::from(2);
    };
    match write_fixtures(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("transparency_fixtures: {error}");
            ExitCode::FAILURE
        }
    }
}

fn write_fixtures(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let (key, _) = LogKey::generate(ORIGIN)?;
    let entries: Vec<Hash> = (1..=NEW_SIZE)
        .map(|seq| Sha256::digest(format!("entry {seq}")).into())
        .collect();
    let mut tree = MemoryHashes::new();
    tree.append(&entries)?;

    let checkpoint = |size: u64| -> Result<String, LogError> {
        Checkpoint::new(ORIGIN, size, tree_hash(size, &tree)?)?.sign(&key)
    };
    std::fs::write(dir.join("log.pub"), key.verifier().to_pub_file())?;
    std::fs::write(dir.join("checkpoint-old.txt"), checkpoint(OLD_SIZE)?)?;
    std::fs::write(dir.join("checkpoint-new.txt"), checkpoint(NEW_SIZE)?)?;

    let facts = ReceiptFacts {
        decision_id: "dec_fixture_9".to_owned(),
        environment: "acme/shop/prod".to_owned(),
        action: "deploy".to_owned(),
        approval_ids: vec!["apr_fixture".to_owned()],
        decided_at: SystemTime::now(),
        seq: RECEIPT_SEQ,
        entry_hash: hex::encode(entries[(RECEIPT_SEQ - 1) as usize]),
        break_glass: false,
    };
    let statement = Statement::new(SPEC.as_bytes(), &facts, ORIGIN)?;
    std::fs::write(dir.join("spec.kv"), SPEC)?;
    std::fs::write(dir.join("receipt.json"), sign_receipt(&statement, &key)?)?;

    let mut inclusion = Vec::new();
    for size in [OLD_SIZE, NEW_SIZE] {
        for index in 0..size {
            inclusion.push(json!({
                "leaf_index": index,
                "tree_size": size,
                "hashes": encode(&prove_inclusion(index, size, &tree)?),
            }));
        }
    }
    let proofs = json!({
        "entry_hashes": entries.iter().map(hex::encode).collect::<Vec<_>>(),
        "inclusion": inclusion,
        "consistency": {
            "old_size": OLD_SIZE,
            "new_size": NEW_SIZE,
            "hashes": encode(&prove_consistency(OLD_SIZE, NEW_SIZE, &tree)?),
        },
    });
    std::fs::write(dir.join("proofs.json"), serde_json::to_vec_pretty(&proofs)?)?;
    Ok(())
}

fn encode(hashes: &[Hash]) -> Value {
    hashes
        .iter()
        .map(|h| Value::from(STANDARD.encode(h)))
        .collect()
}
