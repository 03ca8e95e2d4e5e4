//! The shared test harness of the root, server and client tests (the latter two include this
//! file with `#[path = "../../tests/common/mod.rs"]`):
//!
//! - [`pki`]: an rcgen CA issuing server and client certificates, and CRLs;
//! - [`server`]: the config writer and an in-process server on `127.0.0.1:0` with real mTLS;
//! - [`store`]: the backend switch, a fresh SQLite or PostgreSQL database per test, raw SQL and
//!   the write lock;
//! - the standard identities, role bindings and environments (below);
//! - [`requests`]: valid requests whose fields a test overrides;
//! - [`dev`]: `admission-server dev` as a child process, and clients of its identities;
//! - [`raw_h2`]: a raw HTTP/2 client, for tests that misbehave on purpose.
// Each test target uses a part of the harness.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod dev;
pub mod pki;
pub mod raw_h2;
pub mod requests;
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

/// Writes the role bindings of the identities above (used by [`ROLES`] and [`DEFAULT_ROLES`]).
macro_rules! roles_toml {
    () => {
        r#"
[[roles]]
identity = "spiffe://test.local/orchestrator/ci"
roles = ["orchestrator"]

[[roles]]
identity = "spiffe://test.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://test.local/auditor/audit"
roles = ["auditor"]
"#
    };
}

/// Writes the `acme/payments/prod` environment (used by [`PROD_ENVIRONMENT`] and
/// [`DEFAULT_ROLES`]).
macro_rules! prod_environment_toml {
    () => {
        r#"
[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "prod"
posture = "prod"
"#
    };
}

/// Role bindings for the identities above.
pub const ROLES: &str = roles_toml!();

/// `acme/payments/prod`: the prod posture's defaults, one approval of one use.
pub const PROD_ENVIRONMENT: &str = prod_environment_toml!();

/// `acme/payments/dev`: the dev posture, admitted without credentials.
pub const DEV_ENVIRONMENT: &str = r#"
[[environments]]
org_id = "acme"
project_id = "payments"
environment_id = "dev"
posture = "dev"
"#;

/// `acme/shop/dev`: a second dev environment, in another project.
pub const SHOP_DEV_ENVIRONMENT: &str = r#"
[[environments]]
org_id = "acme"
project_id = "shop"
environment_id = "dev"
posture = "dev"
"#;

/// [`ROLES`] and [`PROD_ENVIRONMENT`]: the config most tests start from.
pub const DEFAULT_ROLES: &str = concat!(roles_toml!(), prod_environment_toml!());
