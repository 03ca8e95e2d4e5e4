//! The `spec_kv` parser: any bytes are either ByteOr's canonical spec, hashed exactly as sent,
//! or rejected with an error naming the line; nothing panics.
#![no_main]

use admission_contract::{
    SpecHash,
    spec::{SpecError, is_sha256_digest, validate_spec_kv},
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let validated = validate_spec_kv(data);
    let hashed = SpecHash::of_spec(data);
    match (&validated, &hashed) {
        (Ok(()), Ok(hash)) => {
            let expected = format!("sha256:{}", hex::encode(Sha256::digest(data)));
            assert_eq!(hash.as_str(), expected);
            assert!(is_sha256_digest(hash.as_str()));
            assert_eq!(hash.as_str().parse::<SpecHash>().as_ref(), Ok(hash));
            // Canonical specs are non-empty UTF-8 lines ending in a newline.
            assert_eq!(data.last(), Some(&b'\n'));
            assert!(!data.contains(&b'\r'));
        }
        (Err(error), Err(same)) => {
            assert_eq!(error, same);
            assert!(
                !matches!(error, SpecError::InvalidDigest { .. }),
                "{error:?}"
            );
            assert!(error.to_string().starts_with("spec_kv "), "{error}");
        }
        _ => panic!("validation and hashing disagree: {validated:?} vs {hashed:?}"),
    }
});
