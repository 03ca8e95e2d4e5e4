//! The hash chain: how `entry_hash` is computed, precisely enough to re-check it by hand.
//!
//! `entry_hash = lowercase_hex(SHA-256(E))`, where `E` is the UTF-8 byte string made of the
//! header line `byteor-audit-entry-v1\n` followed by one line for each of these 20 fields, in
//! this order:
//!
//! ```text
//! seq  entry_id  recorded_at  actor  actor_cert_sha256  initiated_by  action
//! org_id  project_id  environment_id  spec_hash  capabilities  approval_ids  approvers
//! outcome  reason  grpc_code  request_id  detail  prev_hash
//! ```
//!
//! Each field line is
//! `<name>=<length>:<value>\n`, where `<length>` is the number of **bytes** of `<value>` in
//! decimal without leading zeros, so a value may itself contain `=`, `:` or newlines without
//! ambiguity. Values are:
//!
//! - `seq`: the decimal position in the chain, starting at 1;
//! - `recorded_at`: decimal microseconds since the Unix epoch (UTC);
//! - `capabilities`, `approval_ids`, `approvers`: a compact JSON array of strings in the order
//!   recorded (no whitespace; strings escaped as RFC 8785 prescribes: only `"`, `\` and control
//!   characters are escaped, controls as `\b \t \n \f \r` or `\u00xx` with lowercase hex), e.g.
//!   `["deploy","db.migrate"]`; the empty list is `[]`. This is exactly the text stored in the
//!   database column of the same name;
//! - `prev_hash`: the `entry_hash` of the entry with `seq - 1`, or 64 `0` characters for seq 1;
//! - every other field: its text exactly as stored.
//!
//! Example: an entry with `actor = "ci"` contributes the line `actor=2:ci\n`.
//! Re-checking a row by hand: build `E` from the row's columns with `printf` and compare
//! `sha256sum` with the row's `entry_hash`, then check that the next row's `prev_hash` equals it.

use sha2::{Digest, Sha256};

use super::NewEntry;

/// `prev_hash` of the first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// First line of the canonical encoding; names the encoding version.
const HEADER: &str = "byteor-audit-entry-v1\n";

/// The canonical JSON text of a list of strings, as hashed and as stored.
pub fn canonical_list(items: &[String]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|s| s.len() + 3).sum::<usize>());
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, item);
    }
    out.push(']');
    out
}

/// The canonical encoding `E` of one entry at `seq`, recorded at `recorded_at_micros`.
pub fn canonical_encoding(
    seq: u64,
    recorded_at_micros: i64,
    entry: &NewEntry,
    prev_hash: &str,
) -> Vec<u8> {
    let mut out = String::with_capacity(512 + entry.detail.len());
    out.push_str(HEADER);
    let seq = seq.to_string();
    let recorded_at = recorded_at_micros.to_string();
    let fields: [(&str, &str); 20] = [
        ("seq", &seq),
        ("entry_id", &entry.entry_id),
        ("recorded_at", &recorded_at),
        ("actor", &entry.actor),
        ("actor_cert_sha256", &entry.actor_cert_sha256),
        ("initiated_by", &entry.initiated_by),
        ("action", &entry.action),
        ("org_id", &entry.scope.org_id),
        ("project_id", &entry.scope.project_id),
        ("environment_id", &entry.scope.environment_id),
        ("spec_hash", &entry.spec_hash),
        ("capabilities", &canonical_list(&entry.capabilities)),
        ("approval_ids", &canonical_list(&entry.approval_ids)),
        ("approvers", &canonical_list(&entry.approvers)),
        ("outcome", &entry.outcome),
        ("reason", &entry.reason),
        ("grpc_code", &entry.grpc_code),
        ("request_id", &entry.request_id),
        ("detail", &entry.detail),
        ("prev_hash", prev_hash),
    ];
    for (name, value) in fields {
        out.push_str(name);
        out.push('=');
        out.push_str(&value.len().to_string());
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.into_bytes()
}

/// `entry_hash` from the 20 field values in encoding order, as stored (lists as their JSON
/// text, `seq` and `recorded_at` in decimal): what verification re-computes from a row
/// without building an entry.
pub fn hash_of_values(values: &[&str; 20]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(HEADER);
    for (name, value) in FIELD_NAMES.iter().zip(values) {
        hasher.update(name);
        hasher.update("=");
        hasher.update(value.len().to_string());
        hasher.update(":");
        hasher.update(value);
        hasher.update("\n");
    }
    hex::encode(hasher.finalize())
}

/// The encoded fields, in order.
const FIELD_NAMES: [&str; 20] = [
    "seq",
    "entry_id",
    "recorded_at",
    "actor",
    "actor_cert_sha256",
    "initiated_by",
    "action",
    "org_id",
    "project_id",
    "environment_id",
    "spec_hash",
    "capabilities",
    "approval_ids",
    "approvers",
    "outcome",
    "reason",
    "grpc_code",
    "request_id",
    "detail",
    "prev_hash",
];

/// True when `text` is exactly what [`canonical_list`] writes for some list: no whitespace,
/// and only the escapes it uses.
pub fn is_canonical_list(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    if inner.is_empty() {
        return true;
    }
    let mut chars = inner.chars();
    loop {
        if chars.next() != Some('"') || !canonical_string_rest(&mut chars) {
            return false;
        }
        match chars.next() {
            None => return true,
            Some(',') => {}
            Some(_) => return false,
        }
    }
}

/// Reads a JSON string after its opening quote, through its closing quote; false unless
/// every escape is one [`canonical_list`] writes.
fn canonical_string_rest(chars: &mut std::str::Chars<'_>) -> bool {
    loop {
        match chars.next() {
            None => return false,
            Some('"') => return true,
            Some('\\') => match chars.next() {
                Some('"' | '\\' | 'b' | 't' | 'n' | 'f' | 'r') => {}
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let lower = hex.len() == 4 && !hex.contains(|c: char| c.is_ascii_uppercase());
                    match u32::from_str_radix(&hex, 16) {
                        Ok(code) if lower && code < 0x20 && ![8, 9, 10, 12, 13].contains(&code) => {
                        }
                        _ => return false,
                    }
                }
                _ => return false,
            },
            Some(c) if (c as u32) < 0x20 => return false,
            Some(_) => {}
        }
    }
}

/// `entry_hash` of one entry: lowercase hex SHA-256 of its canonical encoding.
pub fn entry_hash(seq: u64, recorded_at_micros: i64, entry: &NewEntry, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(canonical_encoding(
        seq,
        recorded_at_micros,
        entry,
        prev_hash,
    )))
}

/// Appends `value` as a JSON string with RFC 8785 escaping.
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Scope;

    fn sample() -> NewEntry {
        NewEntry {
            entry_id: "dec_1".into(),
            actor: "ci".into(),
            actor_cert_sha256: "ab".into(),
            initiated_by: "alice".into(),
            action: "deploy.admit".into(),
            scope: Scope {
                org_id: "acme".into(),
                project_id: "payments".into(),
                environment_id: "prod".into(),
            },
            spec_hash: "sha256:00".into(),
            capabilities: vec!["deploy".into(), "db.migrate".into()],
            approval_ids: vec![],
            approvers: vec!["bob".into()],
            outcome: "admitted".into(),
            reason: String::new(),
            grpc_code: "OK".into(),
            request_id: "r-1".into(),
            detail: "line one\nline=two".into(),
        }
    }

    #[test]
    fn hash_of_stored_values_matches_the_entry_hash() {
        let entry = sample();
        let lists = [
            canonical_list(&entry.capabilities),
            canonical_list(&entry.approval_ids),
            canonical_list(&entry.approvers),
        ];
        let values = [
            "7",
            &entry.entry_id,
            "1700000000000001",
            &entry.actor,
            &entry.actor_cert_sha256,
            &entry.initiated_by,
            &entry.action,
            &entry.scope.org_id,
            &entry.scope.project_id,
            &entry.scope.environment_id,
            &entry.spec_hash,
            &lists[0],
            &lists[1],
            &lists[2],
            &entry.outcome,
            &entry.reason,
            &entry.grpc_code,
            &entry.request_id,
            &entry.detail,
            GENESIS_HASH,
        ];
        assert_eq!(
            hash_of_values(&values),
            entry_hash(7, 1_700_000_000_000_001, &entry, GENESIS_HASH)
        );
    }

    #[test]
    fn canonical_lists_are_recognised_exactly() {
        for list in [
            vec![],
            vec!["deploy".to_owned()],
            vec![
                "a\"b\\c".to_owned(),
                "\u{1}\u{8}\t\n\u{c}\r\u{1f}".to_owned(),
                "é".to_owned(),
            ],
            vec![String::new(), ",".to_owned()],
        ] {
            let text = canonical_list(&list);
            assert!(is_canonical_list(&text), "{text}");
        }
        for text in [
            "",
            "[",
            "[ ]",
            "[\"a\" ]",
            "[\"a\",]",
            "[,\"a\"]",
            "[\"a\"\"b\"]",
            "[\"\\/\"]",
            "[\"\\u0041\"]",
            "[\"\\u000A\"]",
            "[\"\\u000a\"]",
            "[\"\n\"]",
            "[\"a]",
            "[1]",
        ] {
            assert!(!is_canonical_list(text), "{text}");
        }
    }

    #[test]
    fn encoding_is_length_prefixed_lines() {
        let encoded = String::from_utf8(canonical_encoding(
            7,
            1_700_000_000_000_001,
            &sample(),
            GENESIS_HASH,
        ))
        .unwrap_or_default();
        let expected = concat!(
            "byteor-audit-entry-v1\n",
            "seq=1:7\n",
            "entry_id=5:dec_1\n",
            "recorded_at=16:1700000000000001\n",
            "actor=2:ci\n",
            "actor_cert_sha256=2:ab\n",
            "initiated_by=5:alice\n",
            "action=12:deploy.admit\n",
            "org_id=4:acme\n",
            "project_id=8:payments\n",
            "environment_id=4:prod\n",
            "spec_hash=9:sha256:00\n",
            "capabilities=23:[\"deploy\",\"db.migrate\"]\n",
            "approval_ids=2:[]\n",
            "approvers=7:[\"bob\"]\n",
            "outcome=8:admitted\n",
            "reason=0:\n",
            "grpc_code=2:OK\n",
            "request_id=3:r-1\n",
            "detail=17:line one\nline=two\n",
            "prev_hash=64:0000000000000000000000000000000000000000000000000000000000000000\n",
        );
        assert_eq!(encoded, expected);
    }

    #[test]
    fn hash_is_sha256_of_encoding() {
        let entry = sample();
        let encoded = canonical_encoding(1, 5, &entry, GENESIS_HASH);
        assert_eq!(
            entry_hash(1, 5, &entry, GENESIS_HASH),
            hex::encode(Sha256::digest(&encoded))
        );
    }

    #[test]
    fn list_escaping_matches_rfc8785() {
        let items = vec!["a\"b\\c".to_owned(), "\u{1}\n\u{1f}é/".to_owned()];
        assert_eq!(
            canonical_list(&items),
            "[\"a\\\"b\\\\c\",\"\\u0001\\n\\u001fé/\"]"
        );
        assert_eq!(canonical_list(&[]), "[]");
        // serde_json escapes strings the same way, so the stored text parses back.
        let parsed: Vec<String> = serde_json::from_str(&canonical_list(&items)).unwrap_or_default();
        assert_eq!(parsed, items);
    }
}
