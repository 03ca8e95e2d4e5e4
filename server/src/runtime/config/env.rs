//! The config file's text before and while it is parsed: `${VAR}` expansion from the process
//! environment, and toml errors turned into one line naming the field.
//!
//! Expansion happens inside TOML string values only (quoted, of any of the four kinds), never
//! in comments or bare values, so a variable cannot add keys or tables. `${VAR}` is VAR's
//! value (unset is an error naming VAR, the line and the field); `${VAR:-default}` is VAR's
//! value, or `default` when VAR is unset or empty; `$$` is one literal `$`. A value is inserted
//! as literal text: in a `"basic"` string its `"` and `\` are escaped, and a value that a
//! `'literal'` string cannot hold is an error.

/// The kind of TOML string the scanner is inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// Where the scanner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Bare,
    Comment,
    In(Quote),
}

/// The value of a set, non-empty, UTF-8 environment variable.
pub(super) fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `text` with every `${VAR}`, `${VAR:-default}` and `$$` in its string values replaced, or
/// every reference that cannot be, one line each.
pub(super) fn expand(
    text: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut scan = Scan::Bare;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let consumed = match scan {
            Scan::Bare => bare(rest, &mut scan),
            Scan::Comment => {
                if c == '\n' {
                    scan = Scan::Bare;
                }
                c.len_utf8()
            }
            Scan::In(quote) => {
                if c == '$' {
                    let offset = text.len() - rest.len();
                    let (len, value) = reference(text, offset, quote, &var);
                    match value {
                        Ok(value) => out.push_str(&value),
                        Err(problem) => problems.push(problem),
                    }
                    rest = &rest[len..];
                    continue;
                }
                quoted(rest, quote, &mut scan)
            }
        };
        out.push_str(&rest[..consumed]);
        rest = &rest[consumed..];
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Outside strings and comments: notes where one begins; returns the bytes to copy.
fn bare(rest: &str, scan: &mut Scan) -> usize {
    let (next, len) = if rest.starts_with("\"\"\"") {
        (Scan::In(Quote::MultiBasic), 3)
    } else if rest.starts_with("'''") {
        (Scan::In(Quote::MultiLiteral), 3)
    } else if rest.starts_with('"') {
        (Scan::In(Quote::Basic), 1)
    } else if rest.starts_with('\'') {
        (Scan::In(Quote::Literal), 1)
    } else if rest.starts_with('#') {
        (Scan::Comment, 1)
    } else {
        return rest.chars().next().map_or(1, char::len_utf8);
    };
    *scan = next;
    len
}

/// Inside a string (at anything but `$`): notes where it ends; returns the bytes to copy.
fn quoted(rest: &str, quote: Quote, scan: &mut Scan) -> usize {
    let escapes = matches!(quote, Quote::Basic | Quote::MultiBasic);
    if escapes && rest.starts_with('\\') {
        // The escaped character is copied with its backslash, whatever it is.
        return 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
    }
    let close = match quote {
        Quote::Basic => "\"",
        Quote::MultiBasic => "\"\"\"",
        Quote::Literal => "'",
        Quote::MultiLiteral => "'''",
    };
    let single_line = matches!(quote, Quote::Basic | Quote::Literal);
    if rest.starts_with(close) {
        *scan = Scan::Bare;
        return close.len();
    }
    if single_line && rest.starts_with('\n') {
        // An unterminated string: the parser reports it; scanning resumes outside.
        *scan = Scan::Bare;
    }
    rest.chars().next().map_or(1, char::len_utf8)
}

/// The reference starting with the `$` at `offset`: how many bytes it spans and its text as it
/// goes into a `quote` string, or the problem with it.
fn reference(
    text: &str,
    offset: usize,
    quote: Quote,
    var: &impl Fn(&str) -> Option<String>,
) -> (usize, Result<String, String>) {
    let rest = &text[offset..];
    if rest.starts_with("$$") {
        return (2, Ok("$".to_owned()));
    }
    if !rest.starts_with("${") {
        return (1, Ok("$".to_owned()));
    }
    let at = |what: String| {
        let line = text[..offset].matches('\n').count() + 1;
        match value_field(text, offset) {
            Some(field) => format!("{field}: {what} (line {line})"),
            None => format!("{what} (line {line})"),
        }
    };
    let Some(end) = rest.find('}').filter(|end| !rest[..*end].contains('\n')) else {
        return (1, Err(at("`${` without a closing `}`".to_owned())));
    };
    let inner = &rest[2..end];
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let value = if !is_variable_name(name) {
        Err(at(format!(
            "${{{inner}}} does not name a variable (letters, digits and _; write $$ for a literal $)"
        )))
    } else {
        match (var(name), default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_owned()),
            (None, None) => Err(at(format!(
                "environment variable {name} is not set (${{{name}}})"
            ))),
        }
    };
    let value =
        value.and_then(|value| quote_value(&value, quote).map_err(|e| at(format!("{name}: {e}"))));
    (end + 1, value)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `value` written so that the `quote` string holds exactly it.
fn quote_value(value: &str, quote: Quote) -> Result<String, String> {
    match quote {
        Quote::Basic | Quote::MultiBasic => {
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' if quote == Quote::MultiBasic => out.push('\n'),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
            Ok(out)
        }
        Quote::Literal if value.contains(['\'', '\n']) => Err(
            "its value has a ' or a line break, which a '...' string cannot hold; use \"...\""
                .to_owned(),
        ),
        Quote::MultiLiteral if value.contains("'''") => Err(
            "its value has ''', which a '''...''' string cannot hold; use \"\"\"...\"\"\""
                .to_owned(),
        ),
        Quote::Literal | Quote::MultiLiteral => Ok(value.to_owned()),
    }
}

/// The toml error's message with the line it points at, on one line; an error about a value
/// (the span is right of `=`) is prefixed with its table and key, so it names the field.
pub(super) fn toml_error(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    match value_field(text, start) {
        Some(field) => format!("{field}: {message} at line {line}"),
        None => format!("{message} at line {line}"),
    }
}

/// `[table] key` (or `key` at top level) when `offset` lies in the value of a `key = value`
/// line.
fn value_field(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[line_start..offset].split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['));
    Some(match table {
        Some(table) => format!("{table} {key}"),
        None => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "DB_PASSWORD" => Some("s3cr\"et\\".to_owned()),
            "HOST" => Some("db.internal".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn references_in_strings_expand_and_comments_stay() {
        let text = concat!(
            "# ${NOT_EXPANDED} in a comment\n",
            "database_url = \"postgres://a:${DB_PASSWORD}@${HOST}:${PORT:-5432}/db\"\n",
            "key_set = '${HOST}.json' # ${ALSO_NOT}\n",
            "note = \"costs $$5 and \\\"${HOST}\\\"\"\n",
        );
        let expanded = expand(text, vars).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            expanded,
            concat!(
                "# ${NOT_EXPANDED} in a comment\n",
                "database_url = \"postgres://a:s3cr\\\"et\\\\@db.internal:5432/db\"\n",
                "key_set = 'db.internal.json' # ${ALSO_NOT}\n",
                "note = \"costs $5 and \\\"db.internal\\\"\"\n",
            )
        );
    }

    #[test]
    fn every_unset_or_malformed_reference_is_reported_with_field_and_line() {
        let text = "listen = \"${LISTEN}\"\n[tls]\ncert = \"${1BAD}\"\nkey = \"${OPEN\"\n";
        let problems = expand(text, vars).unwrap_err();
        assert_eq!(
            problems,
            [
                "listen: environment variable LISTEN is not set (${LISTEN}) (line 1)",
                "[tls] cert: ${1BAD} does not name a variable (letters, digits and _; write $$ \
                 for a literal $) (line 3)",
                "[tls] key: `${` without a closing `}` (line 4)",
            ]
        );
    }

    #[test]
    fn a_value_a_literal_string_cannot_hold_is_refused() {
        let problems = expand("database_url = '${DB_PASSWORD}x'\n", |_| {
            Some("it's".into())
        })
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("database_url: DB_PASSWORD: its value has a '"),
            "{problems:?}"
        );
    }
}
