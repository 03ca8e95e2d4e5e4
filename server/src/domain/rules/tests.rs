use std::time::{Duration, UNIX_EPOCH};

use admission_contract::{
    SpecHash,
    credential::{KeyStatus, SigningKey},
};
use serde::Deserialize;

use super::*;
use crate::{
    domain::policy::{EnvironmentConfig, Policies},
    domain::request::EnvironmentKey,
};

const ENVIRONMENTS: &str = r#"
    [[environments]]
    org_id = "acme"
    project_id = "payments"
    environment_id = "prod"
    posture = "prod"
    gated_capabilities = ["db.migrate"]

    [[environments]]
    org_id = "acme"
    project_id = "payments"
    environment_id = "staging"
    posture = "staging"
    replay = "dry_run_only"

    [[environments]]
    org_id = "acme"
    project_id = "payments"
    environment_id = "dev"
    posture = "dev"
    gated_capabilities = ["db.migrate"]

    [[environments]]
    org_id = "acme"
    project_id = "payments"
    environment_id = "frozen"
    posture = "prod"
    side_effects = "deny_all"
    replay = "disabled"

    [[environments]]
    org_id = "acme"
    project_id = "payments"
    environment_id = "quorum"
    posture = "prod"
    required_approvals = 2
    max_uses = 2
"#;

const CALLER: &str = "spiffe://acme.example/orchestrator/ci";

#[derive(Deserialize)]
struct ConfigFile {
    environments: Vec<EnvironmentConfig>,
}

struct Fixture {
    policies: Policies,
    key: SigningKey,
    keys: KeySet,
}

fn fixture() -> Fixture {
    let file: ConfigFile = toml::from_str(ENVIRONMENTS).unwrap();
    let policies = Policies::from_configs(file.environments).unwrap();
    let (key, _) = SigningKey::generate("org-2026-11").unwrap();
    let jwks = serde_json::json!({ "keys": [key.public_jwk(KeyStatus::Active)] });
    let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    Fixture {
        policies,
        key,
        keys,
    }
}

/// The fixed clock of these tests.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn request(env: &str, action: ActionKind) -> AdmissionRequest {
    AdmissionRequest {
        request_id: "req-1".into(),
        environment: EnvironmentKey {
            org_id: "acme".into(),
            project_id: "payments".into(),
            environment_id: env.into(),
        },
        action,
        spec_hash: SpecHash::of_bytes(b"a=1\n"),
        artifact_digest: format!("sha256:{}", "0".repeat(64)),
        artifact_environment_id: env.into(),
        requested_capabilities: Vec::new(),
        credentials: Vec::new(),
        initiated_by: "dana@acme.example".into(),
        break_glass: None,
        fingerprint: "f".into(),
    }
}

impl Fixture {
    /// A valid credential for a deploy of `a=1\n` to `env`, issued by `issued_by`.
    fn credential(&self, env: &str, approval_id: &str, issued_by: &str) -> String {
        self.key
            .sign(&Claims {
                v: 1,
                kid: self.key.kid().to_owned(),
                org_id: "acme".into(),
                project_id: "payments".into(),
                environment_id: env.into(),
                environment_posture: "prod".into(),
                spec_hash: SpecHash::of_bytes(b"a=1\n").to_string(),
                capabilities: vec!["deploy".into()],
                issued_at: now() - Duration::from_secs(60),
                expires_at: now() + Duration::from_secs(900),
                issued_by: issued_by.into(),
                approval_id: approval_id.into(),
                config_bundle_digest: None,
            })
            .unwrap()
    }

    fn evaluate(
        &self,
        request: &AdmissionRequest,
        approvals: &HashMap<String, ApprovalUseState>,
    ) -> Result<Verdict, Rejection> {
        let env = &request.environment;
        let policy = self
            .policies
            .get(&env.org_id, &env.project_id, &env.environment_id)
            .unwrap();
        let credentials = decode_credentials(request, &RequestLimits::default());
        evaluate(&RuleInput {
            request,
            policy,
            keys: &self.keys,
            caller: CALLER,
            credentials: &credentials,
            approvals,
            now: now(),
        })
    }
}

fn state(revoked: bool, uses: u32, max_uses: u32) -> ApprovalUseState {
    ApprovalUseState {
        revoked,
        uses,
        max_uses,
        approved: !revoked,
    }
}

/// Row 11: each claim over its request field limit makes the credential malformed.
#[test]
fn over_long_claims_are_malformed() {
    let limits = RequestLimits::default();
    let valid = Claims {
        v: 1,
        kid: "k1".into(),
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: "prod".into(),
        environment_posture: "prod".into(),
        spec_hash: SpecHash::of_bytes(b"a=1\n").to_string(),
        capabilities: vec!["deploy".into()],
        issued_at: now(),
        expires_at: now() + Duration::from_secs(60),
        issued_by: "bob".into(),
        approval_id: "apr_1".into(),
        config_bundle_digest: None,
    };
    assert_eq!(check_claim_lengths(&valid, &limits), Ok(()));
    type Edit = fn(&mut Claims);
    let edits: [(&str, Edit); 6] = [
        ("`kid` field is longer than 128", |c| {
            c.kid = "k".repeat(129)
        }),
        ("`org_id` field is longer than 63", |c| {
            c.org_id = "o".repeat(64)
        }),
        ("`issued_by` field is longer than 1024", |c| {
            c.issued_by = "b".repeat(1025)
        }),
        ("`config_bundle_digest` field is longer than 128", |c| {
            c.config_bundle_digest = Some("d".repeat(129))
        }),
        ("`capabilities` field names more than 32", |c| {
            c.capabilities = vec!["x".into(); 33]
        }),
        ("`capabilities` field is longer than 128", |c| {
            c.capabilities = vec!["x".repeat(129)]
        }),
    ];
    for (expected, edit) in edits {
        let mut claims = valid.clone();
        edit(&mut claims);
        let Err(VerifyError::Malformed { detail }) = check_claim_lengths(&claims, &limits) else {
            panic!("{expected}: not malformed");
        };
        assert!(detail.contains(expected), "{detail}");
    }
}

/// One row per SPEC §7 row 6–10: the request, and the reason (or none when admitted).
#[test]
fn rows_6_to_10_policy_and_artifacts() {
    let f = fixture();
    let none = HashMap::new();
    let with_artifact_from = |env: &str, action, from: &str| AdmissionRequest {
        artifact_environment_id: from.into(),
        ..request(env, action)
    };
    let gated = AdmissionRequest {
        requested_capabilities: vec!["db.migrate".into()],
        ..request("dev", ActionKind::Deploy)
    };
    let cases = [
        (
            "6 deploy",
            request("frozen", ActionKind::Deploy),
            Some(Reason::PolicyDenied),
        ),
        (
            "6 dry-run replay",
            request("frozen", ActionKind::ReplayDryRun),
            Some(Reason::PolicyDenied),
        ),
        (
            "7",
            request("staging", ActionKind::ReplayExecute),
            Some(Reason::ReplayExecuteNotPermitted),
        ),
        (
            "7 dry-run allowed",
            request("staging", ActionKind::ReplayDryRun),
            None,
        ),
        (
            "8",
            with_artifact_from("prod", ActionKind::Deploy, "staging"),
            Some(Reason::ConfigBundleEnvironmentMismatch),
        ),
        (
            "9",
            with_artifact_from("prod", ActionKind::ReplayExecute, "staging"),
            Some(Reason::SourceEnvironmentMismatch),
        ),
        (
            "9 dry-run",
            with_artifact_from("prod", ActionKind::ReplayDryRun, "staging"),
            Some(Reason::SourceEnvironmentMismatch),
        ),
        (
            "10",
            request("prod", ActionKind::Deploy),
            Some(Reason::ApprovalRequired),
        ),
        (
            "10 execute replay",
            request("prod", ActionKind::ReplayExecute),
            Some(Reason::ApprovalRequired),
        ),
        ("10 gated capability", gated, Some(Reason::ApprovalRequired)),
        ("dev allows", request("dev", ActionKind::Deploy), None),
        (
            "dry-run allows",
            request("prod", ActionKind::ReplayDryRun),
            None,
        ),
    ];
    for (row, request, expected) in cases {
        let result = f.evaluate(&request, &none);
        match expected {
            Some(reason) => assert_eq!(result.unwrap_err().reason, reason, "row {row}"),
            None => assert_eq!(result, Ok(Verdict::Allowed), "row {row}"),
        }
    }

    let mismatch = f
        .evaluate(
            &with_artifact_from("prod", ActionKind::Deploy, "staging"),
            &none,
        )
        .unwrap_err();
    assert_eq!(mismatch.metadata["expected"], "prod");
    assert_eq!(mismatch.metadata["actual"], "staging");
    let required = f
        .evaluate(&request("prod", ActionKind::ReplayExecute), &none)
        .unwrap_err();
    assert_eq!(
        required.message,
        "execute replay in acme/payments/prod requires approval; attach a credential \
         covering replay.execute"
    );
}

#[test]
fn rows_23_and_24_use_state() {
    let f = fixture();
    let request = AdmissionRequest {
        credentials: vec![f.credential("prod", "apr_1", "bob")],
        ..request("prod", ActionKind::Deploy)
    };
    let with = |s: ApprovalUseState| HashMap::from([("apr_1".to_owned(), s)]);

    // Row 23, also when it is used up as well: revocation is the earlier row.
    for revoked in [state(true, 0, 1), state(true, 1, 1)] {
        let rejection = f.evaluate(&request, &with(revoked)).unwrap_err();
        assert_eq!(rejection.reason, Reason::ApprovalRevoked);
        assert_eq!(rejection.metadata["approval_id"], "apr_1");
    }
    // Row 24.
    let rejection = f.evaluate(&request, &with(state(false, 1, 1))).unwrap_err();
    assert_eq!(rejection.reason, Reason::ApprovalConsumed);
    assert_eq!(rejection.metadata["approval_id"], "apr_1");
    assert_eq!(
        rejection.message,
        "approval apr_1 has been used 1 of 1 times; request a new approval"
    );
    // Uses left, or never used: approved, one use of it to consume.
    for approvals in [with(state(false, 1, 2)), HashMap::new()] {
        let verdict = f.evaluate(&request, &approvals).unwrap();
        assert_eq!(
            verdict,
            Verdict::Approved(vec![UsedApproval {
                approval_id: "apr_1".into(),
                issuers: vec!["bob".into()],
                capabilities: vec!["deploy".into()],
                expires_at: now() + Duration::from_secs(900),
            }])
        );
    }
    // The stored state of another approval does not matter.
    let other = HashMap::from([("apr_2".to_owned(), state(true, 5, 1))]);
    assert!(f.evaluate(&request, &other).is_ok());
}

#[test]
fn row_25_quorum_of_distinct_issuers() {
    let f = fixture();
    let with = |credentials: Vec<String>| AdmissionRequest {
        credentials,
        ..request("quorum", ActionKind::Deploy)
    };
    let none = HashMap::new();

    let one = with(vec![f.credential("quorum", "apr_1", "bob")]);
    let rejection = f.evaluate(&one, &none).unwrap_err();
    assert_eq!(rejection.reason, Reason::QuorumNotMet);
    assert_eq!(rejection.metadata["expected"], "2");
    assert_eq!(rejection.metadata["actual"], "1");

    let same_issuer = with(vec![
        f.credential("quorum", "apr_1", "bob"),
        f.credential("quorum", "apr_2", "bob"),
    ]);
    let rejection = f.evaluate(&same_issuer, &none).unwrap_err();
    assert_eq!(rejection.reason, Reason::QuorumNotMet);
    assert_eq!(rejection.metadata["actual"], "1");

    // Two reviewers on one approval: one use of it.
    let one_approval = with(vec![
        f.credential("quorum", "apr_1", "bob"),
        f.credential("quorum", "apr_1", "carol"),
    ]);
    let Ok(Verdict::Approved(used)) = f.evaluate(&one_approval, &none) else {
        panic!("two distinct issuers meet the quorum");
    };
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].issuers, ["bob", "carol"]);

    // Two approvals from two reviewers: one use of each.
    let two_approvals = with(vec![
        f.credential("quorum", "apr_1", "bob"),
        f.credential("quorum", "apr_2", "carol"),
    ]);
    let Ok(Verdict::Approved(used)) = f.evaluate(&two_approvals, &none) else {
        panic!("two distinct issuers meet the quorum");
    };
    let ids: Vec<_> = used.iter().map(|u| u.approval_id.as_str()).collect();
    assert_eq!(ids, ["apr_1", "apr_2"]);

    // A use-state failure of a credential comes before the quorum (row 24 before 25).
    let consumed = HashMap::from([("apr_1".to_owned(), state(false, 2, 2))]);
    assert_eq!(
        f.evaluate(&one, &consumed).unwrap_err().reason,
        Reason::ApprovalConsumed
    );

    // Credentials of an approval still pending (or denied) never count toward the quorum.
    let pending = HashMap::from([(
        "apr_1".to_owned(),
        ApprovalUseState {
            approved: false,
            ..state(false, 0, 1)
        },
    )]);
    let rejection = f.evaluate(&two_approvals, &pending).unwrap_err();
    assert_eq!(rejection.reason, Reason::QuorumNotMet);
    assert_eq!(rejection.metadata["actual"], "1");
}
