use admission_contract::credential::{KeySet, KeyStatus, SigningKey};

use admission_contract::pb;
use prost::Message;

use super::*;
use crate::store::{ListFilter, StoreOptions};

async fn engine(dir: &tempfile::TempDir) -> Engine {
    engine_with_limit(dir, 4).await
}

async fn engine_with_limit(dir: &tempfile::TempDir, max_in_flight: usize) -> Engine {
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = AuditStore::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let (key, _) = SigningKey::generate("k1").unwrap();
    let jwks = serde_json::json!({ "keys": [key.public_jwk(KeyStatus::Active)] });
    let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    let settings = SharedSettings::new(Settings {
        policies: Arc::new(crate::domain::policy::Policies::default()),
        roles: Arc::new(crate::identity::roles::RoleBindings::default()),
        keys: Arc::new(keys),
        signer: None,
    });
    Engine::new(
        settings,
        store,
        Arc::default(),
        RequestLimits {
            spec_kv_max_bytes: 1024,
            ..RequestLimits::default()
        },
        max_in_flight,
    )
}

/// Row 27: with no in-flight capacity left, admissions and previews are refused before
/// anything is read or recorded; the answer carries no decision_id (SPEC §7).
#[tokio::test]
async fn at_the_in_flight_limit_decisions_are_refused_unrecorded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_limit(&dir, 0).await;
    let caller = Caller {
        identity: crate::identity::tls::Identity::new("spiffe://acme.example/orchestrator/ci"),
        cert_sha256: "0".repeat(64),
    };
    let request = || {
        let deploy = pb::DeployRequest {
            request_id: "req-1".into(),
            ..Default::default()
        };
        AdmissionRequest::from_deploy(&deploy, engine.limits())
    };
    for answer in [
        engine.admit(&caller, request()).await.map(|_| ()),
        engine.preview(&caller, request()).await.map(|_| ()),
    ] {
        let rejection = rejected(answer.unwrap_err());
        assert_eq!(rejection.reason, Reason::Overloaded);
        assert_eq!(rejection.reason.code(), tonic::Code::ResourceExhausted);
        assert!(!rejection.metadata.contains_key("decision_id"));
    }
    let (entries, _) = engine
        .store()
        .list(&ListFilter::default(), 10, "")
        .await
        .unwrap();
    assert!(entries.is_empty(), "{entries:?}");
}

fn rejected(failure: Failure) -> Rejection {
    match failure {
        Failure::Rejected(rejection) => rejection,
        Failure::Internal => panic!("answered INTERNAL"),
    }
}

fn entry(entry_id: &str, request_id: &str) -> NewEntry {
    NewEntry {
        entry_id: entry_id.to_owned(),
        actor: "spiffe://acme.example/orchestrator/ci".to_owned(),
        request_id: request_id.to_owned(),
        ..NewEntry::default()
    }
}

fn key(request_id: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        caller: "spiffe://acme.example/orchestrator/ci".to_owned(),
        request_id: request_id.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

/// A request_id taken by another request between row 5 and the append is answered and
/// recorded as REQUEST_ID_CONFLICT, under the decision_id the caller is given.
#[tokio::test]
async fn rejection_racing_a_request_id_is_recorded_as_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let store = engine.store();
    let mut admitted = entry("dec_first", "req-1");
    admitted.outcome = "admitted".to_owned();
    let append = Append {
        idempotency: Some(key("req-1", "aaaa")),
        admission: Some(vec![]),
        ..rejection_append(admitted, None)
    };
    assert!(matches!(
        store.append(append).await.unwrap(),
        Appended::Committed(_)
    ));

    let mut denied = entry("dec_second", "req-1");
    let policy_denied = Rejection::new(Reason::PolicyDenied, "denied");
    set_rejection(&mut denied, &policy_denied);
    let answer = rejected(
        engine
            .append_keyed(denied, key("req-1", "bbbb"), policy_denied)
            .await
            .unwrap_err(),
    );
    assert_eq!(answer.reason, Reason::RequestIdConflict);
    assert_eq!(answer.metadata["decision_id"], "dec_second");

    let (entries, _) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    let recorded: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.entry.entry_id.as_str(),
                e.entry.reason.as_str(),
                e.entry.grpc_code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("dec_first", "", ""),
            ("dec_second", "REQUEST_ID_CONFLICT", "ALREADY_EXISTS")
        ]
    );
}

/// An identical retry that was evaluated before the original's admission committed (and
/// so saw its approval consumed) is answered with the original admission, and nothing is
/// recorded for it.
#[tokio::test]
async fn rejection_racing_its_own_admission_answers_the_admission() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let store = engine.store();
    let original = pb::Admission {
        decision_id: "dec_first".to_owned(),
        action: pb::Action::Deploy as i32,
        approval_ids: vec!["apr_1".to_owned()],
        decided_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        ..pb::Admission::default()
    };
    let mut admitted = entry("dec_first", "req-1");
    admitted.outcome = "admitted".to_owned();
    let append = Append {
        idempotency: Some(key("req-1", "aaaa")),
        admission: Some(original.encode_to_vec()),
        ..rejection_append(admitted, None)
    };
    let Appended::Committed(receipt) = store.append(append).await.unwrap() else {
        panic!("the admission was not committed");
    };

    let mut retry = entry("dec_retry", "req-1");
    let consumed = Rejection::new(Reason::ApprovalConsumed, "used");
    set_rejection(&mut retry, &consumed);
    let answer = pb::Admission::from(
        engine
            .append_keyed(retry, key("req-1", "aaaa"), consumed)
            .await
            .unwrap(),
    );
    assert_eq!(
        answer,
        pb::Admission {
            audit_entry_hash: format!("sha256:{}", receipt.entry_hash),
            ..original
        }
    );
    let (entries, _) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    let ids: Vec<_> = entries.iter().map(|e| e.entry.entry_id.as_str()).collect();
    assert_eq!(ids, ["dec_first"]);
}

#[test]
fn only_rejections_after_row_five_claim_the_request_id() {
    for reason in [
        Reason::CallerNotAuthorized,
        Reason::EnvironmentUnknown,
        Reason::RequestIdConflict,
    ] {
        assert!(!passed_row_five(reason), "{reason}");
    }
    for reason in [
        Reason::PolicyDenied,
        Reason::ApprovalRequired,
        Reason::CredentialExpired,
        Reason::QuorumNotMet,
    ] {
        assert!(passed_row_five(reason), "{reason}");
    }
}
