//! The approval lifecycle (SPEC §3 Approvals): request, review, sign, select, revoke.
//!
//! States are `pending → approved | denied | revoked`; `expired` is derived from `expires_at`
//! when read, never stored. Every state change is written together with its audit entry in one
//! append, guarded by the row's version so concurrent reviewers cannot overwrite each other.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use admission_contract::{
    Reason, SpecHash,
    credential::{Claims, SigningKey},
    echo, pb,
};

use crate::{
    app::wire::{environment_key, pb_action, pb_posture},
    domain::decision::new_decision_id,
    domain::policy::{ActionKind, EnvironmentPolicy, Policies, Posture},
    domain::rejection::Rejection,
    domain::request::{EnvironmentKey, FieldCheck, RequestLimits},
    identity::roles::{Role, RoleBindings},
    identity::tls::Caller,
    store::{Append, Appended, ApprovalRow, ApprovalWrite, AuditStore, NewEntry, Scope},
};

/// How often a decide or revoke re-reads the approval after losing a race to another writer.
const WRITE_ATTEMPTS: usize = 5;

/// The Approvals service's domain.
#[derive(Clone)]
pub struct ApprovalService {
    policies: Arc<Policies>,
    roles: Arc<RoleBindings>,
    store: AuditStore,
    signer: Option<Arc<SigningKey>>,
    limits: RequestLimits,
}

/// What a refused approval call was about, for its audit entry.
#[derive(Default)]
struct Attempt {
    approval_id: String,
    scope: Scope,
    spec_hash: String,
    initiated_by: String,
}

impl Attempt {
    fn of(approval_id: &str) -> Self {
        Self {
            approval_id: echo::truncated(approval_id),
            ..Self::default()
        }
    }
}

/// A validated `CreateApprovalRequest`.
struct NewApproval {
    environment: EnvironmentKey,
    action: ActionKind,
    spec_hash: String,
    capabilities: Vec<String>,
    ttl: Option<Duration>,
    justification: String,
    initiated_by: String,
}

// === impl ApprovalService ===

impl ApprovalService {
    /// The service over the configured policies, roles, store and optional signing key;
    /// requests are validated against `limits`.
    pub fn new(
        policies: Arc<Policies>,
        roles: Arc<RoleBindings>,
        store: AuditStore,
        signer: Option<Arc<SigningKey>>,
        limits: RequestLimits,
    ) -> Self {
        Self {
            policies,
            roles,
            store,
            signer,
            limits,
        }
    }

    /// `Approvals.Create`: a pending approval request (orchestrator role).
    pub async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        let attempted = Attempt {
            scope: request
                .environment
                .as_ref()
                .map(|env| EnvironmentKey::from(env).truncated())
                .unwrap_or_default(),
            initiated_by: echo::truncated(&request.initiated_by),
            ..Attempt::default()
        };
        let result = self.create_checked(caller, request).await;
        self.record_refusal(caller, "approval.create", attempted, result)
            .await
    }

    async fn create_checked(
        &self,
        caller: &Caller,
        request: pb::CreateApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        let new = validate_create(request, &self.limits)?;
        self.authorize(caller, &[Role::Orchestrator], &new.environment)?;
        let policy = self.policy(&new.environment)?;
        let max_ttl = policy.max_credential_ttl;
        let ttl = new.ttl.map_or(max_ttl, |ttl| ttl.min(max_ttl));
        let now = whole_seconds(SystemTime::now());
        let capabilities: BTreeSet<String> = policy
            .required_capabilities(new.action, &[])
            .into_iter()
            .chain(new.capabilities)
            .collect();
        let row = ApprovalRow {
            approval_id: format!("apr_{}", uuid::Uuid::now_v7().simple()),
            state: "pending".to_owned(),
            scope: new.environment.clone(),
            action: action_key(new.action).to_owned(),
            spec_hash: new.spec_hash,
            capabilities: capabilities.into_iter().collect(),
            requested_by: caller.identity.as_str().to_owned(),
            initiated_by: new.initiated_by,
            justification: new.justification,
            created_at: now,
            expires_at: now + ttl,
            approvals_required: policy.required_approvals,
            approvers: Vec::new(),
            credentials: Vec::new(),
            uses: 0,
            max_uses: policy.max_uses,
            decision_reason: String::new(),
            version: 0,
            updated_at: now,
        };
        let mut entry = self.entry(caller, &row, "approval.create", "approval_created");
        entry.detail = format!("justification: {}", row.justification);
        self.write(entry, ApprovalWrite::Insert(row.clone()))
            .await?;
        Ok(self.view(&row, SystemTime::now()))
    }

    /// `Approvals.Get` (orchestrator or reviewer role).
    pub async fn get(&self, caller: &Caller, approval_id: &str) -> Result<pb::Approval, Rejection> {
        let mut fields = FieldCheck::new(&self.limits);
        fields.id("approval_id", approval_id);
        fields.finish()?;
        let row = self.load(approval_id).await?;
        self.authorize(
            caller,
            &[Role::Orchestrator, Role::Reviewer],
            &row.scope.clone(),
        )?;
        Ok(self.view(&row, SystemTime::now()))
    }

    /// `Approvals.ListEligible` (orchestrator or reviewer role).
    pub async fn list_eligible(
        &self,
        caller: &Caller,
        request: pb::ListEligibleRequest,
    ) -> Result<pb::ListEligibleResponse, Rejection> {
        let mut fields = FieldCheck::new(&self.limits);
        fields.environment(&environment_key(request.environment.as_ref()));
        fields.digest("spec_hash", &request.spec_hash);
        fields.finish()?;
        let env = request
            .environment
            .as_ref()
            .map(EnvironmentKey::from)
            .unwrap_or_default();
        let action = action_from_pb(request.action)?;
        let spec_hash: SpecHash =
            request
                .spec_hash
                .parse()
                .map_err(|e: admission_contract::SpecError| {
                    Rejection::invalid_field("spec_hash", e.to_string())
                })?;
        self.authorize(caller, &[Role::Orchestrator, Role::Reviewer], &env)?;
        let policy = self.policy(&env)?;
        let required = policy.required_capabilities(action, &[]);
        let approvals = eligible(
            &self.store,
            policy,
            action,
            spec_hash.as_str(),
            &required,
            SystemTime::now(),
        )
        .await?;
        Ok(pb::ListEligibleResponse { approvals })
    }

    /// `Approvals.Decide` (reviewer role; not the requester nor the initiator).
    pub async fn decide(
        &self,
        caller: &Caller,
        request: pb::DecideApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        let attempted = Attempt::of(&request.approval_id);
        let result = match self.check_review(&request.approval_id, &request.reason) {
            Ok(()) => self.decide_checked(caller, request).await,
            Err(rejection) => Err(rejection),
        };
        self.record_refusal(caller, "approval.decide", attempted, result)
            .await
    }

    async fn decide_checked(
        &self,
        caller: &Caller,
        request: pb::DecideApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        let verdict = match pb::Verdict::try_from(request.verdict) {
            Ok(pb::Verdict::Approve) => pb::Verdict::Approve,
            Ok(pb::Verdict::Deny) if request.reason.trim().is_empty() => {
                return Err(Rejection::invalid_field("reason", "is required to deny"));
            }
            Ok(pb::Verdict::Deny) => pb::Verdict::Deny,
            Ok(pb::Verdict::Unspecified) | Err(_) => {
                return Err(Rejection::invalid_field(
                    "verdict",
                    "must be VERDICT_APPROVE or VERDICT_DENY",
                ));
            }
        };
        self.update_as_reviewer(caller, &request.approval_id, |row, now| {
            check_pending(&row, now)?;
            check_not_self(caller, &row)?;
            match verdict {
                pb::Verdict::Deny => Ok(self.deny(caller, row, &request.reason, now)),
                _ => self.approve(caller, row, &request.reason, now),
            }
        })
        .await
    }

    /// Applies `change` to the approval for a reviewer of its environment, with its audit entry
    /// in the same append; re-reads and retries when a concurrent writer moved the row first.
    async fn update_as_reviewer(
        &self,
        caller: &Caller,
        approval_id: &str,
        change: impl Fn(ApprovalRow, SystemTime) -> Result<(ApprovalRow, NewEntry), Rejection>,
    ) -> Result<pb::Approval, Rejection> {
        for _ in 0..WRITE_ATTEMPTS {
            let row = self.load(approval_id).await?;
            let env = row.scope.clone();
            self.authorize(caller, &[Role::Reviewer], &env)?;
            let now = SystemTime::now();
            let expected_version = row.version;
            let (updated, entry) = change(row, now)?;
            let write = ApprovalWrite::Update {
                row: updated.clone(),
                expected_version,
            };
            if self.try_write(entry, write).await? {
                return Ok(self.view(&updated, now));
            }
        }
        Err(busy())
    }

    fn deny(
        &self,
        caller: &Caller,
        mut row: ApprovalRow,
        reason: &str,
        now: SystemTime,
    ) -> (ApprovalRow, NewEntry) {
        row.state = "denied".to_owned();
        row.decision_reason = reason.to_owned();
        row.updated_at = now;
        let mut entry = self.entry(caller, &row, "approval.decide", "approval_denied");
        entry.approvers = vec![caller.identity.as_str().to_owned()];
        entry.detail = format!("denied: {reason}");
        (row, entry)
    }

    fn approve(
        &self,
        caller: &Caller,
        mut row: ApprovalRow,
        reason: &str,
        now: SystemTime,
    ) -> Result<(ApprovalRow, NewEntry), Rejection> {
        let reviewer = caller.identity.as_str();
        let Some(signer) = &self.signer else {
            return Err(Rejection::new(
                Reason::SigningNotConfigured,
                "this service has no [signing] key, so it cannot issue credentials; sign offline with admissionctl sign",
            )
            .with("approval_id", row.approval_id.clone()));
        };
        if row.approvers.iter().any(|a| a == reviewer) {
            return Err(Rejection::new(
                Reason::AlreadyApproved,
                format!(
                    "{reviewer} already approved {}; another reviewer must approve",
                    row.approval_id
                ),
            )
            .with("approval_id", row.approval_id.clone()));
        }
        let policy = self.policy(&row.scope.clone())?;
        let issued_at = whole_seconds(now);
        // The first approval starts the credential window; later ones (a quorum) end with it,
        // so the approval expires exactly when its first credential does.
        let expires_at = if row.approvers.is_empty() {
            let ttl = row
                .expires_at
                .duration_since(row.created_at)
                .unwrap_or_default();
            issued_at + ttl
        } else {
            row.expires_at
        };
        let claims = Claims {
            v: 1,
            kid: signer.kid().to_owned(),
            org_id: row.scope.org_id.clone(),
            project_id: row.scope.project_id.clone(),
            environment_id: row.scope.environment_id.clone(),
            environment_posture: policy.posture.as_str().to_owned(),
            spec_hash: row.spec_hash.clone(),
            capabilities: row.capabilities.clone(),
            issued_at,
            expires_at,
            issued_by: reviewer.to_owned(),
            approval_id: row.approval_id.clone(),
            config_bundle_digest: None,
        };
        let credential = signer.sign(&claims).map_err(|error| {
            tracing::error!(%error, approval_id = %row.approval_id, "could not sign a credential");
            Rejection::new(
                Reason::SigningNotConfigured,
                format!(
                    "the [signing] key could not sign a credential for {}: {error}",
                    row.approval_id
                ),
            )
        })?;
        row.credentials.push(credential);
        row.approvers.push(reviewer.to_owned());
        row.expires_at = expires_at;
        if quorum_reached(&row) {
            row.state = "approved".to_owned();
        }
        row.updated_at = now;
        let mut entry = self.entry(caller, &row, "approval.decide", "approval_approved");
        entry.approvers = vec![reviewer.to_owned()];
        entry.detail = format!(
            "approved by {reviewer} ({} of {} required){}",
            row.approvers.len(),
            row.approvals_required,
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        Ok((row, entry))
    }

    /// `Approvals.Revoke` (reviewer role).
    pub async fn revoke(
        &self,
        caller: &Caller,
        request: pb::RevokeApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        let attempted = Attempt::of(&request.approval_id);
        let result = match self.check_review(&request.approval_id, &request.reason) {
            Ok(()) => self.revoke_checked(caller, request).await,
            Err(rejection) => Err(rejection),
        };
        self.record_refusal(caller, "approval.revoke", attempted, result)
            .await
    }

    async fn revoke_checked(
        &self,
        caller: &Caller,
        request: pb::RevokeApprovalRequest,
    ) -> Result<pb::Approval, Rejection> {
        if request.reason.trim().is_empty() {
            return Err(Rejection::invalid_field("reason", "is required to revoke"));
        }
        self.update_as_reviewer(caller, &request.approval_id, |mut row, now| {
            if row.state == "denied" || row.state == "revoked" {
                return Err(Rejection::new(
                    Reason::ApprovalNotRevocable,
                    format!("approval {} is already {}", row.approval_id, row.state),
                )
                .with("approval_id", row.approval_id.clone()));
            }
            row.state = "revoked".to_owned();
            row.decision_reason = request.reason.clone();
            row.updated_at = now;
            let mut entry = self.entry(caller, &row, "approval.revoke", "approval_revoked");
            entry.detail = format!("revoked: {}", request.reason);
            Ok((row, entry))
        })
        .await
    }

    /// The bounds of a decide or revoke: an approval id and an optional reason.
    fn check_review(&self, approval_id: &str, reason: &str) -> Result<(), Rejection> {
        let mut fields = FieldCheck::new(&self.limits);
        fields.id("approval_id", approval_id);
        fields.optional_text("reason", reason);
        fields.finish()
    }

    /// The approval as reviewers see it: with its environment's posture.
    fn view(&self, row: &ApprovalRow, now: SystemTime) -> pb::Approval {
        let posture = self
            .policies
            .get(
                &row.scope.org_id,
                &row.scope.project_id,
                &row.scope.environment_id,
            )
            .map(|policy| policy.posture);
        to_pb(row, now, posture)
    }

    /// Records a refused create, decide or revoke (a self-approval attempt is worth an
    /// auditor's eyes) and gives the rejection its `decision_id`, as admissions have.
    async fn record_refusal(
        &self,
        caller: &Caller,
        action: &str,
        mut attempted: Attempt,
        result: Result<pb::Approval, Rejection>,
    ) -> Result<pb::Approval, Rejection> {
        let rejection = match result {
            Err(rejection) if rejection.reason != Reason::AuditUnavailable => rejection,
            other => return other,
        };
        if let Ok(Some(row)) = self.store.approval(&attempted.approval_id).await {
            attempted.scope = row.scope;
            attempted.spec_hash = row.spec_hash;
            attempted.initiated_by = row.initiated_by;
        }
        let entry = NewEntry {
            entry_id: new_decision_id(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            initiated_by: attempted.initiated_by,
            action: action.to_owned(),
            scope: attempted.scope,
            spec_hash: attempted.spec_hash,
            approval_ids: Some(attempted.approval_id)
                .filter(|id| !id.is_empty())
                .into_iter()
                .collect(),
            outcome: "rejected".to_owned(),
            reason: rejection.reason.as_str().to_owned(),
            grpc_code: rejection.reason.code_name().to_owned(),
            detail: rejection.message.clone(),
            ..NewEntry::default()
        };
        let decision_id = entry.entry_id.clone();
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: None,
        };
        match self.store.append(append).await {
            Ok(_) => Err(rejection.with("decision_id", decision_id)),
            Err(_) => Err(unavailable()),
        }
    }

    async fn load(&self, approval_id: &str) -> Result<ApprovalRow, Rejection> {
        if approval_id.trim().is_empty() {
            return Err(Rejection::invalid_field("approval_id", "is required"));
        }
        self.store
            .approval(approval_id)
            .await
            .map_err(|_| unavailable())?
            .ok_or_else(|| {
                Rejection::new(
                    Reason::ApprovalNotFound,
                    format!("approval {approval_id} does not exist"),
                )
                .with("approval_id", approval_id.to_owned())
            })
    }

    fn authorize(
        &self,
        caller: &Caller,
        roles: &[Role],
        env: &EnvironmentKey,
    ) -> Result<(), Rejection> {
        self.roles
            .authorize_any(&caller.identity, roles, Some(env.parts()))
    }

    fn policy(&self, env: &EnvironmentKey) -> Result<&EnvironmentPolicy, Rejection> {
        env.policy(&self.policies)
    }

    fn entry(&self, caller: &Caller, row: &ApprovalRow, action: &str, outcome: &str) -> NewEntry {
        NewEntry {
            entry_id: new_decision_id(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            initiated_by: row.initiated_by.clone(),
            action: action.to_owned(),
            scope: row.scope.clone(),
            spec_hash: row.spec_hash.clone(),
            capabilities: row.capabilities.clone(),
            approval_ids: vec![row.approval_id.clone()],
            approvers: row.approvers.clone(),
            outcome: outcome.to_owned(),
            grpc_code: "OK".to_owned(),
            ..NewEntry::default()
        }
    }

    async fn write(&self, entry: NewEntry, write: ApprovalWrite) -> Result<(), Rejection> {
        if self.try_write(entry, write).await? {
            Ok(())
        } else {
            Err(busy())
        }
    }

    /// Appends the entry with the approval write; `false` when another writer changed the row.
    async fn try_write(&self, entry: NewEntry, write: ApprovalWrite) -> Result<bool, Rejection> {
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: Some(write),
        };
        match self.store.append(append).await {
            Ok(Appended::ApprovalVersionConflict) => Ok(false),
            Ok(_) => Ok(true),
            Err(_) => Err(unavailable()),
        }
    }
}

/// Approvals that would admit `action` on `spec_hash` in `env` now, newest first: approved,
/// unexpired, unrevoked, with uses left and capabilities covering `required`.
pub async fn eligible(
    store: &AuditStore,
    policy: &EnvironmentPolicy,
    action: ActionKind,
    spec_hash: &str,
    required: &[String],
    now: SystemTime,
) -> Result<Vec<pb::Approval>, Rejection> {
    let scope = Scope {
        org_id: policy.org_id.clone(),
        project_id: policy.project_id.clone(),
        environment_id: policy.environment_id.clone(),
    };
    let rows = store
        .approvals_for(&scope, action_key(action), spec_hash)
        .await
        .map_err(|_| unavailable())?;
    Ok(rows
        .iter()
        .filter(|row| is_eligible(row, required, now))
        .map(|row| to_pb(row, now, Some(policy.posture)))
        .collect())
}

fn is_eligible(row: &ApprovalRow, required: &[String], now: SystemTime) -> bool {
    row.state == "approved"
        && row.expires_at > now
        && row.uses < row.max_uses
        && !row.credentials.is_empty()
        && required.iter().all(|c| row.capabilities.contains(c))
}

fn check_pending(row: &ApprovalRow, now: SystemTime) -> Result<(), Rejection> {
    let state = derived_state(row, now);
    if state == pb::ApprovalState::Pending {
        return Ok(());
    }
    let name = state
        .as_str_name()
        .trim_start_matches("APPROVAL_STATE_")
        .to_lowercase();
    Err(Rejection::new(
        Reason::ApprovalNotPending,
        format!(
            "approval {} is {name}, only pending approvals can be decided",
            row.approval_id
        ),
    )
    .with("approval_id", row.approval_id.clone()))
}

fn check_not_self(caller: &Caller, row: &ApprovalRow) -> Result<(), Rejection> {
    let reviewer = caller.identity.as_str();
    if reviewer != row.requested_by && reviewer != row.initiated_by {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::SelfApproval,
        format!(
            "{reviewer} requested approval {} and cannot review it; ask another reviewer",
            row.approval_id
        ),
    )
    .with("approval_id", row.approval_id.clone()))
}

fn validate_create(
    request: pb::CreateApprovalRequest,
    limits: &RequestLimits,
) -> Result<NewApproval, Rejection> {
    let environment = request
        .environment
        .as_ref()
        .map(EnvironmentKey::from)
        .unwrap_or_default();
    let mut fields = FieldCheck::new(limits);
    fields.environment(&environment_key(request.environment.as_ref()));
    fields.text("initiated_by", &request.initiated_by);
    fields.text("justification", &request.justification);
    fields.capabilities("capabilities", &request.capabilities);
    match &request.spec {
        Some(pb::create_approval_request::Spec::SpecHash(hash)) => {
            fields.digest("spec_hash", hash);
        }
        Some(pb::create_approval_request::Spec::SpecKv(spec_kv))
            if spec_kv.len() > limits.spec_kv_max_bytes =>
        {
            fields.violation(
                "spec_kv",
                &format!("must be at most {} bytes", limits.spec_kv_max_bytes),
            );
        }
        Some(pb::create_approval_request::Spec::SpecKv(_)) | None => {}
    }
    fields.finish()?;
    let action = action_from_pb(request.action)?;
    let spec_hash = match request.spec {
        Some(pb::create_approval_request::Spec::SpecKv(bytes)) => SpecHash::of_spec(&bytes)
            .map_err(|e| Rejection::new(Reason::SpecMalformed, e.to_string()))?,
        Some(pb::create_approval_request::Spec::SpecHash(hash)) => {
            hash.parse().map_err(|e: admission_contract::SpecError| {
                Rejection::invalid_field("spec_hash", e.to_string())
            })?
        }
        None => {
            return Err(Rejection::invalid_field(
                "spec",
                "spec_kv or spec_hash is required",
            ));
        }
    };
    let ttl = match request.ttl {
        None => None,
        Some(ttl) => Some(
            Duration::try_from(ttl)
                .ok()
                .filter(|d| d.as_secs() > 0)
                .ok_or_else(|| Rejection::invalid_field("ttl", "must be a positive duration"))?,
        ),
    };
    Ok(NewApproval {
        environment,
        action,
        spec_hash: spec_hash.to_string(),
        capabilities: request.capabilities,
        ttl,
        justification: request.justification,
        initiated_by: request.initiated_by,
    })
}

/// The approval as the wire shows it, with `expired` derived from the clock.
pub fn to_pb(row: &ApprovalRow, now: SystemTime, posture: Option<Posture>) -> pb::Approval {
    pb::Approval {
        approval_id: row.approval_id.clone(),
        state: derived_state(row, now) as i32,
        environment: Some(pb::EnvironmentRef {
            org_id: row.scope.org_id.clone(),
            project_id: row.scope.project_id.clone(),
            environment_id: row.scope.environment_id.clone(),
        }),
        action: action_from_key(&row.action).map_or(pb::Action::Unspecified, pb_action) as i32,
        spec_hash: row.spec_hash.clone(),
        capabilities: row.capabilities.clone(),
        requested_by: row.requested_by.clone(),
        initiated_by: row.initiated_by.clone(),
        justification: row.justification.clone(),
        created_at: Some(row.created_at.into()),
        expires_at: Some(row.expires_at.into()),
        approvals_required: row.approvals_required,
        approvers: row.approvers.clone(),
        credentials: if quorum_reached(row) {
            row.credentials.clone()
        } else {
            Vec::new()
        },
        uses: row.uses,
        max_uses: row.max_uses,
        decision_reason: row.decision_reason.clone(),
        posture: posture.map_or(pb::Posture::Unspecified, pb_posture) as i32,
    }
}

/// Whether enough distinct reviewers approved. Until then the credentials already signed stay
/// inside the service: handed out one by one, credentials of different pending or denied
/// approvals could be combined into a quorum that no single approval reached (SPEC §7 row 25).
fn quorum_reached(row: &ApprovalRow) -> bool {
    row.approvers.len() >= row.approvals_required as usize
}

fn derived_state(row: &ApprovalRow, now: SystemTime) -> pb::ApprovalState {
    match row.state.as_str() {
        "denied" => pb::ApprovalState::Denied,
        "revoked" => pb::ApprovalState::Revoked,
        _ if row.expires_at <= now => pb::ApprovalState::Expired,
        "approved" => pb::ApprovalState::Approved,
        _ => pb::ApprovalState::Pending,
    }
}

fn action_from_pb(action: i32) -> Result<ActionKind, Rejection> {
    match pb::Action::try_from(action) {
        Ok(pb::Action::Deploy) => Ok(ActionKind::Deploy),
        Ok(pb::Action::ReplayDryRun) => Ok(ActionKind::ReplayDryRun),
        Ok(pb::Action::ReplayExecute) => Ok(ActionKind::ReplayExecute),
        Ok(pb::Action::Unspecified) | Err(_) => Err(Rejection::invalid_field(
            "action",
            "must be ACTION_DEPLOY, ACTION_REPLAY_DRY_RUN or ACTION_REPLAY_EXECUTE",
        )),
    }
}

/// The stored form of an action.
pub fn action_key(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Deploy => "deploy",
        ActionKind::ReplayDryRun => "replay_dry_run",
        ActionKind::ReplayExecute => "replay_execute",
    }
}

fn action_from_key(key: &str) -> Option<ActionKind> {
    match key {
        "deploy" => Some(ActionKind::Deploy),
        "replay_dry_run" => Some(ActionKind::ReplayDryRun),
        "replay_execute" => Some(ActionKind::ReplayExecute),
        _ => None,
    }
}

/// Credentials carry whole seconds (SPEC §3), so times that end up in them are truncated.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

fn unavailable() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the change could not be recorded in the audit trail in time; nothing was changed, retry later",
    )
}

fn busy() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the approval kept changing under concurrent reviews; retry",
    )
}
