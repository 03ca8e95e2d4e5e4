//! Unit tests of the credential format, rows 11–15 and the key set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use super::keys::ED25519_PKCS8_V1_PREFIX;
use super::*;

const MAX: usize = DEFAULT_MAX_CREDENTIAL_LEN;

fn at(text: &str) -> SystemTime {
    parse_time(text).unwrap()
}

fn claims(kid: &str) -> Claims {
    Claims {
        v: 1,
        kid: kid.to_owned(),
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: "prod".into(),
        environment_posture: "prod".into(),
        spec_hash: format!("sha256:{}", "ab".repeat(32)),
        capabilities: vec!["deploy".into(), "db.migrate".into()],
        issued_at: at("2026-11-23T10:00:00Z"),
        expires_at: at("2026-11-23T10:15:00Z"),
        issued_by: "alice@acme.example".into(),
        approval_id: "apr_123".into(),
        config_bundle_digest: None,
    }
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(kid).unwrap().0
}

fn key_set(entries: &[(&SigningKey, KeyStatus)]) -> KeySet {
    let keys: Vec<_> = entries.iter().map(|(k, s)| k.public_jwk(*s)).collect();
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// Signs arbitrary payload bytes, bypassing the canonical producer.
fn sign_raw(key: &SigningKey, payload: &[u8]) -> String {
    let signature = key.pair.sign(payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

fn malformed_detail(result: Result<Claims, VerifyError>) -> String {
    match result {
        Err(VerifyError::Malformed { detail }) => detail,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn sign_then_verify_round_trips() {
    let signer = key("org-2026-11");
    let keys = key_set(&[(&signer, KeyStatus::Active)]);
    let mut with_digest = claims("org-2026-11");
    with_digest.config_bundle_digest = Some(format!("sha256:{}", "cd".repeat(32)));
    for original in [claims("org-2026-11"), with_digest] {
        let token = signer.sign(&original).unwrap();
        assert_eq!(verify(&token, &keys, MAX), Ok(original));
    }
}

#[test]
fn payload_is_canonical_json_without_absent_digest() {
    let signer = key("k1");
    let token = signer.sign(&claims("k1")).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let expected = format!(
        concat!(
            r#"{{"approval_id":"apr_123","capabilities":["deploy","db.migrate"],"#,
            r#""environment_id":"prod","environment_posture":"prod","#,
            r#""expires_at":"2026-11-23T10:15:00Z","issued_at":"2026-11-23T10:00:00Z","#,
            r#""issued_by":"alice@acme.example","kid":"k1","org_id":"acme","#,
            r#""project_id":"payments","spec_hash":"sha256:{}","v":1}}"#
        ),
        "ab".repeat(32)
    );
    assert_eq!(String::from_utf8(payload).unwrap(), expected);
}

#[test]
fn verifies_payload_bytes_as_received_and_ignores_unknown_fields() {
    let signer = key("k1");
    let keys = key_set(&[(&signer, KeyStatus::Active)]);
    // Not canonical: spaces, unsorted keys, an unknown field.
    let payload = format!(
        r#"{{ "v": 1, "kid": "k1", "org_id": "acme", "project_id": "payments",
        "environment_id": "prod", "environment_posture": "prod", "spec_hash": "sha256:{}",
        "capabilities": ["deploy"], "issued_at": "2026-11-23T10:00:00Z",
        "expires_at": "2026-11-23T10:15:00Z", "issued_by": "alice", "approval_id": "apr_9",
        "ticket": {{"id": 42}} }}"#,
        "ab".repeat(32)
    );
    let verified = verify(&sign_raw(&signer, payload.as_bytes()), &keys, MAX).unwrap();
    assert_eq!(verified.approval_id, "apr_9");
    assert_eq!(verified.capabilities, vec!["deploy".to_owned()]);
}

#[test]
fn retired_keys_verify_and_several_keys_may_be_active() {
    let (a, b, old) = (key("a"), key("b"), key("old"));
    let keys = key_set(&[
        (&a, KeyStatus::Active),
        (&b, KeyStatus::Active),
        (&old, KeyStatus::Retired),
    ]);
    for signer in [&a, &b, &old] {
        let token = signer.sign(&claims(signer.kid())).unwrap();
        assert!(verify(&token, &keys, MAX).is_ok(), "{}", signer.kid());
    }
}

#[test]
fn rows_12_to_15_in_order() {
    let signer = key("k1");
    let other = key("k1");
    let active = key_set(&[(&signer, KeyStatus::Active)]);
    let revoked = key_set(&[(&signer, KeyStatus::Revoked)]);
    let impostor = key_set(&[(&other, KeyStatus::Active)]);
    let unrelated = key_set(&[(&key("k2"), KeyStatus::Active)]);
    let good = signer.sign(&claims("k1")).unwrap();
    let mut v2 = claims("k1");
    v2.v = 2;
    let v2_payload = serde_json::to_vec(&json!({
        "v": 2, "kid": "k1", "org_id": "acme", "project_id": "payments",
        "environment_id": "prod", "environment_posture": "prod", "spec_hash": v2.spec_hash,
        "capabilities": [], "issued_at": "2026-11-23T10:00:00Z",
        "expires_at": "2026-11-23T10:15:00Z", "issued_by": "alice", "approval_id": "apr_1",
    }))
    .unwrap();
    let v2_token = sign_raw(&signer, &v2_payload);
    let kid = || "k1".to_owned();

    // Unknown kid wins over a broken signature, revoked over a broken signature.
    assert_eq!(
        verify(&good, &unrelated, MAX),
        Err(VerifyError::KeyUnknown { kid: kid() })
    );
    assert_eq!(
        verify(&good, &revoked, MAX),
        Err(VerifyError::KeyRevoked { kid: kid() })
    );
    assert_eq!(
        verify(&good, &impostor, MAX),
        Err(VerifyError::SignatureInvalid { kid: kid() })
    );
    assert_eq!(
        verify(&v2_token, &active, MAX),
        Err(VerifyError::VersionUnsupported { kid: kid(), v: 2 })
    );
    // Signature before version: a forged v2 credential is a bad signature.
    assert_eq!(
        verify(&v2_token, &impostor, MAX),
        Err(VerifyError::SignatureInvalid { kid: kid() })
    );
    assert_eq!(
        verify(&v2_token, &revoked, MAX),
        Err(VerifyError::KeyRevoked { kid: kid() })
    );
}

#[test]
fn tampered_payload_does_not_verify() {
    let signer = key("k1");
    let keys = key_set(&[(&signer, KeyStatus::Active)]);
    let token = signer.sign(&claims("k1")).unwrap();
    let (payload_b64, signature_b64) = token.split_once('.').unwrap();
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).unwrap();
    let forged = String::from_utf8(payload)
        .unwrap()
        .replace("\"prod\"", "\"staging\"");
    let forged_token = format!("{}.{signature_b64}", URL_SAFE_NO_PAD.encode(forged));
    assert_eq!(
        verify(&forged_token, &keys, MAX),
        Err(VerifyError::SignatureInvalid { kid: "k1".into() })
    );
}

#[test]
fn row_11_malformed_tokens() {
    let signer = key("k1");
    let keys = key_set(&[(&signer, KeyStatus::Active)]);
    let good = signer.sign(&claims("k1")).unwrap();
    let (p, s) = good.split_once('.').unwrap();
    let sig = |payload: &serde_json::Value| sign_raw(&signer, payload.to_string().as_bytes());
    let mut base = json!({
        "v": 1, "kid": "k1", "org_id": "acme", "project_id": "payments",
        "environment_id": "prod", "environment_posture": "prod", "spec_hash": "sha256:00",
        "capabilities": ["deploy"], "issued_at": "2026-11-23T10:00:00Z",
        "expires_at": "2026-11-23T10:15:00Z", "issued_by": "alice", "approval_id": "apr_1",
    });
    let without_issued_by = {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove("issued_by");
        c
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut c = base.clone();
        c[field] = value;
        c
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "x".repeat(MAX + 1),
            "it is 16385 bytes long, the limit is 16384",
        ),
        (
            p.to_owned(),
            "it has 1 dot-separated parts, expected 2 (payload.signature)",
        ),
        (
            format!("{p}.{s}.{s}"),
            "it has 3 dot-separated parts, expected 2 (payload.signature)",
        ),
        (format!(".{s}"), "its payload part is empty"),
        (format!("{p}."), "its signature part is empty"),
        (
            format!("{p}==.{s}"),
            "its payload part has base64 padding, which approval-credentials-v1 forbids",
        ),
        (
            format!("{p}.{}", URL_SAFE_NO_PAD.encode([7u8; 63])),
            "its signature is 63 bytes, an Ed25519 signature is 64",
        ),
        (
            format!("{}.{s}", URL_SAFE_NO_PAD.encode("[1]")),
            "its payload is not a JSON object (invalid type: sequence, expected a JSON object at line 1 column 0)",
        ),
        (
            sig(&without_issued_by),
            "its payload has no `issued_by` field",
        ),
        (
            sig(&with("v", json!("1"))),
            "its `v` field is not an unsigned integer",
        ),
        (
            sig(&with("v", json!(-1))),
            "its `v` field is not an unsigned integer",
        ),
        (
            sig(&with("kid", json!(""))),
            "its `kid` field is not a non-empty string",
        ),
        (
            sig(&with("capabilities", json!(["deploy", 7]))),
            "its `capabilities` field is not an array of strings",
        ),
        (
            sig(&with("issued_at", json!("2026-11-23T10:00:00.5Z"))),
            "its `issued_at` field is not an RFC 3339 UTC time with whole seconds such as 2026-11-23T10:00:00Z",
        ),
        (
            sig(&with("expires_at", json!("2026-11-23T10:00:00+00:00"))),
            "its `expires_at` field is not an RFC 3339 UTC time with whole seconds such as 2026-11-23T10:00:00Z",
        ),
        (
            sig(&with("config_bundle_digest", json!(1))),
            "its `config_bundle_digest` field is not a string",
        ),
        (
            sig(&with("expires_at", json!("2026-11-23T10:00:00Z"))),
            "its `expires_at` is not after its `issued_at`, so it is never valid",
        ),
        (
            sig(&with("expires_at", json!("2026-11-23T09:59:59Z"))),
            "its `expires_at` is not after its `issued_at`, so it is never valid",
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(
            malformed_detail(verify(&token, &keys, MAX)),
            expected,
            "{token}"
        );
    }
    // The parser's message quotes the payload; the quote is bounded.
    let quoted = URL_SAFE_NO_PAD.encode(format!("\"{}\"", "q".repeat(4000)));
    let detail = malformed_detail(verify(&format!("{quoted}.{s}"), &keys, MAX));
    assert_eq!(
        detail,
        format!(
            "its payload is not a JSON object (invalid type: string \"{}…)",
            "q".repeat(106)
        )
    );
    // Standard-alphabet characters are not base64url.
    let detail = malformed_detail(verify(&format!("{p}.+{}", &s[1..]), &keys, MAX));
    assert!(
        detail.starts_with("its signature part is not base64url"),
        "{detail}"
    );
    // A repeated field is ambiguous, so malformed even when signed.
    base["kid"] = json!("k1");
    let text = base
        .to_string()
        .replacen("{", r#"{"spec_hash":"sha256:11","#, 1);
    let detail = malformed_detail(verify(&sign_raw(&signer, text.as_bytes()), &keys, MAX));
    assert!(
        detail.contains("field `spec_hash` appears twice"),
        "{detail}"
    );
}

#[test]
fn decode_keeps_unverified_claims_for_metadata() {
    let signer = key("k9");
    let decoded = decode(&signer.sign(&claims("k9")).unwrap(), MAX).unwrap();
    assert_eq!(decoded.claims.approval_id, "apr_123");
    assert_eq!(decoded.claims.kid, "k9");
}

#[test]
fn times_are_strict_whole_seconds_utc() {
    assert_eq!(
        format_time(at("2026-11-23T10:00:00Z")).unwrap(),
        "2026-11-23T10:00:00Z"
    );
    let with_nanos = at("2026-11-23T10:00:00Z") + Duration::from_millis(999);
    assert_eq!(format_time(with_nanos).unwrap(), "2026-11-23T10:00:00Z");
    assert!(format_time(UNIX_EPOCH - Duration::from_secs(1)).is_err());
    assert!(format_time(UNIX_EPOCH + Duration::from_secs(YEAR_10000)).is_err());
    for bad in [
        "2026-11-23T10:00:00",
        "2026-11-23 10:00:00Z",
        "2026-11-23T10:00:60Z",
        "2026-13-23T10:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-11-23t10:00:00z",
        "２026-11-23T10:00:00Z",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn messages_are_actionable_sentences() {
    assert_eq!(
        VerifyError::KeyUnknown {
            kid: "org-2026-11".into()
        }
        .to_string(),
        "approval credential is signed with key org-2026-11, which is not in the trusted key set; \
         add the key to the key set and reload, or re-sign with a trusted key"
    );
    assert_eq!(
        VerifyError::VersionUnsupported {
            kid: "k1".into(),
            v: 2
        }
        .to_string(),
        "approval credential signed with key k1 has version 2 but only version 1 is supported; \
         re-issue it as approval-credentials-v1"
    );
    assert_eq!(
        VerifyError::Malformed {
            detail: "its payload part is empty".into()
        }
        .to_string(),
        "approval credential cannot be decoded because its payload part is empty; attach the \
         credential exactly as issued"
    );
    assert_eq!(
        VerifyError::KeyRevoked { kid: "k1".into() }.reason(),
        Reason::SigningKeyRevoked
    );
}

#[test]
fn key_set_reports_the_offending_entry_and_field() {
    let signer = key("k1");
    let x = URL_SAFE_NO_PAD.encode(signer.public_key());
    let entry = |extra: serde_json::Value| {
        let mut e = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "x": x});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let parse =
        |keys: serde_json::Value| KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes());
    let missing_status = parse(json!([entry(json!({}))])).unwrap();
    assert_eq!(missing_status.status("k1"), Some(KeyStatus::Active));
    assert_eq!(missing_status.len(), 1);

    let invalid = |index, kid: Option<&str>, field, detail: &str| KeySetError::InvalidKey {
        index,
        kid: kid.map(str::to_owned),
        field,
        detail: detail.to_owned(),
    };
    let second = |e: serde_json::Value| parse(json!([entry(json!({"kid": "k0"})), e]));
    assert_eq!(
        second(entry(json!({"kty": "RSA"}))),
        Err(invalid(
            1,
            Some("k1"),
            "kty",
            "it is \"RSA\", expected \"OKP\""
        ))
    );
    assert_eq!(
        second(entry(json!({"crv": "X25519"}))),
        Err(invalid(
            1,
            Some("k1"),
            "crv",
            "it is \"X25519\", expected \"Ed25519\""
        ))
    );
    assert_eq!(
        second(entry(json!({"alg": "ES256"}))),
        Err(invalid(
            1,
            Some("k1"),
            "alg",
            "it is \"ES256\", expected \"EdDSA\""
        ))
    );
    assert_eq!(
        second(entry(json!({"status": "paused"}))),
        Err(invalid(
            1,
            Some("k1"),
            "status",
            "it is \"paused\", expected \"active\", \"retired\" or \"revoked\""
        ))
    );
    assert_eq!(
        second(entry(json!({"x": "AAAA"}))),
        Err(invalid(
            1,
            Some("k1"),
            "x",
            "it is 3 bytes, an Ed25519 public key is 32"
        ))
    );
    assert_eq!(
        second(entry(json!({"d": "secret"}))),
        Err(invalid(
            1,
            Some("k1"),
            "d",
            "the entry holds private key material; publish only the public key"
        ))
    );
    assert_eq!(
        parse(json!([{"kty": "OKP"}])),
        Err(invalid(0, None, "kid", "it is missing"))
    );
    assert_eq!(
        parse(json!([
            entry(json!({})),
            entry(json!({"status": "retired"}))
        ])),
        Err(KeySetError::DuplicateKid {
            kid: "k1".into(),
            first: 0,
            index: 1
        })
    );
    assert_eq!(parse(json!([])), Err(KeySetError::Empty));
    assert_eq!(
        second(entry(json!({"alg": "ES256"})))
            .unwrap_err()
            .to_string(),
        "key set entry 1 (kid k1) has an invalid `alg`: it is \"ES256\", expected \"EdDSA\""
    );
    assert!(matches!(
        KeySet::from_jwks(b"{\"keys\": 1}"),
        Err(KeySetError::NotJwks { .. })
    ));
}

#[test]
fn key_set_round_trips_through_jwks_json() {
    let (a, b) = (key("a"), key("b"));
    let keys = key_set(&[(&a, KeyStatus::Active), (&b, KeyStatus::Revoked)]);
    let again = KeySet::from_jwks(keys.to_jwks_json().to_string().as_bytes()).unwrap();
    assert_eq!(again, keys);
    assert_eq!(again.kids().collect::<Vec<_>>(), vec!["a", "b"]);
}

#[test]
fn loads_pkcs8_v1_and_v2_pem() {
    // RFC 8410 §10.3 example private key (PKCS#8 v1).
    let v1 = "-----BEGIN PRIVATE KEY-----\n\
              MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
              -----END PRIVATE KEY-----\n";
    let loaded = SigningKey::from_pkcs8_pem("rfc", v1).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(loaded.public_key()),
        "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"
    );
    let (generated, pem) = SigningKey::generate("gen").unwrap();
    let reloaded = SigningKey::from_pkcs8_pem("gen", &pem).unwrap();
    assert_eq!(reloaded.public_key(), generated.public_key());
    // Generated keys are RFC 8410 v1 (48 DER bytes, version 0), like the example above.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(der.len(), 48);
    assert_eq!(&der[..16], &ED25519_PKCS8_V1_PREFIX);
    // PKCS#8 v2 (seed and public key, as ring and older releases wrote it) still loads.
    let v2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    assert!(SigningKey::from_pkcs8_pem("v2", &v2.serialize_pem()).is_ok());
    assert!(matches!(
        SigningKey::from_pkcs8_pem("k", "not pem"),
        Err(SigningKeyError::NotPkcs8Pem { .. })
    ));
    assert!(!format!("{generated:?}").contains("PRIVATE"));
}

#[test]
fn sign_refuses_claims_it_cannot_express() {
    let signer = key("k1");
    assert_eq!(
        signer.sign(&claims("k2")),
        Err(SignError::KidMismatch {
            claims_kid: "k2".into(),
            key_kid: "k1".into()
        })
    );
    let mut v2 = claims("k1");
    v2.v = 2;
    assert_eq!(
        signer.sign(&v2),
        Err(SignError::VersionUnsupported { v: 2 })
    );
    let mut early = claims("k1");
    early.issued_at = UNIX_EPOCH - Duration::from_secs(1);
    assert!(matches!(
        signer.sign(&early),
        Err(SignError::Time {
            field: "issued_at",
            ..
        })
    ));
}

#[test]
fn only_an_active_matching_key_may_sign() {
    let (a, b, impostor) = (key("a"), key("b"), key("a"));
    let keys = key_set(&[(&a, KeyStatus::Active), (&b, KeyStatus::Retired)]);
    assert_eq!(keys.check_signing_key(&a), Ok(()));
    assert_eq!(
        keys.check_signing_key(&b),
        Err(SigningKeyNotTrusted::NotActive {
            kid: "b".into(),
            status: KeyStatus::Retired
        })
    );
    assert_eq!(
        keys.check_signing_key(&impostor),
        Err(SigningKeyNotTrusted::PublicKeyDiffers { kid: "a".into() })
    );
    assert_eq!(
        keys.check_signing_key(&key("c")).unwrap_err().to_string(),
        "signing key c is not in the key set; add its public key with admissionctl keygen --jwks"
    );
}
