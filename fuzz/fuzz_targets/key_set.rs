//! The trusted key set (JWKS) parser: any bytes are either a key set that writes back out as
//! the same keys, or an error; nothing panics.
#![no_main]

use admission_contract::credential::KeySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = KeySet::from_jwks(data) else {
        return;
    };
    assert!(!keys.is_empty());
    let written = keys.to_jwks_json().to_string();
    let reread = KeySet::from_jwks(written.as_bytes())
        .unwrap_or_else(|e| panic!("a parsed key set does not parse back: {e}\n{written}"));
    assert_eq!(reread, keys);
    for kid in keys.kids() {
        assert!(keys.status(kid).is_some());
    }
});
