//! Shared end-to-end test harness: an rcgen PKI, a config writer, an in-process server on
//! `127.0.0.1:0` with real mTLS, and client builders for it.
// Each test target uses a part of the harness.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod pki;
pub mod server;
pub mod store;

pub use pki::{Issued, Pki};
pub use server::{ConfigOptions, SERVICE_KID, TestServer, write_config, write_config_with};

/// Identity with the orchestrator role in [`DEFAULT_ROLES`].
pub const ORCHESTRATOR: &str = "spiffe://test.local/orchestrator/ci";
/// Identity with the reviewer role in [`DEFAULT_ROLES`].
pub const REVIEWER: &str = "spiffe://test.local/reviewer/alice";
/// Identity with the auditor role in [`DEFAULT_ROLES`].
pub const AUDITOR: &str = "spiffe://test.local/auditor/audit";
/// Identity with no role at all.
pub const NOBODY: &str = "spiffe://test.local/nobody";

/// Role bindings for the identities above.
pub const DEFAULT_ROLES: &str = r#"
[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]

[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"
"#;
