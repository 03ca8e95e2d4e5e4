//! C2SP signed-note: a UTF-8 text ending in a newline, a blank line, then one line per
//! signature, `— <key name> <base64(4-byte key ID || signature)>`.

use base64::{Engine, engine::general_purpose::STANDARD};

use crate::{
    LogError,
    key::{LogKey, VerifierKey, check_key_name},
};

/// The start of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// More signatures than this make a note malformed (as in Go's `sumdb/note`).
const MAX_SIGNATURES: usize = 100;

/// A parsed, not yet verified, signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, final newline included.
    pub text: String,
    /// The signatures, in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name the line names.
    pub name: String,
    /// The key ID the line carries.
    pub key_id: u32,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Signs `text` (which must end in a newline) with `key`: the whole signed note.
pub fn sign_note(text: &str, key: &LogKey) -> Result<String, LogError> {
    check_text(text)?;
    let mut blob = key.verifier().id().to_be_bytes().to_vec();
    blob.extend_from_slice(&key.sign(text.as_bytes()));
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{} {}\n",
        key.name(),
        STANDARD.encode(blob)
    ))
}

/// Parses a signed note without checking any signature.
pub fn parse_note(note: &str) -> Result<SignedNote, LogError> {
    const WHAT: &str = "signed note";
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| LogError::malformed(WHAT, "no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    check_text(text)?;
    if !signatures.ends_with('\n') {
        return Err(LogError::malformed(
            WHAT,
            "the last signature line has no newline",
        ));
    }
    let signatures = signatures[..signatures.len() - 1]
        .split('\n')
        .map(parse_signature_line)
        .collect::<Result<Vec<_>, _>>()?;
    if signatures.len() > MAX_SIGNATURES {
        return Err(LogError::malformed(WHAT, "too many signatures"));
    }
    Ok(SignedNote {
        text: text.to_owned(),
        signatures,
    })
}

/// Checks that `note` carries a valid signature by `key` and returns its text. Signatures by
/// other keys are ignored; one by this key's name and ID that fails makes the note invalid.
pub fn open_note(note: &str, key: &VerifierKey) -> Result<String, LogError> {
    let parsed = parse_note(note)?;
    let mut found = false;
    for signature in &parsed.signatures {
        if signature.name != key.name() || signature.key_id != key.id() {
            continue;
        }
        if !key.verifies(parsed.text.as_bytes(), &signature.signature) {
            return Err(LogError::BadSignature {
                key_name: key.name().to_owned(),
            });
        }
        found = true;
    }
    if !found {
        return Err(LogError::NotSignedByKey {
            key_name: key.name().to_owned(),
            key_id: key.id(),
        });
    }
    Ok(parsed.text)
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, LogError> {
    const WHAT: &str = "note signature";
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| LogError::malformed(WHAT, format!("{line:?} does not start with '— '")))?;
    let (name, blob) = rest
        .split_once(' ')
        .ok_or_else(|| LogError::malformed(WHAT, format!("{line:?} has no signature")))?;
    check_key_name(name)?;
    let blob = STANDARD
        .decode(blob)
        .map_err(|e| LogError::malformed(WHAT, format!("the signature is not base64: {e}")))?;
    if blob.len() < 5 {
        return Err(LogError::malformed(
            WHAT,
            "the signature is shorter than a key ID",
        ));
    }
    let (id, signature) = blob.split_at(4);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// A note's text: non-empty, ends in a newline, no control characters but newlines.
fn check_text(text: &str) -> Result<(), LogError> {
    if !text.ends_with('\n') {
        return Err(LogError::malformed(
            "note text",
            "it does not end in a newline",
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(LogError::malformed(
            "note text",
            "it holds a control character",
        ));
    }
    Ok(())
}
