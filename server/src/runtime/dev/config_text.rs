//! The config file dev mode writes.

use super::{DEFAULT_LISTEN, log_key::DEV_LOG_ORIGIN};

/// The config of a dev directory whose signing key is `kid`.
pub(super) fn config_text(kid: &str) -> String {
    format!(
        r#"# Local development configuration written by `admission-server dev`. Not for production.
listen = "{DEFAULT_LISTEN}"
database_url = "sqlite://admission.db"
key_set = "signing_keys.json"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
crls = []

[signing]
kid = "{kid}"
private_key = "signing.key"

[audit]
log_key = "log.key"
log_origin = "{DEV_LOG_ORIGIN}"
checkpoint_dir = "checkpoints"

[[roles]]
identity = "spiffe://dev.local/orchestrator/ci"
roles = ["orchestrator", "break_glass"]

[[roles]]
identity = "spiffe://dev.local/reviewer/*"
roles = ["reviewer"]

[[roles]]
identity = "spiffe://dev.local/auditor/audit"
roles = ["auditor"]

[[environments]]
org_id = "dev"
project_id = "app"
environment_id = "dev"
posture = "dev"

[[environments]]
org_id = "dev"
project_id = "app"
environment_id = "prod"
posture = "prod"
side_effects = "require_approval"
replay = "allowed"
required_approvals = 1
max_uses = 1
"#
    )
}
