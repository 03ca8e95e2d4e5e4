//! The approval credential decoder and verifier (rows 11–15 of the decision order), as the
//! server runs them: any text either decodes into claims or is CREDENTIAL_MALFORMED; a decoded
//! credential either verifies or fails with one of rows 12–15; nothing panics.
#![no_main]

use admission_contract::{Reason, credential};
use admission_fuzz::{CREDENTIAL_MAX_BYTES, RETIRED_KID, key_set, signing_key};
use admission_server::domain::credential::verify_rejection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = match credential::decode(token, CREDENTIAL_MAX_BYTES) {
        Ok(decoded) => decoded,
        Err(error) => {
            let rejection = verify_rejection(&error, None);
            assert_eq!(rejection.reason, Reason::CredentialMalformed, "{error:?}");
            assert!(!rejection.message.is_empty());
            return;
        }
    };
    match credential::verify_decoded(&decoded, key_set()) {
        Ok(()) => {
            // Only the fuzz keys sign: the active one, and the retired one (verify only).
            let kid = decoded.claims.kid.as_str();
            assert!(kid == signing_key().kid() || kid == RETIRED_KID, "{kid}");
            if kid == signing_key().kid() {
                // The claims sign again into a credential that verifies to the same claims.
                let resigned = signing_key().sign(&decoded.claims);
                if let Ok(resigned) = resigned {
                    let again = credential::verify(&resigned, key_set(), usize::MAX);
                    assert_eq!(again.as_ref(), Ok(&decoded.claims), "{resigned}");
                }
            }
        }
        Err(error) => {
            let rejection = verify_rejection(&error, Some(&decoded.claims.approval_id));
            assert!(
                matches!(
                    rejection.reason,
                    Reason::SigningKeyUnknown
                        | Reason::SigningKeyRevoked
                        | Reason::SignatureInvalid
                        | Reason::CredentialVersionUnsupported
                ),
                "{error:?}"
            );
            assert_eq!(rejection.metadata["kid"], decoded.claims.kid);
        }
    }
});
