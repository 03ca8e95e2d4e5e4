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

mod review;
mod rows;

use self::rows::*;
pub use self::rows::{eligible, to_pb};

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
            action: new.action.key().to_owned(),
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
            Err(error) => Err(append_refused(&error)),
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
            Err(error) => Err(append_refused(&error)),
        }
    }
}
