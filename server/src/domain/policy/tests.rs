use std::time::UNIX_EPOCH;

use admission_contract::credential::parse_time;

use std::time::SystemTime;

use admission_contract::{Reason, credential::Claims};

use super::*;
use crate::domain::rejection::Rejection;
use crate::domain::rules::{
    claims::{CredentialCheck, check_claims},
    quorum,
};

fn config(posture: Posture) -> EnvironmentConfig {
    EnvironmentConfig {
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: "prod".into(),
        posture,
        side_effects: None,
        replay: None,
        required_capabilities: None,
        gated_capabilities: vec!["db.migrate".into()],
        required_approvals: None,
        max_credential_ttl: None,
        max_uses: None,
        enforcement: Enforcement::Enforce,
        break_glass: false,
        clock_skew: None,
    }
}

fn policy(posture: Posture) -> EnvironmentPolicy {
    EnvironmentPolicy::from_config(config(posture)).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn at(text: &str) -> SystemTime {
    parse_time(text).unwrap()
}

#[test]
fn defaults_follow_spec_section_6() {
    let prod = policy(Posture::Prod);
    assert_eq!(prod.side_effects, SideEffects::RequireApproval);
    assert_eq!(
        policy(Posture::Staging).side_effects,
        SideEffects::RequireApproval
    );
    assert_eq!(policy(Posture::Dev).side_effects, SideEffects::AllowAll);
    assert_eq!(prod.replay, ReplayPolicy::Allowed);
    assert_eq!(prod.required_capabilities.deploy, strings(&["deploy"]));
    assert_eq!(
        prod.required_capabilities.replay_execute,
        strings(&["replay.execute"])
    );
    assert_eq!(prod.required_approvals, 1);
    assert_eq!(prod.max_credential_ttl, Duration::from_secs(3600));
    assert_eq!(prod.max_uses, 1);
    assert_eq!(prod.clock_skew, Duration::from_secs(30));
    assert_eq!(prod.enforcement, Enforcement::Enforce);
    assert!(!prod.break_glass);
}

#[test]
fn config_durations_parse_as_written() {
    for (text, secs) in [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("2h30m", 9000),
        ("2h 30m", 9000),
        ("30s", 30),
    ] {
        assert_eq!(
            humantime::parse_duration(text),
            Ok(Duration::from_secs(secs)),
            "{text}"
        );
    }
    let parsed: EnvironmentConfig = toml::from_str(
        r#"
        org_id = "acme"
        project_id = "payments"
        environment_id = "prod"
        posture = "prod"
        max_credential_ttl = "2h30m"
        clock_skew = "90s"
        "#,
    )
    .unwrap();
    assert_eq!(parsed.max_credential_ttl, Some(Duration::from_secs(9000)));
    assert_eq!(parsed.clock_skew, Some(Duration::from_secs(90)));
}

#[test]
fn policies_reject_duplicates_and_invalid_values() {
    let policies = Policies::from_configs(vec![config(Posture::Prod)]).unwrap();
    assert_eq!(policies.len(), 1);
    assert!(policies.get("acme", "payments", "prod").is_some());
    assert!(policies.get("acme", "payments", "staging").is_none());
    assert_eq!(
        Policies::from_configs(vec![config(Posture::Prod), config(Posture::Dev)]).unwrap_err(),
        "environment acme/payments/prod is configured twice; keep one [[environments]] \
         table for it"
    );
    let mut zero = config(Posture::Prod);
    zero.required_approvals = Some(0);
    assert_eq!(
        Policies::from_configs(vec![zero]).unwrap_err(),
        "environment acme/payments/prod sets required_approvals = 0; it must be at least 1"
    );
    let mut slash = config(Posture::Prod);
    slash.project_id = "pay/ments".into();
    assert!(Policies::from_configs(vec![slash]).is_err());
}

#[test]
fn decide_table() {
    use ActionKind::*;
    use PolicyDecision::*;
    use ReplayPolicy::{Allowed, Disabled, DryRunOnly as DryOnly};
    use SideEffects::{AllowAll, DenyAll, RequireApproval as NeedsApproval};

    let none: &[&str] = &[];
    let gated: &[&str] = &["deploy", "db.migrate"];
    // (side_effects, replay, action, requested, expected)
    let table: &[(
        SideEffects,
        ReplayPolicy,
        ActionKind,
        &[&str],
        PolicyDecision,
    )] = &[
        (AllowAll, Allowed, Deploy, none, Allow),
        (AllowAll, Allowed, Deploy, gated, RequireApproval),
        (NeedsApproval, Allowed, Deploy, none, RequireApproval),
        (NeedsApproval, Allowed, Deploy, gated, RequireApproval),
        (DenyAll, Allowed, Deploy, none, Deny),
        (DenyAll, Allowed, Deploy, gated, Deny),
        (AllowAll, Allowed, ReplayDryRun, gated, Allow),
        (DenyAll, Allowed, ReplayDryRun, none, Allow),
        (NeedsApproval, DryOnly, ReplayDryRun, none, Allow),
        (AllowAll, Disabled, ReplayDryRun, none, Deny),
        (AllowAll, Disabled, ReplayExecute, none, Deny),
        (AllowAll, DryOnly, ReplayExecute, gated, DryRunOnly),
        (NeedsApproval, DryOnly, ReplayExecute, none, DryRunOnly),
        (AllowAll, Allowed, ReplayExecute, none, Allow),
        (AllowAll, Allowed, ReplayExecute, gated, RequireApproval),
        (NeedsApproval, Allowed, ReplayExecute, none, RequireApproval),
        (DenyAll, Allowed, ReplayExecute, gated, Deny),
        // Replay policy does not affect deploys.
        (AllowAll, Disabled, Deploy, none, Allow),
    ];
    for posture in [Posture::Dev, Posture::Staging, Posture::Prod] {
        for (side_effects, replay, action, requested, expected) in table {
            let mut config = config(posture);
            config.side_effects = Some(*side_effects);
            config.replay = Some(*replay);
            let policy = EnvironmentPolicy::from_config(config).unwrap();
            assert_eq!(
                policy.decide(*action, &strings(requested)),
                *expected,
                "{posture} {side_effects:?} {replay:?} {action} {requested:?}"
            );
        }
    }
    // Posture defaults: dev allows a plain deploy, staging and prod require approval.
    let plain = strings(&["deploy"]);
    assert_eq!(policy(Posture::Dev).decide(Deploy, &plain), Allow);
    assert_eq!(
        policy(Posture::Staging).decide(Deploy, &plain),
        RequireApproval
    );
    assert_eq!(
        policy(Posture::Prod).decide(Deploy, &plain),
        RequireApproval
    );
    assert_eq!(
        policy(Posture::Dev).decide(Deploy, &strings(&["db.migrate"])),
        RequireApproval
    );
}

#[test]
fn required_capabilities_are_policy_set_and_requested_sorted_unique() {
    let prod = policy(Posture::Prod);
    let requested = strings(&["db.migrate", "deploy", "db.migrate"]);
    assert_eq!(
        prod.required_capabilities(ActionKind::Deploy, &requested),
        strings(&["db.migrate", "deploy"])
    );
    assert_eq!(
        prod.required_capabilities(ActionKind::ReplayExecute, &strings(&["a"])),
        strings(&["a", "replay.execute"])
    );
    assert_eq!(
        prod.required_capabilities(ActionKind::ReplayDryRun, &strings(&["b", "a"])),
        strings(&["a", "b"])
    );
    assert!(
        prod.required_capabilities(ActionKind::ReplayDryRun, &[])
            .is_empty()
    );
}

const SPEC: &str = "sha256:abababababababababababababababababababababababababababababababab";
const OTHER_SPEC: &str = "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
const BUNDLE: &str = "sha256:0101010101010101010101010101010101010101010101010101010101010101";

fn claims() -> Claims {
    Claims {
        v: 1,
        kid: "org-2026-11".into(),
        org_id: "acme".into(),
        project_id: "payments".into(),
        environment_id: "prod".into(),
        environment_posture: "prod".into(),
        spec_hash: SPEC.into(),
        capabilities: strings(&["deploy"]),
        issued_at: at("2026-11-23T10:00:00Z"),
        expires_at: at("2026-11-23T10:15:00Z"),
        issued_by: "bob".into(),
        approval_id: "apr_123".into(),
        config_bundle_digest: None,
    }
}

fn check(claims: &Claims, policy: &EnvironmentPolicy) -> Result<(), Rejection> {
    check_at(claims, policy, at("2026-11-23T10:05:00Z"))
}

fn check_at(claims: &Claims, policy: &EnvironmentPolicy, now: SystemTime) -> Result<(), Rejection> {
    let required = strings(&["deploy"]);
    check_claims(
        claims,
        &CredentialCheck {
            policy,
            spec_hash: SPEC,
            config_bundle_digest: Some(BUNDLE),
            required_capabilities: &required,
            initiated_by: "alice",
            caller: "spiffe://acme.example/orchestrator/ci",
            now,
        },
    )
}

/// Reason, message and metadata of a rejection, with the always-present ids checked.
fn rejected(result: Result<(), Rejection>) -> (Reason, String, HashMap<String, String>) {
    let rejection = result.expect_err("expected a rejection");
    assert_eq!(rejection.metadata["approval_id"], "apr_123");
    assert_eq!(rejection.metadata["kid"], "org-2026-11");
    (rejection.reason, rejection.message, rejection.metadata)
}

#[test]
fn valid_claims_pass() {
    let prod = policy(Posture::Prod);
    assert_eq!(check(&claims(), &prod), Ok(()));
    let mut bound = claims();
    bound.config_bundle_digest = Some(BUNDLE.into());
    assert_eq!(check(&bound, &prod), Ok(()));
}

#[test]
fn row_16_spec_hash_mismatch() {
    let mut c = claims();
    c.spec_hash = OTHER_SPEC.into();
    let (reason, message, meta) = rejected(check(&c, &policy(Posture::Prod)));
    assert_eq!(reason, Reason::SpecHashMismatch);
    assert_eq!(meta["expected"], SPEC);
    assert_eq!(meta["actual"], OTHER_SPEC);
    assert_eq!(
        message,
        format!(
            "approval apr_123 is bound to spec {OTHER_SPEC} but this request has {SPEC}; \
             request an approval for this spec"
        )
    );
}

#[test]
fn row_17_environment_and_posture_mismatch() {
    let prod = policy(Posture::Prod);
    let mut c = claims();
    c.environment_id = "staging".into();
    let (reason, message, meta) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::EnvironmentMismatch);
    assert_eq!(meta["expected"], "acme/payments/prod");
    assert_eq!(meta["actual"], "acme/payments/staging");
    assert_eq!(
        message,
        "approval apr_123 is for environment acme/payments/staging but this request targets \
         acme/payments/prod; request an approval for acme/payments/prod"
    );
    for (field, value) in [("org", "globex"), ("project", "billing")] {
        let mut c = claims();
        match field {
            "org" => c.org_id = value.into(),
            _ => c.project_id = value.into(),
        }
        assert_eq!(rejected(check(&c, &prod)).0, Reason::EnvironmentMismatch);
    }
    let mut c = claims();
    c.environment_posture = "staging".into();
    let (reason, message, meta) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::EnvironmentMismatch);
    assert_eq!(
        (meta["expected"].as_str(), meta["actual"].as_str()),
        ("prod", "staging")
    );
    assert_eq!(
        message,
        "approval apr_123 was issued for posture staging but environment acme/payments/prod \
         has posture prod; request a new approval"
    );
}

#[test]
fn row_18_expiry_and_not_yet_valid_with_clock_skew_edges() {
    let prod = policy(Posture::Prod);
    let c = claims();
    // expires 10:15:00, skew 30s: valid until just before 10:15:30.
    assert_eq!(check_at(&c, &prod, at("2026-11-23T10:15:29Z")), Ok(()));
    let (reason, message, meta) = rejected(check_at(&c, &prod, at("2026-11-23T10:15:30Z")));
    assert_eq!(reason, Reason::CredentialExpired);
    assert_eq!(meta["expires_at"], "2026-11-23T10:15:00Z");
    assert_eq!(
        message,
        "approval apr_123 expired at 2026-11-23T10:15:00Z (server time \
         2026-11-23T10:15:30Z, clock skew 30s); request a new approval"
    );
    // issued 10:00:00, skew 30s: valid from 09:59:30.
    assert_eq!(check_at(&c, &prod, at("2026-11-23T09:59:30Z")), Ok(()));
    let (reason, message, _) = rejected(check_at(&c, &prod, at("2026-11-23T09:59:29Z")));
    assert_eq!(reason, Reason::CredentialNotYetValid);
    assert_eq!(
        message,
        "approval apr_123 is issued at 2026-11-23T10:00:00Z, later than server time \
         2026-11-23T09:59:29Z plus clock skew 30s; check the issuer's clock"
    );
    // Times at the edges of SystemTime never panic.
    let mut extreme = claims();
    extreme.issued_at = UNIX_EPOCH;
    extreme.expires_at = UNIX_EPOCH;
    assert_eq!(
        rejected(check_at(
            &extreme,
            &prod,
            UNIX_EPOCH + Duration::from_secs(30)
        ))
        .0,
        Reason::CredentialExpired
    );
    let (reason, message, _) = rejected(check_at(&c, &prod, UNIX_EPOCH - Duration::from_secs(1)));
    assert_eq!(reason, Reason::CredentialNotYetValid);
    assert!(message.contains("server time SystemTime"), "{message}");
}

#[test]
fn row_19_capabilities_insufficient_lists_missing() {
    let prod = policy(Posture::Prod);
    let c = claims();
    let required = strings(&["db.migrate", "deploy", "replay.execute"]);
    let result = check_claims(
        &c,
        &CredentialCheck {
            policy: &prod,
            spec_hash: SPEC,
            config_bundle_digest: None,
            required_capabilities: &required,
            initiated_by: "alice",
            caller: "ci",
            now: at("2026-11-23T10:05:00Z"),
        },
    );
    let (reason, message, meta) = rejected(result);
    assert_eq!(reason, Reason::CapabilitiesInsufficient);
    assert_eq!(meta["missing"], "db.migrate,replay.execute");
    assert_eq!(
        message,
        "approval apr_123 does not grant capabilities db.migrate,replay.execute that this \
         request needs; request an approval that includes them"
    );
}

#[test]
fn row_20_config_bundle_mismatch() {
    let prod = policy(Posture::Prod);
    let mut c = claims();
    c.config_bundle_digest = Some(OTHER_SPEC.into());
    let (reason, message, meta) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::ConfigBundleMismatch);
    assert_eq!(meta["expected"], BUNDLE);
    assert_eq!(meta["actual"], OTHER_SPEC);
    assert_eq!(
        message,
        format!(
            "approval apr_123 is bound to config bundle {OTHER_SPEC} but this request \
             carries {BUNDLE}; deploy the approved bundle or request a new approval"
        )
    );
}

#[test]
fn row_21_lifetime_exceeds_policy() {
    let prod = policy(Posture::Prod);
    let mut c = claims();
    c.expires_at = at("2026-11-23T12:30:00Z");
    let (reason, message, meta) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::CredentialLifetimeExceedsPolicy);
    assert_eq!(
        (meta["expected"].as_str(), meta["actual"].as_str()),
        ("1h", "2h 30m")
    );
    assert_eq!(
        message,
        "approval apr_123 is valid for 2h 30m but environment acme/payments/prod accepts \
         at most 1h; re-issue it with a shorter lifetime"
    );
    // Exactly the maximum is accepted.
    c.expires_at = at("2026-11-23T11:00:00Z");
    assert_eq!(check(&c, &prod), Ok(()));
}

#[test]
fn row_22_self_approval() {
    let prod = policy(Posture::Prod);
    let mut c = claims();
    c.issued_by = "alice".into();
    let (reason, message, _) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::SelfApproval);
    assert_eq!(
        message,
        "approval apr_123 was issued by alice, who initiated this request; another reviewer \
         must approve it"
    );
    c.issued_by = "spiffe://acme.example/orchestrator/ci".into();
    let (reason, message, _) = rejected(check(&c, &prod));
    assert_eq!(reason, Reason::SelfApproval);
    assert!(
        message.contains("who is the caller of this request"),
        "{message}"
    );
}

#[test]
fn first_failing_row_wins() {
    let prod = policy(Posture::Prod);
    let late = at("2026-11-23T13:00:00Z");
    // Each case breaks two rows; the earlier row must be reported.
    let mut wrong_env_and_expired = claims();
    wrong_env_and_expired.environment_id = "staging".into();
    let mut spec_and_env = claims();
    spec_and_env.spec_hash = OTHER_SPEC.into();
    spec_and_env.org_id = "globex".into();
    let mut expired_and_missing = claims();
    expired_and_missing.capabilities.clear();
    let mut missing_and_bundle = claims();
    missing_and_bundle.capabilities.clear();
    missing_and_bundle.config_bundle_digest = Some(OTHER_SPEC.into());
    let mut bundle_and_lifetime = claims();
    bundle_and_lifetime.config_bundle_digest = Some(OTHER_SPEC.into());
    bundle_and_lifetime.expires_at = at("2026-11-23T12:00:00Z");
    let mut lifetime_and_self = claims();
    lifetime_and_self.expires_at = at("2026-11-23T12:00:00Z");
    lifetime_and_self.issued_by = "alice".into();
    let cases = [
        (wrong_env_and_expired, late, Reason::EnvironmentMismatch),
        (spec_and_env, late, Reason::SpecHashMismatch),
        (expired_and_missing, late, Reason::CredentialExpired),
        (
            missing_and_bundle.clone(),
            at("2026-11-23T10:05:00Z"),
            Reason::CapabilitiesInsufficient,
        ),
        (
            bundle_and_lifetime,
            at("2026-11-23T10:05:00Z"),
            Reason::ConfigBundleMismatch,
        ),
        (
            lifetime_and_self,
            at("2026-11-23T10:05:00Z"),
            Reason::CredentialLifetimeExceedsPolicy,
        ),
    ];
    for (claims, now, expected) in cases {
        assert_eq!(
            rejected(check_at(&claims, &prod, now)).0,
            expected,
            "{claims:?}"
        );
    }
}

#[test]
fn quorum_counts_distinct_issuers() {
    assert_eq!(quorum(["bob", "carol"].into_iter(), 2), Ok(()));
    assert_eq!(quorum(std::iter::empty(), 0), Ok(()));
    let rejection = quorum(["bob", "bob"].into_iter(), 2).unwrap_err();
    assert_eq!(rejection.reason, Reason::QuorumNotMet);
    assert_eq!(rejection.metadata["expected"], "2");
    assert_eq!(rejection.metadata["actual"], "1");
    assert_eq!(
        rejection.message,
        "this request needs approvals from 2 distinct issuers but has 1 (bob); attach \
         credentials from more reviewers"
    );
    let none = quorum(std::iter::empty(), 1).unwrap_err();
    assert!(
        none.message.contains("but has 0 (none)"),
        "{}",
        none.message
    );
}
