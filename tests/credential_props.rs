//! Properties of approval-credentials-v1 and spec validation: no input panics, what is signed
//! verifies to exactly the same claims, and no single-byte change of a credential verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use admission_contract::{
    credential::{self, Claims, DEFAULT_MAX_CREDENTIAL_LEN, KeySet, KeyStatus, SigningKey},
    spec::validate_spec_kv,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use proptest::prelude::*;

/// Last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

fn signer() -> &'static (SigningKey, KeySet) {
    static SIGNER: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let (key, _pem) = SigningKey::generate("prop-key").unwrap();
        let jwks = serde_json::json!({ "keys": [key.public_jwk(KeyStatus::Active)] });
        let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        (key, keys)
    })
}

fn non_empty() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._:/@-]{1,24}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

/// `issued_at` and a later `expires_at`: a window that ends where it starts is malformed.
fn validity_window() -> impl Strategy<Value = (SystemTime, SystemTime)> {
    (0..LAST_SECOND)
        .prop_flat_map(|issued| (Just(issued), issued + 1..=LAST_SECOND))
        .prop_map(|(issued, expires)| {
            let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
            (at(issued), at(expires))
        })
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        (non_empty(), non_empty(), non_empty(), non_empty()),
        (non_empty(), non_empty(), non_empty(), non_empty()),
        prop::collection::vec(any::<String>(), 0..5),
        validity_window(),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |((org, project, env, posture), (spec, by, id, _), caps, (issued, expires), digest)| {
                Claims {
                    v: 1,
                    kid: "prop-key".into(),
                    org_id: org,
                    project_id: project,
                    environment_id: env,
                    environment_posture: posture,
                    spec_hash: spec,
                    capabilities: caps,
                    issued_at: issued,
                    expires_at: expires,
                    issued_by: by,
                    approval_id: id,
                    config_bundle_digest: digest,
                }
            },
        )
}

/// Tokens that get past the first checks: two base64url parts around JSON-ish bytes.
fn token_like() -> impl Strategy<Value = String> {
    let json_ish = prop_oneof![
        any::<Vec<u8>>(),
        r#"\{("[a-z_]{1,20}":("[ -~]{0,20}"|-?[0-9]{1,25}|\[("[a-z.]{0,5}",?){0,3}\]|null|true|\{\}),?){0,14}\}"#
            .prop_map(String::into_bytes),
    ];
    (json_ish, prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(payload, signature)| {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    })
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(token in any::<String>(), max_len in 0usize..20_000) {
        let _ = credential::decode(&token, max_len);
        let _ = credential::verify(&token, &signer().1, max_len);
    }

    #[test]
    fn token_shaped_input_never_panics(token in token_like()) {
        let _ = credential::decode(&token, DEFAULT_MAX_CREDENTIAL_LEN);
        let result = credential::verify(&token, &signer().1, DEFAULT_MAX_CREDENTIAL_LEN);
        // Nothing unsigned by the key verifies.
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_spec_validation(bytes in any::<Vec<u8>>()) {
        let _ = validate_spec_kv(&bytes);
    }

    #[test]
    fn spec_shaped_input_never_panics(text in "([A-Za-z0-9_.= -]{0,12}[\r\n]?){0,8}") {
        let _ = validate_spec_kv(text.as_bytes());
    }

    #[test]
    fn signed_claims_verify_to_the_same_claims(claims in claims()) {
        let (key, keys) = signer();
        let token = key.sign(&claims).unwrap();
        prop_assert_eq!(
            credential::verify(&token, keys, usize::MAX),
            Ok(claims)
        );
    }

    #[test]
    fn no_single_byte_change_verifies(
        claims in claims(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let (key, keys) = signer();
        let token = key.sign(&claims).unwrap();
        let mut bytes = token.into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        if let Ok(tampered) = String::from_utf8(bytes) {
            prop_assert!(credential::verify(&tampered, keys, usize::MAX).is_err());
        }
    }
}
