//! Signed notes, checkpoints, keys and receipts, against published vectors where there are any.

use std::time::{Duration, SystemTime};

use base64::{Engine, engine::general_purpose::STANDARD};

use crate::{
    dsse::{Envelope, pae},
    note::{open_note, parse_note, sign_note},
    receipt::{PAYLOAD_TYPE, PREDICATE_TYPE},
    tree::prove_consistency,
    *,
};

// The example of golang.org/x/mod/sumdb/note (note.go and note_test.go).
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SIGNER_KEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_NOTE_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

// RFC 8410 §10.3's example private key (PKCS#8 v1).
const RFC8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
                           MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                           -----END PRIVATE KEY-----\n";

fn go_key() -> LogKey {
    let decoded = STANDARD.decode(GO_SIGNER_KEY_B64).unwrap();
    assert_eq!(decoded[0], 0x01);
    LogKey::from_seed("PeterNeumann", decoded[1..].try_into().unwrap()).unwrap()
}

fn test_key() -> LogKey {
    LogKey::from_pkcs8_pem("admission.example/log", RFC8410_PEM).unwrap()
}

#[test]
fn go_sumdb_note_vector_is_reproduced_and_verifies() {
    let key = go_key();
    assert_eq!(key.verifier().to_string(), GO_VERIFIER);
    let expected = format!("{GO_TEXT}\n{GO_NOTE_SIGNATURE}");
    // Ed25519 is deterministic, so signing reproduces Go's note byte for byte.
    assert_eq!(sign_note(GO_TEXT, &key).unwrap(), expected);
    let verifier = VerifierKey::parse(GO_VERIFIER).unwrap();
    assert_eq!(open_note(&expected, &verifier).unwrap(), GO_TEXT);
    let forged = expected.replace("cryptography", "cryptographY");
    assert_eq!(
        open_note(&forged, &verifier),
        Err(LogError::BadSignature {
            key_name: "PeterNeumann".to_owned()
        })
    );
}

#[test]
fn verifier_keys_parse_strictly() {
    let key = VerifierKey::parse(GO_VERIFIER).unwrap();
    assert_eq!((key.name(), key.id()), ("PeterNeumann", 0xc74f20a3));
    assert_eq!(VerifierKey::parse(&key.to_pub_file()).unwrap(), key);
    for bad in [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumanm+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcZHQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
        "PeterNeumann+c74f20a3+!!!",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(
            matches!(VerifierKey::parse(bad), Err(LogError::Malformed { .. })),
            "{bad:?} parsed"
        );
    }
}

#[test]
fn log_keys_load_from_pkcs8_pem_and_fail_clearly() {
    let key = test_key();
    assert_eq!(
        STANDARD.encode(key.public_key()),
        "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
    );
    let (generated, pem) = LogKey::generate("gen").unwrap();
    let reloaded = LogKey::from_pkcs8_pem("gen", &pem).unwrap();
    assert_eq!(reloaded.public_key(), generated.public_key());
    assert!(!format!("{generated:?}").contains("PRIVATE"));
    for (name, pem) in [("k", "not pem"), ("k", "")] {
        assert!(matches!(
            LogKey::from_pkcs8_pem(name, pem),
            Err(LogError::Key { .. })
        ));
    }
    assert!(matches!(
        LogKey::from_pkcs8_pem("a+b", RFC8410_PEM),
        Err(LogError::Malformed {
            what: "key name",
            ..
        })
    ));
}

#[test]
fn notes_with_bad_structure_are_malformed() {
    let key = go_key();
    let good = sign_note(GO_TEXT, &key).unwrap();
    for bad in [
        GO_TEXT.to_owned(),
        good.trim_end().to_owned(),
        good.replace('\u{2014}', "-"),
        good.replace("PeterNeumann x08", "PeterNeumann  x08"),
        format!("{GO_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        format!("a\u{7}b\n\n{GO_NOTE_SIGNATURE}"),
    ] {
        assert!(
            matches!(parse_note(&bad), Err(LogError::Malformed { .. })),
            "{bad:?}"
        );
    }
    assert!(sign_note("no newline", &key).is_err());
    // Another key's signature is not this key's.
    let other = test_key().verifier();
    assert!(matches!(
        open_note(&good, &other),
        Err(LogError::NotSignedByKey { .. })
    ));
}

#[test]
fn checkpoints_sign_parse_and_reject_a_flipped_byte() {
    let key = test_key();
    let mut tree = MemoryHashes::new();
    let entries: Vec<Hash> = (0u8..5).map(|i| [i; 32]).collect();
    tree.append(&entries).unwrap();
    let checkpoint = Checkpoint::new(key.name(), 5, tree.root().unwrap()).unwrap();
    let note = checkpoint.sign(&key).unwrap();
    let body = format!(
        "admission.example/log\n5\n{}\n",
        STANDARD.encode(tree.root().unwrap())
    );
    assert!(note.starts_with(&format!("{body}\n\u{2014} admission.example/log ")));
    let verifier = key.verifier();
    assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);
    // Flip one bit of each byte of the body in turn: never accepted.
    for i in 0..body.len() {
        let mut bytes = note.clone().into_bytes();
        bytes[i] ^= 0x01;
        if let Ok(flipped) = String::from_utf8(bytes) {
            assert!(Checkpoint::open(&flipped, &verifier).is_err(), "byte {i}");
        }
    }
    for bad in [
        "o\n05\nAAAA\n",
        "o\n5\n",
        "o\n-1\nAA==\n",
        "o\n5\nAAAA\n",
        "o\nx\n",
        "o\n5\n\n",
    ] {
        assert!(
            matches!(Checkpoint::parse_body(bad), Err(LogError::Malformed { .. })),
            "{bad:?}"
        );
    }
    let wrong_origin = Checkpoint::new("elsewhere", 5, tree.root().unwrap()).unwrap();
    assert!(wrong_origin.sign(&key).is_err());
}

#[test]
fn checkpoint_consistency_catches_a_rewrite_and_a_cut_tail() {
    let key = test_key();
    let verifier = key.verifier();
    let entries: Vec<Hash> = (0u8..12).map(|i| [i; 32]).collect();
    let mut tree = MemoryHashes::new();
    tree.append(&entries[..7]).unwrap();
    let saved = Checkpoint::new(key.name(), 7, tree.root().unwrap())
        .unwrap()
        .sign(&key)
        .unwrap();
    tree.append(&entries[7..]).unwrap();
    let latest = Checkpoint::new(key.name(), 12, tree.root().unwrap())
        .unwrap()
        .sign(&key)
        .unwrap();
    let proof = prove_consistency(7, 12, &tree).unwrap();
    let (old, new) = verify_checkpoint_consistency(&saved, &latest, &verifier, &proof).unwrap();
    assert_eq!((old.tree_size, new.tree_size), (7, 12));

    // Entry 4 rewritten (hashes recomputed from there on) and re-signed: the proof cannot join.
    let mut rewritten_entries = entries.clone();
    rewritten_entries[4] = [0xee; 32];
    let mut rewritten = MemoryHashes::new();
    rewritten.append(&rewritten_entries).unwrap();
    let forged = Checkpoint::new(key.name(), 12, rewritten.root().unwrap())
        .unwrap()
        .sign(&key)
        .unwrap();
    let forged_proof = prove_consistency(7, 12, &rewritten).unwrap();
    assert_eq!(
        verify_checkpoint_consistency(&saved, &forged, &verifier, &forged_proof),
        Err(LogError::ConsistencyMismatch)
    );
    // The tail cut back to 5 entries: the log shrank.
    let mut cut = MemoryHashes::new();
    cut.append(&entries[..5]).unwrap();
    let shorter = Checkpoint::new(key.name(), 5, cut.root().unwrap())
        .unwrap()
        .sign(&key)
        .unwrap();
    assert_eq!(
        verify_checkpoint_consistency(&saved, &shorter, &verifier, &[]),
        Err(LogError::BadSizes { old: 7, new: 5 })
    );
}

fn facts() -> ReceiptFacts {
    ReceiptFacts {
        decision_id: "dec_0192".to_owned(),
        environment: "acme/payments/prod".to_owned(),
        action: "deploy".to_owned(),
        approval_ids: vec!["apr_1".to_owned()],
        decided_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_640_000_123_456),
        seq: 42,
        entry_hash: "ab".repeat(32),
        break_glass: false,
    }
}

#[test]
fn receipts_verify_with_the_public_key_and_spec() {
    let key = test_key();
    let spec = b"image=registry.example/pay:1.2\nreplicas=3\n";
    let statement = Statement::new(spec, &facts(), key.name()).unwrap();
    let receipt = sign_receipt(&statement, &key).unwrap();
    let verified = verify_receipt(&receipt, &key.verifier(), Some(spec)).unwrap();
    assert_eq!(verified, statement);
    let predicate = &verified.predicate;
    assert_eq!(predicate.log_index, 41);
    assert_eq!(predicate.entry_hash, format!("sha256:{}", "ab".repeat(32)));
    assert_eq!(predicate.entry_hash_bytes(), Some([0xab; 32]));
    assert_eq!(predicate.decided_at, "2025-12-02T01:46:40.123456Z");
    assert_eq!(predicate.time_verified, predicate.decided_at);

    let json: serde_json::Value = serde_json::from_slice(&receipt).unwrap();
    assert_eq!(json["payloadType"], PAYLOAD_TYPE);
    let keyid = format!("admission.example/log+{:08x}", key.verifier().id());
    assert_eq!(json["signatures"][0]["keyid"], keyid);
    let payload = STANDARD.decode(json["payload"].as_str().unwrap()).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(payload["predicateType"], PREDICATE_TYPE);
    assert_eq!(payload["subject"][0]["name"], "spec.kv");
    let spec_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(spec));
    assert_eq!(payload["subject"][0]["digest"]["sha256"], spec_sha256);
    assert_eq!(verified.spec_sha256(), spec_sha256);
    assert!(matches!(
        verify_receipt(&receipt, &key.verifier(), Some(b"replicas=4\n")),
        Err(LogError::SpecMismatch { .. })
    ));
}

#[test]
fn tampered_or_foreign_receipts_are_rejected() {
    let key = test_key();
    let statement = Statement::new(b"a=1\n", &facts(), key.name()).unwrap();
    let receipt = sign_receipt(&statement, &key).unwrap();
    let mut envelope: Envelope = serde_json::from_slice(&receipt).unwrap();

    let mut other = statement.clone();
    other.predicate.environment = "acme/payments/dev".to_owned();
    envelope.payload = STANDARD.encode(serde_json::to_vec(&other).unwrap());
    let swapped = serde_json::to_vec(&envelope).unwrap();
    assert!(matches!(
        verify_receipt(&swapped, &key.verifier(), None),
        Err(LogError::BadSignature { .. })
    ));
    let (stranger, _) = LogKey::generate("admission.example/log").unwrap();
    assert!(verify_receipt(&receipt, &stranger.verifier(), None).is_err());
    for garbage in [&b"{}"[..], b"not json", b""] {
        assert!(matches!(
            verify_receipt(garbage, &key.verifier(), None),
            Err(LogError::Malformed { .. })
        ));
    }
}

#[test]
fn receipt_hashes_must_be_in_their_formats() {
    let key = test_key();
    let mut bare = facts();
    bare.entry_hash = format!("sha256:{}", "ab".repeat(32));
    assert!(matches!(
        Statement::new(b"a=1\n", &bare, key.name()),
        Err(LogError::Malformed { .. })
    ));
    assert!(matches!(
        Statement::of_spec_sha256("AB", &facts(), key.name()),
        Err(LogError::Malformed { .. })
    ));
    // A signed statement whose entry_hash lacks the prefix does not verify.
    let mut statement = Statement::new(b"a=1\n", &facts(), key.name()).unwrap();
    statement.predicate.entry_hash = "ab".repeat(32);
    let receipt = sign_receipt(&statement, &key).unwrap();
    assert!(matches!(
        verify_receipt(&receipt, &key.verifier(), None),
        Err(LogError::Malformed { .. })
    ));
    let spec_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"a=1\n"));
    assert_eq!(
        Statement::of_spec_sha256(&spec_sha256, &facts(), key.name()).unwrap(),
        Statement::new(b"a=1\n", &facts(), key.name()).unwrap()
    );
}

#[test]
fn pae_matches_the_dsse_specification() {
    // The example of the DSSE v1 protocol document.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}
