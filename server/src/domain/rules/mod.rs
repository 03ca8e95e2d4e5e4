//! SPEC §7 rows 6–25 as one pure function: request, environment policy, key set, the stored
//! state of the approvals involved, and the clock in; a verdict or the first failing check out.

pub mod claims;

use std::{
    collections::{BTreeSet, HashMap},
    time::SystemTime,
};

use admission_contract::{
    Reason,
    credential::{self, Claims, Decoded, KeySet, VerifyError},
};

use self::claims::{CredentialCheck, check_claims};
use super::request::{AdmissionRequest, RequestLimits};
use crate::{
    domain::credential::verify_rejection,
    domain::policy::{ActionKind, EnvironmentPolicy, PolicyDecision},
    domain::rejection::Rejection,
};

/// Stored use state of one approval (rows 23–24).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalUseState {
    /// Revoked by a reviewer.
    pub revoked: bool,
    /// Admissions that consumed it so far.
    pub uses: u32,
    /// Admissions it may be used for.
    pub max_uses: u32,
    /// Reviewers completed it. Credentials of a pending or denied approval never count toward
    /// the quorum, even if they escaped before the review ended.
    pub approved: bool,
}

/// Everything the rules look at.
pub struct RuleInput<'a> {
    /// The validated request.
    pub request: &'a AdmissionRequest,
    /// The target environment's policy.
    pub policy: &'a EnvironmentPolicy,
    /// Trusted signing keys.
    pub keys: &'a KeySet,
    /// The calling identity.
    pub caller: &'a str,
    /// The request's credentials decoded (row 11), in the order given; see
    /// [`decode_credentials`].
    pub credentials: &'a [Result<Decoded, VerifyError>],
    /// Stored state of approvals named by the credentials (absent = never used).
    pub approvals: &'a HashMap<String, ApprovalUseState>,
    /// The clock.
    pub now: SystemTime,
}

/// What the rules decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Policy allows it without approval.
    Allowed,
    /// Break-glass: rows 10–25 skipped.
    BreakGlass,
    /// Approved by these credentials.
    Approved(Vec<UsedApproval>),
}

/// One approval whose credentials admitted the request; one use of it is consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedApproval {
    /// The approval id shared by its credentials.
    pub approval_id: String,
    /// Distinct `issued_by` of its valid credentials.
    pub issuers: Vec<String>,
    /// Capabilities granted (union over its credentials).
    pub capabilities: Vec<String>,
    /// Latest expiry among its credentials.
    pub expires_at: SystemTime,
}

/// The policy decision for a request (SPEC §6), used by Admit and Preview alike.
pub fn policy_decision(request: &AdmissionRequest, policy: &EnvironmentPolicy) -> PolicyDecision {
    policy.decide(request.action, &request.requested_capabilities)
}

/// Whether the rules will look at the request's credentials: approval is required and
/// break-glass was not asked for. Otherwise nothing about them needs decoding or reading.
pub fn needs_credentials(request: &AdmissionRequest, policy: &EnvironmentPolicy) -> bool {
    request.break_glass.is_none()
        && policy_decision(request, policy) == PolicyDecision::RequireApproval
}

/// Row 11 for every credential, once: the engine reads the approvals they name from the
/// store, then the rules check them in order. A claim longer than the same field of a request
/// may be is "too long", like the token itself.
pub fn decode_credentials(
    request: &AdmissionRequest,
    limits: &RequestLimits,
) -> Vec<Result<Decoded, VerifyError>> {
    request
        .credentials
        .iter()
        .map(|token| {
            let decoded = credential::decode(token, limits.credential_max_bytes)?;
            check_claim_lengths(&decoded.claims, limits)?;
            Ok(decoded)
        })
        .collect()
}

/// The claims' strings within the request field limits (row 11).
fn check_claim_lengths(claims: &Claims, limits: &RequestLimits) -> Result<(), VerifyError> {
    let fields = [
        ("kid", &claims.kid, limits.id_max_bytes),
        ("approval_id", &claims.approval_id, limits.id_max_bytes),
        ("spec_hash", &claims.spec_hash, limits.id_max_bytes),
        ("org_id", &claims.org_id, limits.environment_part_max_bytes),
        (
            "project_id",
            &claims.project_id,
            limits.environment_part_max_bytes,
        ),
        (
            "environment_id",
            &claims.environment_id,
            limits.environment_part_max_bytes,
        ),
        (
            "environment_posture",
            &claims.environment_posture,
            limits.environment_part_max_bytes,
        ),
        ("issued_by", &claims.issued_by, limits.text_max_bytes),
    ];
    let too_long = |field: &str, max: usize| VerifyError::Malformed {
        detail: format!("its `{field}` field is longer than {max} bytes"),
    };
    if let Some((field, _, max)) = fields.iter().find(|(_, value, max)| value.len() > *max) {
        return Err(too_long(field, *max));
    }
    if let Some(digest) = &claims.config_bundle_digest {
        if digest.len() > limits.id_max_bytes {
            return Err(too_long("config_bundle_digest", limits.id_max_bytes));
        }
    }
    if claims.capabilities.len() > limits.max_capabilities {
        return Err(VerifyError::Malformed {
            detail: format!(
                "its `capabilities` field names more than {} capabilities",
                limits.max_capabilities
            ),
        });
    }
    if claims
        .capabilities
        .iter()
        .any(|c| c.len() > limits.capability_max_bytes)
    {
        return Err(too_long("capabilities", limits.capability_max_bytes));
    }
    Ok(())
}

/// Runs rows 6–25 in order; the first failing check wins.
pub fn evaluate(input: &RuleInput<'_>) -> Result<Verdict, Rejection> {
    let RuleInput {
        request, policy, ..
    } = input;
    let environment = &request.environment;
    let decision = policy_decision(request, policy);

    // Row 6.
    if decision == PolicyDecision::Deny {
        return Err(Rejection::new(
            Reason::PolicyDenied,
            format!(
                "the policy of {environment} denies {}",
                action_phrase(request.action)
            ),
        ));
    }
    // Row 7.
    if decision == PolicyDecision::DryRunOnly && request.action == ActionKind::ReplayExecute {
        return Err(Rejection::new(
            Reason::ReplayExecuteNotPermitted,
            format!(
                "{environment} permits only dry-run replay; run it with mode REPLAY_MODE_DRY_RUN"
            ),
        ));
    }
    // Rows 8 and 9.
    check_artifact_environment(request)?;

    if let Some(justification) = &request.break_glass {
        return break_glass(request, policy, justification);
    }
    if decision == PolicyDecision::Allow {
        return Ok(Verdict::Allowed);
    }
    // Row 10.
    if request.credentials.is_empty() {
        return Err(Rejection::new(
            Reason::ApprovalRequired,
            format!(
                "{} in {environment} requires approval; attach a credential covering {}",
                action_phrase(request.action),
                policy
                    .required_capabilities(request.action, &request.requested_capabilities)
                    .join(", ")
            ),
        ));
    }
    check_credentials(input)
}

fn check_artifact_environment(request: &AdmissionRequest) -> Result<(), Rejection> {
    let expected = &request.environment.environment_id;
    let actual = &request.artifact_environment_id;
    if expected == actual {
        return Ok(());
    }
    let rejection = if request.action == ActionKind::Deploy {
        Rejection::new(
            Reason::ConfigBundleEnvironmentMismatch,
            format!(
                "config bundle was made for environment {actual} but this deploy targets {expected}"
            ),
        )
    } else {
        Rejection::new(
            Reason::SourceEnvironmentMismatch,
            format!(
                "source artifact comes from environment {actual} but this replay targets {expected}"
            ),
        )
    };
    Err(rejection.expected_actual(expected.clone(), actual.clone()))
}

fn break_glass(
    request: &AdmissionRequest,
    policy: &EnvironmentPolicy,
    justification: &str,
) -> Result<Verdict, Rejection> {
    if !policy.break_glass {
        return Err(Rejection::new(
            Reason::PolicyDenied,
            format!(
                "break-glass is not enabled for {}; attach approval credentials instead",
                request.environment
            ),
        ));
    }
    if justification.trim().is_empty() {
        return Err(Rejection::invalid_field(
            "break_glass.justification",
            "is required for break-glass",
        ));
    }
    Ok(Verdict::BreakGlass)
}

/// Rows 11–25: each credential in order through rows 11–24, then the quorum.
fn check_credentials(input: &RuleInput<'_>) -> Result<Verdict, Rejection> {
    let request = input.request;
    let required = input
        .policy
        .required_capabilities(request.action, &request.requested_capabilities);
    let check = CredentialCheck {
        policy: input.policy,
        spec_hash: request.spec_hash.as_str(),
        config_bundle_digest: (request.action == ActionKind::Deploy)
            .then_some(request.artifact_digest.as_str()),
        required_capabilities: &required,
        initiated_by: &request.initiated_by,
        caller: input.caller,
        now: input.now,
    };
    let mut used: Vec<UsedApproval> = Vec::new();
    for decoded in input.credentials {
        // Rows 11–15.
        let decoded = decoded.as_ref().map_err(|e| verify_rejection(e, None))?;
        credential::verify_decoded(decoded, input.keys)
            .map_err(|e| verify_rejection(&e, Some(&decoded.claims.approval_id)))?;
        let claims = decoded.claims.clone();
        // Rows 16–22.
        check_claims(&claims, &check)?;
        // Rows 23–24.
        check_use_state(&claims, input.approvals)?;
        if input
            .approvals
            .get(&claims.approval_id)
            .is_some_and(|state| !state.approved)
        {
            continue;
        }
        record_use(&mut used, claims);
    }
    // Row 25.
    quorum(
        used.iter()
            .flat_map(|u| u.issuers.iter().map(String::as_str)),
        input.policy.required_approvals,
    )?;
    Ok(Verdict::Approved(used))
}

fn check_use_state(
    claims: &Claims,
    approvals: &HashMap<String, ApprovalUseState>,
) -> Result<(), Rejection> {
    let Some(state) = approvals.get(&claims.approval_id) else {
        return Ok(());
    };
    let id = &claims.approval_id;
    if state.revoked {
        return Err(Rejection::new(
            Reason::ApprovalRevoked,
            format!("approval {id} was revoked; request a new approval"),
        )
        .with("approval_id", id.clone()));
    }
    if state.uses >= state.max_uses {
        return Err(Rejection::new(
            Reason::ApprovalConsumed,
            format!(
                "approval {id} has been used {} of {} times; request a new approval",
                state.uses, state.max_uses
            ),
        )
        .with("approval_id", id.clone()));
    }
    Ok(())
}

fn record_use(used: &mut Vec<UsedApproval>, claims: Claims) {
    match used
        .iter_mut()
        .find(|u| u.approval_id == claims.approval_id)
    {
        Some(approval) => {
            if !approval.issuers.contains(&claims.issued_by) {
                approval.issuers.push(claims.issued_by);
            }
            let capabilities: BTreeSet<String> = approval
                .capabilities
                .drain(..)
                .chain(claims.capabilities)
                .collect();
            approval.capabilities = capabilities.into_iter().collect();
            approval.expires_at = approval.expires_at.max(claims.expires_at);
        }
        None => used.push(UsedApproval {
            approval_id: claims.approval_id,
            issuers: vec![claims.issued_by],
            capabilities: claims.capabilities,
            expires_at: claims.expires_at,
        }),
    }
}

/// SPEC §7 row 25: at least `required` distinct issuers among the valid credentials.
pub fn quorum<'a>(
    valid_issuers: impl Iterator<Item = &'a str>,
    required: u32,
) -> Result<(), Rejection> {
    let distinct: BTreeSet<&str> = valid_issuers.collect();
    let have = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
    if have >= required {
        return Ok(());
    }
    let named = if distinct.is_empty() {
        "none".to_owned()
    } else {
        distinct.into_iter().collect::<Vec<_>>().join(", ")
    };
    Err(Rejection::new(
        Reason::QuorumNotMet,
        format!(
            "this request needs approvals from {required} distinct issuers but has {have} \
             ({named}); attach credentials from more reviewers"
        ),
    )
    .expected_actual(required.to_string(), have.to_string()))
}

/// How messages name an action.
pub fn action_phrase(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Deploy => "deploy",
        ActionKind::ReplayDryRun => "dry-run replay",
        ActionKind::ReplayExecute => "execute replay",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
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
            let Err(VerifyError::Malformed { detail }) = check_claim_lengths(&claims, &limits)
            else {
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
}
