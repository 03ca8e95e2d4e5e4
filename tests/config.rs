//! Config loading (SPEC §8): strict parsing, one-line errors naming file and field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, time::Duration};

use admission_server::{identity::roles::Role, identity::tls::Identity, runtime::config::Config};
use common::{DEFAULT_ROLES, Pki, write_config};

/// Writes a valid config into a temp dir, then replaces `from` with `to` in its text.
fn load_edited(from: &str, to: &str) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &Pki::new("ca"), &[], DEFAULT_ROLES);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in config");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let result = Config::load(&path).map_err(|e| e.to_string());
    (dir, result)
}

fn error_of(from: &str, to: &str) -> (String, String) {
    let (dir, result) = load_edited(from, to);
    let error = result.expect_err("config must be refused");
    assert!(!error.contains('\n'), "error is not one line: {error}");
    let prefix = format!("{}/", dir.path().display());
    (error.replace(&prefix, "DIR/"), prefix)
}

#[test]
fn valid_config_loads_with_defaults_and_resolved_paths() {
    let (dir, result) = load_edited("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:50051\"");
    let config = result.unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(
        config.database_url,
        format!("sqlite://{}", dir.path().join("admission.db").display())
    );
    assert_eq!(config.key_set, dir.path().join("signing_keys.json"));
    assert_eq!(config.tls.client_ca, dir.path().join("clients-ca.pem"));
    assert_eq!(config.limits.spec_kv_max_bytes, 1024 * 1024);
    assert_eq!(config.limits.max_credentials, 8);
    assert_eq!(config.limits.credential_max_bytes, 16 * 1024);
    assert_eq!(config.audit.durable_timeout, Duration::from_secs(2));
    assert_eq!(config.environments.len(), 1);
    assert_eq!(config.roles.len(), 3);
    assert!(config.roles.has_role(
        &Identity::new("spiffe://test.local/reviewer/bob"),
        Role::Reviewer,
        Some(("acme", "payments", "prod"))
    ));
    let signing = config
        .signing
        .as_ref()
        .expect("[signing] is written by the test config");
    assert_eq!(signing.key.kid(), common::SERVICE_KID);
    assert_eq!(signing.private_key, dir.path().join("signing.key"));
    assert_eq!(config.key_ring.current().len(), 1);
    assert_eq!(config.policies.len(), 1);
    assert_eq!(
        config.server_tls.alpn_protocols,
        vec![b"h2".to_vec()],
        "gRPC needs ALPN h2"
    );
}

#[test]
fn unknown_field_names_the_line() {
    let (error, _) = error_of("listen =", "lisen =");
    assert!(
        error.starts_with("DIR/admission.toml: unknown field `lisen`, expected one of `listen`"),
        "{error}"
    );
    assert!(error.ends_with(" at line 1"), "{error}");
}

#[test]
fn unknown_field_in_a_table_is_refused() {
    let (error, _) = error_of("crls = []", "crls = []\ncrl = []");
    assert!(
        error.starts_with("DIR/admission.toml: unknown field `crl`"),
        "{error}"
    );
    assert!(error.ends_with(" at line 9"), "{error}");
}

#[test]
fn missing_certificate_file_names_field_and_file() {
    let (error, _) = error_of("cert = \"server.pem\"", "cert = \"missing.pem\"");
    assert!(
        error.starts_with(
            "DIR/admission.toml: [tls] cert: DIR/missing.pem: No such file or directory"
        ),
        "{error}"
    );
}

#[test]
fn file_without_a_certificate_is_refused() {
    let (error, _) = error_of(
        "client_ca = \"clients-ca.pem\"",
        "client_ca = \"server.key\"",
    );
    assert_eq!(
        error,
        "DIR/admission.toml: [tls] client_ca: DIR/server.key: no certificate found"
    );
}

#[test]
fn file_without_a_key_is_refused() {
    let (error, _) = error_of("key = \"server.key\"", "key = \"server.pem\"");
    assert_eq!(
        error,
        "DIR/admission.toml: [tls] key: DIR/server.pem: no private key found"
    );
}

#[test]
fn malformed_crl_is_refused() {
    let (dir, _) = load_edited("crls = []", "crls = []");
    std::fs::write(dir.path().join("bad.crl"), b"not a crl").unwrap();
    let path = dir.path().join("admission.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("crls = []", "crls = [\"bad.crl\"]", 1)).unwrap();
    let error = Config::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}: [tls] crls: ", path.display())),
        "{error}"
    );
}

#[test]
fn unknown_role_is_refused() {
    let (error, _) = error_of("roles = [\"auditor\"]", "roles = [\"admin\"]");
    assert!(
        error.starts_with("DIR/admission.toml: [[roles]] roles: unknown variant `admin`, expected one of `orchestrator`, `reviewer`, `auditor`, `break_glass`"),
        "{error}"
    );
}

#[test]
fn malformed_environment_pattern_is_refused() {
    let (error, _) = error_of(
        "roles = [\"auditor\"]",
        "roles = [\"auditor\"]\nenvironments = [\"acme/payments\"]",
    );
    assert_eq!(
        error,
        "DIR/admission.toml: [[roles]] #3 environments: \"acme/payments\" is not org/project/env"
    );
}

#[test]
fn identity_wildcard_must_be_trailing() {
    let (error, _) = error_of(
        "identity = \"spiffe://test.local/auditor/audit\"",
        "identity = \"spiffe://*/auditor\"",
    );
    assert_eq!(
        error,
        "DIR/admission.toml: [[roles]] #3 identity: \"spiffe://*/auditor\" may use '*' only at the end"
    );
}

#[test]
fn duplicate_environment_is_refused() {
    let environment = "[[environments]]\norg_id = \"acme\"\nproject_id = \"payments\"\nenvironment_id = \"prod\"\nposture = \"prod\"\n";
    let (error, _) = error_of(environment, &format!("{environment}{environment}"));
    assert_eq!(
        error,
        "DIR/admission.toml: [[environments]] #2: duplicate environment acme/payments/prod"
    );
}

#[test]
fn invalid_listen_address_is_refused() {
    let (error, _) = error_of("listen = \"127.0.0.1:0\"", "listen = \"localhost\"");
    assert_eq!(
        error,
        "DIR/admission.toml: listen: \"localhost\" is not an ip:port socket address"
    );
}

#[test]
fn limits_and_audit_tables_are_read() {
    let (_dir, result) = load_edited(
        "[[roles]]",
        "[limits]\nmax_credentials = 4\nhandshake_timeout = \"5s\"\n\n[audit]\ndurable_timeout = \"500ms\"\n\n[[roles]]",
    );
    let config = result.unwrap();
    assert_eq!(config.limits.max_credentials, 4);
    assert_eq!(config.limits.spec_kv_max_bytes, 1024 * 1024);
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(5));
    assert_eq!(config.audit.durable_timeout, Duration::from_millis(500));
}

#[test]
fn missing_config_file_names_it() {
    let error = Config::load(Path::new("/nonexistent/admission.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "/nonexistent/admission.toml: cannot read: No such file or directory (os error 2)"
    );
}
