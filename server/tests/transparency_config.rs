//! `[audit]`'s transparency-log fields in the real binary: each bad value exits 2 with one line
//! naming the config file and the field; dev mode writes a log key the config loads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

use admission_log::VerifierKey;

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

/// A dev directory whose `[audit]` section is replaced by `audit`; returns the config path.
fn dev_config_with_audit(dir: &Path, audit: &str) -> std::path::PathBuf {
    let config = admission_server::runtime::dev::prepare(dir).unwrap().config;
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("[audit]\n").expect("dev config has [audit]");
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}[audit]\n{audit}{}", &text[..start], &text[end..]);
    std::fs::write(&config, text).unwrap();
    config
}

/// Runs `check-config`; asserts exit 2 and one stderr line, and returns that line.
fn check_config_fails(config: &Path) -> String {
    let output = Command::new(BIN)
        .arg("check-config")
        .arg(config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let prefix = format!("{}: ", config.display());
    assert!(stderr.starts_with(&prefix), "{stderr}");
    stderr[prefix.len()..].trim_end().to_owned()
}

#[test]
fn dev_mode_writes_a_log_key_and_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = admission_server::runtime::dev::prepare(dir.path())
        .unwrap()
        .config;
    let loaded = admission_server::runtime::config::Config::load(&config).unwrap();
    let key = loaded.log.key.expect("dev mode configures a log key");
    let public = std::fs::read_to_string(dir.path().join("log.pub")).unwrap();
    let verifier = VerifierKey::parse(public.trim_end()).unwrap();
    assert_eq!(verifier, key.verifier());
    assert_eq!(key.name(), admission_server::runtime::dev::DEV_LOG_ORIGIN);
}

#[test]
fn a_missing_log_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_with_audit(dir.path(), "log_key = \"missing.key\"\n");
    let line = check_config_fails(&config);
    let file = dir.path().join("missing.key");
    assert!(
        line.starts_with(&format!("[audit] log_key: {}: ", file.display())),
        "{line}"
    );
}

#[test]
fn a_log_key_that_is_not_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_with_audit(dir.path(), "log_key = \"bad.key\"\n");
    std::fs::write(dir.path().join("bad.key"), "not a key\n").unwrap();
    let line = check_config_fails(&config);
    assert!(line.starts_with("[audit] log_key: "), "{line}");
    assert!(line.contains("bad.key"), "{line}");
}

#[test]
fn a_bad_checkpoint_interval_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_with_audit(
        dir.path(),
        "log_key = \"log.key\"\ncheckpoint_interval = \"soon\"\n",
    );
    let line = check_config_fails(&config);
    assert!(
        line.starts_with("[audit] checkpoint_interval: invalid duration \"soon\""),
        "{line}"
    );
    let config = dev_config_with_audit(
        dir.path(),
        "log_key = \"log.key\"\ncheckpoint_interval = \"0s\"\n",
    );
    assert_eq!(
        check_config_fails(&config),
        "[audit] checkpoint_interval: must be longer than 0s"
    );
}

#[test]
fn the_signing_key_is_refused_as_log_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_with_audit(dir.path(), "log_key = \"signing.key\"\n");
    let line = check_config_fails(&config);
    assert_eq!(
        line,
        format!(
            "[audit] log_key: {}: is the [signing] private_key; the log key must be a separate key",
            dir.path().join("signing.key").display()
        )
    );
}

#[test]
fn a_bad_origin_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_config_with_audit(
        dir.path(),
        "log_key = \"log.key\"\nlog_origin = \"two words\"\n",
    );
    assert!(
        check_config_fails(&config).starts_with("[audit] log_origin: \"two words\""),
        "bad origin"
    );
}
