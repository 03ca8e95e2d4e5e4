//! `[audit]`'s transparency-log settings: the log key (separate from the `[signing]` approval
//! key), the origin it signs as, and how often and where checkpoints are published.

use admission_log::LogKey;

use super::*;

/// The origin line of checkpoints (and the log key's name) when `[audit] log_origin` is not
/// set.
pub const DEFAULT_LOG_ORIGIN: &str = "admission.byteor.dev/log";

/// How often the service signs a checkpoint of a grown trail when `[audit]
/// checkpoint_interval` is not set.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// The transparency log as configured, with its key loaded.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The log key, named by the origin; `None` without `[audit] log_key` (then receipts are
    /// empty and GetCheckpoint answers SIGNING_NOT_CONFIGURED).
    pub key: Option<Arc<LogKey>>,
    /// The key file, resolved.
    pub key_file: Option<PathBuf>,
    /// How often a checkpoint of a grown trail is signed.
    pub checkpoint_interval: Duration,
    /// Where signed checkpoints are written, resolved.
    pub checkpoint_dir: Option<PathBuf>,
}

/// Reads the log key and checks the `[audit]` log fields of `raw`; every problem names its
/// field.
pub(super) fn log_config(base: &Path, raw: &RawConfig) -> Result<LogConfig, Vec<String>> {
    let audit = &raw.audit;
    let mut problems = Vec::new();
    if let Err(problem) = check_origin(&audit.log_origin) {
        problems.push(problem);
    }
    if audit.checkpoint_interval.is_zero() {
        problems.push("[audit] checkpoint_interval: must be longer than 0s".to_owned());
    }
    let checkpoint_dir = audit.checkpoint_dir.as_ref().map(|dir| base.join(dir));
    if let Some(dir) = checkpoint_dir
        .as_ref()
        .filter(|dir| dir.exists() && !dir.is_dir())
    {
        problems.push(format!(
            "[audit] checkpoint_dir: {} is not a directory",
            dir.display()
        ));
    }
    let key_file = audit.log_key.as_ref().map(|file| base.join(file));
    let key = match (&key_file, problems.is_empty()) {
        (Some(file), true) => match read_log_key(base, raw, file) {
            Ok(key) => Some(Arc::new(key)),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        _ => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(LogConfig {
        key,
        key_file,
        checkpoint_interval: audit.checkpoint_interval,
        checkpoint_dir,
    })
}

/// The log key in `file`, refused when it is the `[signing]` key: a log key signs what the
/// service recorded, an approval key what reviewers approved, and one must not pass for the
/// other.
fn read_log_key(base: &Path, raw: &RawConfig, file: &Path) -> Result<LogKey, String> {
    let at = |e: &dyn fmt::Display| format!("[audit] log_key: {}: {e}", file.display());
    let pem = std::fs::read_to_string(file).map_err(|e| at(&e))?;
    let key = LogKey::from_pkcs8_pem(&raw.audit.log_origin, &pem).map_err(|e| at(&e))?;
    let signing_public = raw.signing.as_ref().and_then(|signing| {
        let pem = std::fs::read_to_string(base.join(&signing.private_key)).ok()?;
        LogKey::from_pkcs8_pem(&raw.audit.log_origin, &pem)
            .ok()
            .map(|k| k.public_key())
    });
    if signing_public == Some(key.public_key()) {
        return Err(at(
            &"is the [signing] private_key; the log key must be a separate key",
        ));
    }
    Ok(key)
}

/// An origin is a signed-note key name: non-empty, no '+', whitespace or control character.
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = origin.is_empty()
        || origin
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "[audit] log_origin: {origin:?} must be non-empty without '+', whitespace or control characters"
        ));
    }
    Ok(())
}
