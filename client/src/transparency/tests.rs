use admission_log::{
    LogKey, MemoryHashes,
    tree::{prove_consistency, prove_inclusion},
};

use super::*;

const ORIGIN: &str = "admission.test/log";

fn entries(n: u8) -> Vec<Hash> {
    (1..=n).map(|i| [i; 32]).collect()
}

fn signed(key: &LogKey, tree: &MemoryHashes) -> pb::Checkpoint {
    let root = tree.root().unwrap();
    let note = Checkpoint::new(ORIGIN, tree.size(), root)
        .unwrap()
        .sign(key)
        .unwrap();
    pb::Checkpoint {
        note,
        tree_size: tree.size(),
        root_hash: root.to_vec(),
    }
}

fn wire(hashes: Vec<Hash>) -> Vec<Vec<u8>> {
    hashes.into_iter().map(|h| h.to_vec()).collect()
}

#[test]
fn a_grown_log_is_consistent_with_a_saved_checkpoint() {
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let mut tree = MemoryHashes::new();
    tree.append(&entries(6)).unwrap();
    let saved = signed(&key, &tree).note;
    tree.append(&entries(13)[6..]).unwrap();
    let latest = signed(&key, &tree);
    let proof = pb::ConsistencyProof {
        hashes: wire(prove_consistency(6, 13, &tree).unwrap()),
    };
    let (old, new) = check_since_checkpoint(&saved, &latest, &proof, &key.verifier()).unwrap();
    assert_eq!((old.tree_size, new.tree_size), (6, 13));

    // The answer's fields must agree with its note.
    let mut lying = latest.clone();
    lying.tree_size = 14;
    assert!(matches!(
        check_since_checkpoint(&saved, &lying, &proof, &key.verifier()),
        Err(TransparencyError::Input(_))
    ));
    let mut short = proof.clone();
    short.hashes[0].pop();
    let error = check_since_checkpoint(&saved, &latest, &short, &key.verifier()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ConsistencyProof.hashes[0] is 31 bytes, not 32"
    );
}

#[test]
fn a_rewritten_or_cut_log_is_not() {
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let mut tree = MemoryHashes::new();
    tree.append(&entries(9)).unwrap();
    let saved = signed(&key, &tree).note;

    let mut rewritten_entries = entries(12);
    rewritten_entries[3] = [0xaa; 32];
    let mut rewritten = MemoryHashes::new();
    rewritten.append(&rewritten_entries).unwrap();
    let proof = pb::ConsistencyProof {
        hashes: wire(prove_consistency(9, 12, &rewritten).unwrap()),
    };
    assert!(matches!(
        check_since_checkpoint(&saved, &signed(&key, &rewritten), &proof, &key.verifier()),
        Err(TransparencyError::Invalid(LogError::ConsistencyMismatch))
    ));

    let mut cut = MemoryHashes::new();
    cut.append(&entries(7)).unwrap();
    let empty = pb::ConsistencyProof { hashes: Vec::new() };
    assert!(matches!(
        check_since_checkpoint(&saved, &signed(&key, &cut), &empty, &key.verifier()),
        Err(TransparencyError::Invalid(LogError::BadSizes {
            old: 9,
            new: 7
        }))
    ));
}

#[test]
fn inclusion_of_an_entry_in_a_checkpoint() {
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let mut tree = MemoryHashes::new();
    tree.append(&entries(11)).unwrap();
    let checkpoint = signed(&key, &tree).note;
    let proof = pb::InclusionProof {
        leaf_index: 4,
        tree_size: 11,
        hashes: wire(prove_inclusion(4, 11, &tree).unwrap()),
        entry_hash: [5u8; 32].to_vec(),
    };
    let entry_hash = hex::encode([5u8; 32]);
    check_inclusion(5, &entry_hash, &proof, &checkpoint, &key.verifier()).unwrap();
    let receipt_form = format!("sha256:{entry_hash}");
    check_inclusion(5, &receipt_form, &proof, &checkpoint, &key.verifier()).unwrap();
    assert!(matches!(
        check_inclusion(
            5,
            &hex::encode([6u8; 32]),
            &proof,
            &checkpoint,
            &key.verifier()
        ),
        Err(TransparencyError::Invalid(LogError::InclusionMismatch))
    ));
    assert!(matches!(
        check_inclusion(6, &entry_hash, &proof, &checkpoint, &key.verifier()),
        Err(TransparencyError::Input(_))
    ));
}

#[test]
fn a_log_pub_file_is_read_or_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let good = dir.path().join("log.pub");
    std::fs::write(&good, key.verifier().to_pub_file()).unwrap();
    assert_eq!(read_verifier_key(&good).unwrap(), key.verifier());
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "not a key\n").unwrap();
    let error = read_verifier_key(&bad).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}: malformed", bad.display())),
        "{error}"
    );
    let missing = dir.path().join("missing.pub");
    assert!(
        read_verifier_key(&missing)
            .unwrap_err()
            .to_string()
            .starts_with("cannot read")
    );
}

#[test]
fn a_saved_checkpoint_is_opened_or_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = LogKey::generate(ORIGIN).unwrap();
    let mut tree = MemoryHashes::new();
    tree.append(&entries(3)).unwrap();
    let answer = signed(&key, &tree);
    let file = dir.path().join("checkpoint");
    std::fs::write(&file, &answer.note).unwrap();
    let (note, checkpoint) = read_checkpoint(&file, &key.verifier()).unwrap();
    assert_eq!((note, checkpoint.tree_size), (answer.note.clone(), 3));
    assert_eq!(
        open_checkpoint(&answer, &key.verifier()).unwrap(),
        checkpoint
    );

    // Signed by another key of the same name: the signature fails (Invalid).
    let (other, _) = LogKey::generate(ORIGIN).unwrap();
    assert!(matches!(
        read_checkpoint(&file, &other.verifier()),
        Err(TransparencyError::Invalid(LogError::NotSignedByKey { .. }))
    ));
    // A one-character change of the body: the signature fails.
    std::fs::write(&file, answer.note.replacen("\n3\n", "\n4\n", 1)).unwrap();
    assert!(matches!(
        read_checkpoint(&file, &key.verifier()),
        Err(TransparencyError::Invalid(LogError::BadSignature { .. }))
    ));
    // Not a note at all: local input, named.
    std::fs::write(&file, "hello\n").unwrap();
    let error = read_checkpoint(&file, &key.verifier()).unwrap_err();
    assert!(
        matches!(&error, TransparencyError::Input(m) if m.starts_with(&file.display().to_string()))
    );
}

#[test]
fn a_receipt_must_name_the_proved_entry() {
    let (key, pem) = LogKey::generate(ORIGIN).unwrap();
    assert_eq!(
        log_pub_line(&pem, ORIGIN).unwrap(),
        key.verifier().to_pub_file()
    );
    let facts = admission_log::ReceiptFacts {
        decision_id: "dec_1".to_owned(),
        environment: "acme/shop/prod".to_owned(),
        action: "deploy".to_owned(),
        approval_ids: Vec::new(),
        decided_at: std::time::SystemTime::UNIX_EPOCH,
        seq: 5,
        entry_hash: hex::encode([5u8; 32]),
        break_glass: false,
    };
    let statement = Statement::new(b"spec", &facts, ORIGIN).unwrap();
    let proof = pb::InclusionProof {
        leaf_index: 4,
        tree_size: 11,
        hashes: Vec::new(),
        entry_hash: [5u8; 32].to_vec(),
    };
    assert_eq!(
        check_receipt_against_proof(&statement, "dec_1", &proof).unwrap(),
        hex::encode([5u8; 32])
    );
    assert!(check_receipt_against_proof(&statement, "dec_2", &proof).is_err());
    let other_leaf = pb::InclusionProof {
        leaf_index: 5,
        ..proof.clone()
    };
    assert!(check_receipt_against_proof(&statement, "dec_1", &other_leaf).is_err());
    let other_hash = pb::InclusionProof {
        entry_hash: [6u8; 32].to_vec(),
        ..proof
    };
    let error = check_receipt_against_proof(&statement, "dec_1", &other_hash).unwrap_err();
    assert!(error.to_string().contains("the service proves"), "{error}");
}
