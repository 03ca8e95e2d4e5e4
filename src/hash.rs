//! Audit chain hashes on the wire (SPEC §3 "Formats"): `sha256:` + 64 lowercase hex. The trail
//! stores and chains the bare hex; the prefix is put on at the wire edge, and whatever reads a
//! hash back accepts both forms.

/// The algorithm prefix of every hash on the wire.
pub const HASH_PREFIX: &str = "sha256:";

/// The wire form of a hash given in either form: `sha256:` + hex. The empty string (no hash)
/// stays empty.
pub fn wire_hash(hash: &str) -> String {
    let bare = bare_hash(hash);
    if bare.is_empty() {
        String::new()
    } else {
        format!("{HASH_PREFIX}{bare}")
    }
}

/// The hex digits of a hash given in either form (`sha256:` + hex, or the hex alone).
pub fn bare_hash(hash: &str) -> &str {
    hash.strip_prefix(HASH_PREFIX).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_back_as_one() {
        let hex = "ab".repeat(32);
        let wire = format!("sha256:{hex}");
        assert_eq!(wire_hash(&hex), wire);
        assert_eq!(wire_hash(&wire), wire);
        assert_eq!(bare_hash(&wire), hex);
        assert_eq!(bare_hash(&hex), hex);
        assert_eq!(wire_hash(""), "");
    }
}
