//! `admissionctl audit log-key`: the log's public key (`log.pub`, a C2SP signed-note verifier
//! key line) from its private key, offline, for auditors to verify checkpoints and receipts.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{CliError, ExitStatus, Output};
use crate::transparency::{self, VerifierKey};

/// Arguments of `audit log-key`: the key and origin, given or read from the server's config.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LogKeyArgs {
    /// The log's private key (PKCS#8 PEM), as `[audit] log_key` names it.
    #[arg(long = "key", value_name = "LOG_KEY")]
    pub key: Option<PathBuf>,
    /// The log's origin (the checkpoints' first line), as `[audit] log_origin` names it.
    #[arg(long)]
    pub origin: Option<String>,
    /// Read `[audit] log_key` and `log_origin` from this server config (--key and --origin
    /// override them).
    #[arg(long, value_name = "ADMISSION_TOML")]
    pub config: Option<PathBuf>,
}

/// `[audit] log_key` and `log_origin` of a config file; the key path resolved against the
/// file's directory, as the server resolves it.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConfiguredKey {
    key: Option<PathBuf>,
    origin: Option<String>,
}

/// Prints the `log.pub` line; nothing is sent to the service.
pub fn run(args: &LogKeyArgs, output: &Output) -> Result<ExitStatus, CliError> {
    let configured = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfiguredKey::default(),
    };
    let key_path = args.key.clone().or(configured.key).ok_or_else(|| {
        CliError::usage("no log key: pass --key LOG_KEY or --config with [audit] log_key")
    })?;
    let origin = args.origin.clone().or(configured.origin).ok_or_else(|| {
        CliError::usage("no origin: pass --origin or --config with [audit] log_origin")
    })?;
    let pem = std::fs::read_to_string(&key_path)
        .map_err(|e| CliError::usage(format_args!("cannot read {}: {e}", key_path.display())))?;
    let line = transparency::log_pub_line(&pem, &origin)
        .map_err(|e| CliError::usage(format_args!("{}: {e}", key_path.display())))?;
    let verifier = VerifierKey::parse(&line)
        .map_err(|e| CliError::usage(format_args!("{}: {e}", key_path.display())))?;
    output.print(
        line.trim_end(),
        json!({
            "log_pub": line.trim_end(),
            "origin": verifier.name(),
            "key_id": format!("{:08x}", verifier.id()),
        }),
    );
    Ok(ExitStatus::Ok)
}

/// Reads `[audit] log_key` and `log_origin` from a server config, naming the file in errors.
fn read_config(path: &Path) -> Result<ConfiguredKey, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format_args!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        CliError::usage(format_args!("{}: {}", path.display(), e.message()))
    })?;
    let audit = table.get("audit");
    let field = |name: &str| -> Result<Option<String>, CliError> {
        match audit.and_then(|audit| audit.get(name)) {
            None => Ok(None),
            Some(toml::Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(CliError::usage(format_args!(
                "{}: [audit] {name} must be a string",
                path.display()
            ))),
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(ConfiguredKey {
        key: field("log_key")?.map(|key| dir.join(key)),
        origin: field("log_origin")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_key_beside_it_and_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("admission.toml");
        std::fs::write(
            &config,
            "[audit]\nlog_key = \"log.key\"\nlog_origin = \"admission.test/log\"\n",
        )
        .unwrap();
        assert_eq!(
            read_config(&config).unwrap(),
            ConfiguredKey {
                key: Some(dir.path().join("log.key")),
                origin: Some("admission.test/log".to_owned()),
            }
        );
        std::fs::write(&config, "[audit]\nlog_key = 7\n").unwrap();
        let error = read_config(&config).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("{}: [audit] log_key must be a string", config.display())
        );
        std::fs::write(&config, "[audit\n").unwrap();
        let error = read_config(&config).unwrap_err().to_string();
        assert!(error.starts_with(&config.display().to_string()), "{error}");
    }
}
