//! Bounded echoes of untrusted input.
//!
//! Rejection messages, ErrorInfo metadata and audit rows sometimes repeat what a caller sent (a
//! key, an id). Repeating it unbounded lets one request blow up the response trailers and the
//! audit trail, so every such echo goes through [`echo`]: at most [`ECHO_MAX_BYTES`] bytes of
//! the input, cut at a character boundary, followed by `…` when anything was cut.

use std::fmt;

/// Longest echo of input, in bytes (UTF-8). Every valid id (at most 128 bytes) fits unchanged.
pub const ECHO_MAX_BYTES: usize = 128;

/// Marks an echo that was cut short.
pub const ECHO_ELLIPSIS: char = '…';

/// `input` for display, cut to at most [`ECHO_MAX_BYTES`] bytes plus `…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo<'a>(&'a str);

/// Wraps untrusted `input` so that displaying it is bounded.
pub fn echo(input: &str) -> Echo<'_> {
    Echo(input)
}

/// `input` cut to at most [`ECHO_MAX_BYTES`] bytes plus `…`, as an owned string.
pub fn truncated(input: &str) -> String {
    echo(input).to_string()
}

// === impl Echo ===

impl Echo<'_> {
    /// The kept prefix and whether anything was cut.
    fn parts(&self) -> (&str, bool) {
        if self.0.len() <= ECHO_MAX_BYTES {
            return (self.0, false);
        }
        let mut end = ECHO_MAX_BYTES;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        (&self.0[..end], true)
    }
}

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kept, cut) = self.parts();
        f.write_str(kept)?;
        if cut {
            write!(f, "{ECHO_ELLIPSIS}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_unchanged() {
        let id = "a".repeat(ECHO_MAX_BYTES);
        assert_eq!(truncated(&id), id);
        assert_eq!(truncated(""), "");
    }

    #[test]
    fn long_input_is_cut_with_an_ellipsis() {
        let long = "x".repeat(1024 * 1024);
        let shown = truncated(&long);
        assert_eq!(shown, format!("{}…", "x".repeat(ECHO_MAX_BYTES)));
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        // 'é' is two bytes, so byte 128 falls inside a character.
        let long = format!("a{}", "é".repeat(200));
        let shown = truncated(&long);
        assert!(shown.ends_with('…'));
        assert!(shown.len() <= ECHO_MAX_BYTES + '…'.len_utf8());
        assert_eq!(shown.len(), 127 + '…'.len_utf8());
    }
}
