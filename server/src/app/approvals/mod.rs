//! The approval lifecycle (SPEC §3 Approvals): request, review, sign, select, revoke.
//!
//! The states and their transitions are [`crate::domain::approval`]'s. Every state change is written together with its audit entry in one
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
    app::failure::Failure,
    app::recording::record_rejection,
    app::settings::{Settings, SharedSettings},
    app::wire::environment_key,
    domain::approval::{ApprovalState, ApprovalView},
    domain::decision::new_decision_id,
    domain::outcome::Outcome,
    domain::policy::{ActionKind, EnvironmentPolicy, Posture},
    domain::rejection::Rejection,
    domain::request::{EnvironmentKey, FieldCheck, RequestLimits},
    identity::roles::Role,
    identity::tls::Caller,
    store::{Append, Appended, ApprovalRow, ApprovalWrite, AuditStore, NewEntry, Scope},
};

mod review;
mod rows;

use self::rows::*;
pub use self::rows::{eligible, view_of};

/// How often a decide or revoke re-reads the approval after losing a race to another writer.
const WRITE_ATTEMPTS: usize = 5;

/// The Approvals service's domain.
#[derive(Clone)]
pub struct ApprovalService {
    live: SharedSettings,
    /// The settings one call reads throughout; see [`ApprovalService::pinned`].
    settings: Arc<Settings>,
    store: AuditStore,
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
    /// The service over the shared settings (policies, roles, signing key; each call reads
    /// them once) and the store; requests are validated against `limits`.
    pub fn new(settings: SharedSettings, store: AuditStore, limits: RequestLimits) -> Self {
        Self {
            settings: settings.current(),
            live: settings,
            store,
            limits,
        }
    }

    /// This service over the settings in force now, for the whole of one call: a reload
    /// meanwhile never makes one call check roles under one config and policy under another.
    fn pinned(&self) -> Self {
        Self {
            live: self.live.clone(),
            settings: self.live.current(),
            store: self.store.clone(),
            limits: self.limits,
        }
    }

    /// `Approvals.Create`: a pending approval request (orchestrator role).
    pub async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
        let this = self.pinned();
        let attempted = Attempt {
            scope: request
                .environment
                .as_ref()
                .map(|env| EnvironmentKey::from(env).truncated())
                .unwrap_or_default(),
            initiated_by: echo::truncated(&request.initiated_by),
            ..Attempt::default()
        };
        let result = this.create_checked(caller, request).await;
        this.record_refusal(caller, "approval.create", attempted, result)
            .await
    }

    async fn create_checked(
        &self,
        caller: &Caller,
        request: pb::CreateApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
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
            state: ApprovalState::Pending,
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
        let mut entry = self.entry(caller, &row, "approval.create", Outcome::ApprovalCreated);
        entry.detail = format!("justification: {}", row.justification);
        self.write(entry, ApprovalWrite::Insert(row.clone()))
            .await?;
        Ok(self.view(&row, SystemTime::now()))
    }

    /// `Approvals.Get` (orchestrator or reviewer role).
    pub async fn get(&self, caller: &Caller, approval_id: &str) -> Result<ApprovalView, Failure> {
        let this = self.pinned();
        let mut fields = FieldCheck::new(&this.limits);
        fields.id("approval_id", approval_id);
        fields.finish()?;
        let row = this.load(approval_id).await?;
        this.authorize(
            caller,
            &[Role::Orchestrator, Role::Reviewer],
            &row.scope.clone(),
        )?;
        Ok(this.view(&row, SystemTime::now()))
    }

    /// `Approvals.ListEligible` (orchestrator or reviewer role).
    pub async fn list_eligible(
        &self,
        caller: &Caller,
        request: pb::ListEligibleRequest,
    ) -> Result<Vec<ApprovalView>, Failure> {
        let this = self.pinned();
        let mut fields = FieldCheck::new(&this.limits);
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
        this.authorize(caller, &[Role::Orchestrator, Role::Reviewer], &env)?;
        let policy = this.policy(&env)?;
        let required = policy.required_capabilities(action, &[]);
        let approvals = eligible(
            &this.store,
            policy,
            action,
            spec_hash.as_str(),
            &required,
            SystemTime::now(),
            unavailable,
        )
        .await?;
        Ok(approvals)
    }

    /// The bounds of a decide or revoke: an approval id and an optional reason.
    fn check_review(&self, approval_id: &str, reason: &str) -> Result<(), Rejection> {
        let mut fields = FieldCheck::new(&self.limits);
        fields.id("approval_id", approval_id);
        fields.optional_text("reason", reason);
        fields.finish()
    }

    /// The approval as reviewers see it: with its environment's posture.
    fn view(&self, row: &ApprovalRow, now: SystemTime) -> ApprovalView {
        let posture = self
            .settings
            .policies
            .get(
                &row.scope.org_id,
                &row.scope.project_id,
                &row.scope.environment_id,
            )
            .map(|policy| policy.posture);
        view_of(row, now, posture)
    }

    /// Records a refused create, decide or revoke (a self-approval attempt is worth an
    /// auditor's eyes) and gives the rejection its `decision_id`, as admissions have.
    async fn record_refusal(
        &self,
        caller: &Caller,
        action: &str,
        mut attempted: Attempt,
        result: Result<ApprovalView, Failure>,
    ) -> Result<ApprovalView, Failure> {
        let rejection = match result {
            Err(Failure::Rejected(rejection)) if rejection.reason != Reason::AuditUnavailable => {
                rejection
            }
            other => return other,
        };
        match self.store.approval(&attempted.approval_id).await {
            Ok(Some(row)) => {
                attempted.scope = row.scope;
                attempted.spec_hash = row.spec_hash;
                attempted.initiated_by = row.initiated_by;
            }
            Ok(None) => {}
            Err(error) => return Err(Failure::from_store(error, unavailable)),
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
            ..NewEntry::default()
        };
        Err(record_rejection(&self.store, entry, rejection, unavailable).await)
    }

    async fn load(&self, approval_id: &str) -> Result<ApprovalRow, Failure> {
        if approval_id.trim().is_empty() {
            return Err(Rejection::invalid_field("approval_id", "is required").into());
        }
        match self.store.approval(approval_id).await {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(Rejection::new(
                Reason::ApprovalNotFound,
                format!("approval {approval_id} does not exist"),
            )
            .with("approval_id", approval_id.to_owned())
            .into()),
            Err(error) => Err(Failure::from_store(error, unavailable)),
        }
    }

    fn authorize(
        &self,
        caller: &Caller,
        roles: &[Role],
        env: &EnvironmentKey,
    ) -> Result<(), Rejection> {
        self.settings
            .roles
            .authorize_any(&caller.identity, roles, Some(env.parts()))
    }

    fn policy(&self, env: &EnvironmentKey) -> Result<&EnvironmentPolicy, Rejection> {
        env.policy(&self.settings.policies)
    }

    fn entry(
        &self,
        caller: &Caller,
        row: &ApprovalRow,
        action: &str,
        outcome: Outcome,
    ) -> NewEntry {
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
            outcome: outcome.as_str().to_owned(),
            grpc_code: "OK".to_owned(),
            ..NewEntry::default()
        }
    }

    async fn write(&self, entry: NewEntry, write: ApprovalWrite) -> Result<(), Failure> {
        if self.try_write(entry, write).await? {
            Ok(())
        } else {
            Err(busy().into())
        }
    }

    /// Appends the entry with the approval write; `false` when another writer changed the row.
    async fn try_write(&self, entry: NewEntry, write: ApprovalWrite) -> Result<bool, Failure> {
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: Some(write),
        };
        match self.store.append(append).await {
            Ok(Appended::Committed(_)) => Ok(true),
            Ok(Appended::ApprovalVersionConflict) => Ok(false),
            // Approval changes claim no request_id and consume nothing.
            Ok(Appended::Duplicate { .. } | Appended::RequestIdConflict { .. }) => Err(
                Failure::impossible("an approval change without a request_id matched a request"),
            ),
            Ok(Appended::Refused { .. }) => {
                Err(Failure::impossible("an approval change refused a use"))
            }
            Err(error) => Err(Failure::from_store(error, unavailable)),
        }
    }
}
