//! The spec hash (SPEC §4): `"sha256:" + hex(SHA-256(spec_kv))` over the bytes exactly as sent,
//! and validation of ByteOr's canonical `key=value` spec format.

use std::{collections::HashSet, fmt, str::FromStr};

use sha2::{Digest, Sha256};

use crate::echo::truncated;

/// A `sha256:` + 64 lowercase hex digest, as used for spec hashes and artifact digests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecHash(String);

/// Why a `spec_kv` document or a digest string is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The document is empty.
    #[error("spec_kv is empty")]
    Empty,
    /// The document is not UTF-8.
    #[error("spec_kv is not valid utf-8 (byte {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The document contains a carriage return.
    #[error("spec_kv line {line} contains a carriage return")]
    CarriageReturn {
        /// 1-based line number.
        line: usize,
    },
    /// The last line does not end in `\n`.
    #[error("spec_kv line {line} does not end with a newline")]
    MissingFinalNewline {
        /// 1-based line number.
        line: usize,
    },
    /// A line has no `=`.
    #[error("spec_kv line {line} is not a key=value pair")]
    NotKeyValue {
        /// 1-based line number.
        line: usize,
    },
    /// A key is empty or has characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "spec_kv line {line} has an invalid key {:?} (allowed: A-Z a-z 0-9 _ . -)",
        truncated(key)
    )]
    InvalidKey {
        /// 1-based line number.
        line: usize,
        /// The offending key.
        key: String,
    },
    /// A key appears twice.
    #[error("spec_kv line {line} repeats key {:?}", truncated(key))]
    DuplicateKey {
        /// 1-based line number.
        line: usize,
        /// The repeated key.
        key: String,
    },
    /// A digest string is not `sha256:` + 64 lowercase hex.
    #[error(
        "{:?} is not sha256: followed by 64 lowercase hex digits",
        truncated(value)
    )]
    InvalidDigest {
        /// The offending value.
        value: String,
    },
}

// === impl SpecHash ===

impl SpecHash {
    /// Hashes `spec_kv` exactly as given, without validating it.
    pub fn of_bytes(spec_kv: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(spec_kv))))
    }

    /// Validates `spec_kv` (SPEC §4) and returns its hash.
    pub fn of_spec(spec_kv: &[u8]) -> Result<Self, SpecError> {
        validate_spec_kv(spec_kv)?;
        Ok(Self::of_bytes(spec_kv))
    }

    /// The full `sha256:…` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SpecHash {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_sha256_digest(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(SpecError::InvalidDigest {
                value: s.to_owned(),
            })
        }
    }
}

/// True when `s` is `sha256:` followed by exactly 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Checks that `spec_kv` is ByteOr's canonical spec: non-empty UTF-8, `key=value` lines each
/// ending in `\n`, keys of `[A-Za-z0-9_.-]+`, no duplicate key, no `\r`.
pub fn validate_spec_kv(spec_kv: &[u8]) -> Result<(), SpecError> {
    if spec_kv.is_empty() {
        return Err(SpecError::Empty);
    }
    let text = std::str::from_utf8(spec_kv).map_err(|e| SpecError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut seen = HashSet::new();
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some((line, tail)) = rest.split_once('\n') else {
            return Err(SpecError::MissingFinalNewline { line: line_no });
        };
        rest = tail;
        if line.contains('\r') {
            return Err(SpecError::CarriageReturn { line: line_no });
        }
        let Some((key, _value)) = line.split_once('=') else {
            return Err(SpecError::NotKeyValue { line: line_no });
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(SpecError::InvalidKey {
                line: line_no,
                key: key.to_owned(),
            });
        }
        if !seen.insert(key) {
            return Err(SpecError::DuplicateKey {
                line: line_no,
                key: key.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_sha256sum_of_the_bytes() {
        // printf 'a=1\n' | sha256sum
        let hash = SpecHash::of_spec(b"a=1\n").unwrap();
        assert_eq!(
            hash.as_str(),
            "sha256:fe3209d6d4f51935b391288a43df48d9ddece1a992597ae53387ca16611a9179"
        );
    }

    #[test]
    fn accepts_canonical_spec() {
        assert_eq!(validate_spec_kv(b"a=1\nb.c-d_e=x=y\nempty=\n"), Ok(()));
    }

    #[test]
    fn rejects_each_malformation_with_its_line() {
        let cases: &[(&[u8], SpecError)] = &[
            (b"", SpecError::Empty),
            (b"a=1", SpecError::MissingFinalNewline { line: 1 }),
            (b"a=1\r\n", SpecError::CarriageReturn { line: 1 }),
            (b"a=1\nnoequals\n", SpecError::NotKeyValue { line: 2 }),
            (
                b"a b=1\n",
                SpecError::InvalidKey {
                    line: 1,
                    key: "a b".into(),
                },
            ),
            (
                b"=1\n",
                SpecError::InvalidKey {
                    line: 1,
                    key: String::new(),
                },
            ),
            (
                b"a=1\na=2\n",
                SpecError::DuplicateKey {
                    line: 2,
                    key: "a".into(),
                },
            ),
            (b"a=\xff\n", SpecError::NotUtf8 { offset: 2 }),
            (b"\n", SpecError::NotKeyValue { line: 1 }),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_spec_kv(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn digest_format_is_strict() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(good.parse::<SpecHash>().is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(64)),
            "a".repeat(64),
        ] {
            assert!(bad.parse::<SpecHash>().is_err(), "{bad}");
        }
    }
}
