//! `admissionctl receipt verify` as scripts call it: the real binary, a receipt signed with a
//! log key made here, and the exit statuses 0 (valid), 1 (not valid, with the reason) and 2
//! (unusable input), each printing one JSON object with `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use admission_log::{LogKey, ReceiptFacts, Statement, sign_receipt};
use serde_json::Value;

const ADMISSIONCTL: &str = env!("CARGO_BIN_EXE_admissionctl");
const ORIGIN: &str = "admission.test/log";
const SPEC: &str = "image=registry.test/app:1.4\nreplicas=2\n";

struct Fixture {
    _dir: tempfile::TempDir,
    log_pub: PathBuf,
    receipt: PathBuf,
    spec: PathBuf,
    dir: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let facts = ReceiptFacts {
        decision_id: "dec_test_1".to_owned(),
        environment: "acme/shop/prod".to_owned(),
        action: "deploy".to_owned(),
        approval_ids: vec!["apr_a".to_owned(), "apr_b".to_owned()],
        decided_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        seq: 7,
        entry_hash: "0f".repeat(32),
        break_glass: false,
    };
    let statement = Statement::new(SPEC.as_bytes(), &facts, ORIGIN).unwrap();
    let receipt = sign_receipt(&statement, &key).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let file = path.join(name);
        std::fs::write(&file, bytes).unwrap();
        file
    };
    Fixture {
        log_pub: write("log.pub", key.verifier().to_pub_file().as_bytes()),
        receipt: write("receipt.json", &receipt),
        spec: write("spec.kv", SPEC.as_bytes()),
        dir: path,
        _dir: dir,
    }
}

/// Runs `admissionctl --json receipt verify ARGS`; returns the exit status and the one object.
fn verify(args: &[&Path]) -> (i32, Value) {
    let out = Command::new(ADMISSIONCTL)
        .args(["--json", "receipt", "verify", "--key"])
        .args(args)
        // The connection settings are never needed offline.
        .env("ADMISSION_ENDPOINT", "https://127.0.0.1:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout:?}");
    (
        out.status.code().unwrap(),
        serde_json::from_str(&stdout).unwrap(),
    )
}

#[test]
fn a_valid_receipt_exits_0_with_its_decision() {
    let f = fixture();
    let (code, json) = verify(&[&f.log_pub, &f.receipt, Path::new("--spec"), &f.spec]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["decision_id"], "dec_test_1");
    assert_eq!(json["environment"], "acme/shop/prod");
    assert_eq!(json["log_index"], 6);
    assert_eq!(json["spec_checked"], true);
    assert_eq!(json["decided_at"], "2027-01-15T08:00:00.000000Z");

    let (code, json) = verify(&[&f.log_pub, &f.receipt]);
    assert_eq!((code, &json["spec_checked"]), (0, &Value::Bool(false)));

    let out = Command::new(ADMISSIONCTL)
        .args(["receipt", "verify", "--key"])
        .args([&f.log_pub, &f.receipt])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("receipt valid: dec_test_1 admitted deploy in acme/shop/prod"),
        "{text}"
    );
}

#[test]
fn an_invalid_receipt_exits_1_with_the_reason() {
    let f = fixture();
    let other_spec = f.dir.join("other.kv");
    std::fs::write(&other_spec, "image=registry.test/app:6.6\n").unwrap();
    let (code, json) = verify(&[&f.log_pub, &f.receipt, Path::new("--spec"), &other_spec]);
    assert_eq!(
        (code, &json["error"]),
        (1, &Value::from("rejected")),
        "{json}"
    );
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("spec digest mismatch"),
        "{json}"
    );

    // Another log's key.
    let (stranger, _) = LogKey::generate(ORIGIN).unwrap();
    let stranger_pub = f.dir.join("stranger.pub");
    std::fs::write(&stranger_pub, stranger.verifier().to_pub_file()).unwrap();
    let (code, json) = verify(&[&stranger_pub, &f.receipt]);
    assert_eq!(code, 1, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("no signature by key admission.test/log"),
        "{json}"
    );

    // One byte of the payload changed.
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&f.receipt).unwrap()).unwrap();
    let payload = envelope["payload"].as_str().unwrap().to_owned();
    let flipped = if payload.starts_with('e') { "f" } else { "e" };
    envelope["payload"] = Value::from(format!("{flipped}{}", &payload[1..]));
    let tampered = f.dir.join("tampered.json");
    std::fs::write(&tampered, envelope.to_string()).unwrap();
    let (code, json) = verify(&[&f.log_pub, &tampered]);
    assert_eq!(code, 1, "{json}");

    let garbage = f.dir.join("garbage.json");
    std::fs::write(&garbage, "not a receipt").unwrap();
    let (code, json) = verify(&[&f.log_pub, &garbage]);
    assert_eq!(code, 1, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("malformed DSSE envelope"),
        "{json}"
    );
}

#[test]
fn unusable_input_exits_2_naming_the_file() {
    let f = fixture();
    let missing = f.dir.join("missing.json");
    let (code, json) = verify(&[&f.log_pub, &missing]);
    assert_eq!((code, &json["error"]), (2, &Value::from("usage")), "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("missing.json"),
        "{json}"
    );

    let bad_pub = f.dir.join("bad.pub");
    std::fs::write(&bad_pub, "admission.test/log+0000+AAAA\n").unwrap();
    let (code, json) = verify(&[&bad_pub, &f.receipt]);
    assert_eq!(code, 2, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("bad.pub"),
        "{json}"
    );
}
