//! Admission requests from the wire: arbitrary bytes decoded as a `DeployRequest` or
//! `ReplayRequest` (the first byte picks which) and validated as the server does (rows 1–2 of
//! the decision order). Undecodable bytes are the transport's to refuse; a decoded request is
//! either valid or refused REQUEST_INVALID naming the fields, or SPEC_MALFORMED; nothing panics.
#![no_main]

use admission_contract::{Reason, SpecHash, pb};
use admission_fuzz::request_limits;
use admission_server::domain::request::{AdmissionRequest, Invalid, is_valid_request_id};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let limits = request_limits();
    let (validated, spec_kv, request_id) = if kind % 2 == 0 {
        let Ok(request) = pb::DeployRequest::decode(body) else {
            return;
        };
        let validated = AdmissionRequest::from_deploy(&request, &limits);
        (validated, request.spec_kv, request.request_id)
    } else {
        let Ok(request) = pb::ReplayRequest::decode(body) else {
            return;
        };
        let validated = AdmissionRequest::from_replay(&request, &limits);
        (validated, request.spec_kv, request.request_id)
    };
    match validated {
        Ok(admission) => {
            assert!(is_valid_request_id(&admission.request_id));
            assert_eq!(admission.request_id, request_id);
            assert_eq!(
                Ok(&admission.spec_hash),
                SpecHash::of_spec(&spec_kv).as_ref()
            );
            assert!(admission.credentials.len() <= limits.max_credentials);
            assert!(!admission.fingerprint.is_empty());
        }
        Err(invalid) => check_invalid(&invalid),
    }
});

fn check_invalid(invalid: &Invalid) {
    let rejection = &invalid.rejection;
    assert!(!rejection.message.is_empty());
    match rejection.reason {
        Reason::RequestInvalid => {
            assert!(!rejection.field_violations.is_empty(), "{rejection:?}");
            for (field, description) in &rejection.field_violations {
                assert!(
                    !field.is_empty() && !description.is_empty(),
                    "{rejection:?}"
                );
            }
        }
        Reason::SpecMalformed => {}
        other => panic!("validation answered {other:?}: {rejection:?}"),
    }
}
