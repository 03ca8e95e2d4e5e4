//! Admission decisions (SPEC §7): the whole order from request to durable audit entry.
//!
//! [`request`] validates rows 1–2, [`Engine`] checks rows 3–5 and reads what the rules need,
//! [`rules`] decides rows 6–25 without I/O, and the audit store appends the entry and consumes the
//! approval uses in one transaction (rows 23–24 again, atomically, and row 26). Row 27 is the
//! in-flight limit in front of all of it.
//!
//! Retries. An admitted request retried by the same caller with the same content gets the
//! original admission and records nothing. Row 5 answers a retry that arrives after the
//! admission is durable; a retry racing it is answered by the store, which looks the request
//! up inside its write transaction before recording anything for it, admit or rejection. So a
//! retry that read the approval state the original left behind (its use consumed) never reports
//! APPROVAL_CONSUMED for a request that was admitted. A rejection is not replayed: every retry
//! of a rejected request is decided again, recorded under its own decision_id, and answered by
//! the state at that moment, which is the same rejection while nothing has changed.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use admission_contract::{
    Reason,
    credential::{Decoded, VerifyError},
    echo,
    echo::truncated,
    pb,
};
use prost::Message;
use tokio::sync::Semaphore;

use crate::domain::{
    request::{AdmissionRequest, Invalid, RequestLimits},
    rules::{self, ApprovalUseState, RuleInput, UsedApproval, Verdict},
};
use crate::{
    app::wire::{pb_action, pb_posture},
    domain::credential::KeyRing,
    domain::decision::new_decision_id,
    domain::policy::{ActionKind, Enforcement, EnvironmentPolicy, Policies, PolicyDecision},
    domain::rejection::Rejection,
    identity::roles::{Role, RoleBindings},
    identity::tls::Caller,
    store::{
        Append, Appended, ApprovalUse, AuditStore, IdempotencyKey, NewEntry, Receipt,
        RefusalRecord, StoreError, UseRefusal,
    },
};

/// The gRPC code name recorded for decisions answered OK.
const GRPC_OK: &str = "OK";

/// Decides admissions and previews.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    policies: Arc<Policies>,
    roles: Arc<RoleBindings>,
    keys: Arc<KeyRing>,
    store: AuditStore,
    limits: RequestLimits,
    in_flight: Semaphore,
}

/// How an admitted decision is recorded.
enum Admitted {
    Normal,
    BreakGlass(String),
    Shadow(Rejection),
}

// === impl Engine ===

impl Engine {
    /// An engine over the given configuration and store.
    pub fn new(
        policies: Arc<Policies>,
        roles: Arc<RoleBindings>,
        keys: Arc<KeyRing>,
        store: AuditStore,
        limits: RequestLimits,
        max_in_flight: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                policies,
                roles,
                keys,
                store,
                limits,
                in_flight: Semaphore::new(max_in_flight),
            }),
        }
    }

    /// The request limits, for validating wire requests.
    pub fn limits(&self) -> &RequestLimits {
        &self.inner.limits
    }

    /// The audit store.
    pub fn store(&self) -> &AuditStore {
        &self.inner.store
    }

    /// Decides an admission: `Ok` only once its audit entry is durable.
    pub async fn admit(
        &self,
        caller: &Caller,
        request: Result<AdmissionRequest, Box<Invalid>>,
    ) -> Result<pb::Admission, Rejection> {
        // Row 27.
        let Ok(_permit) = self.inner.in_flight.try_acquire() else {
            return Err(overloaded());
        };
        let decision_id = new_decision_id();
        let request = match request {
            Ok(request) => request,
            Err(invalid) => {
                let action = action_name(invalid.action);
                return Err(self
                    .record_invalid(caller, &decision_id, action, invalid)
                    .await);
            }
        };
        match self.admit_checked(caller, &decision_id, &request).await {
            Ok(admission) => Ok(admission),
            Err(Outcome::Answer(admission)) => Ok(*admission),
            Err(Outcome::Reject(rejection)) => {
                self.record_rejection(caller, &decision_id, &request, rejection)
                    .await
            }
            Err(Outcome::Unavailable) => Err(audit_unavailable()),
        }
    }

    async fn admit_checked(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
    ) -> Result<pb::Admission, Outcome> {
        // Rows 3–4.
        let policy = self.authorize(caller, request)?;
        // Row 5.
        self.check_request_id(caller, request).await?;
        let credentials = if rules::needs_credentials(request, policy) {
            rules::decode_credentials(request, &self.inner.limits)
        } else {
            Vec::new()
        };
        let approvals = self.approval_states(&credentials).await?;
        let keys = self.inner.keys.current();
        let input = RuleInput {
            request,
            policy,
            keys: &keys,
            caller: caller.identity.as_str(),
            credentials: &credentials,
            approvals: &approvals,
            now: SystemTime::now(),
        };
        // Rows 6–25; shadow mode admits what they would reject.
        let (used, admitted) = match rules::evaluate(&input) {
            Ok(Verdict::Allowed) => (Vec::new(), Admitted::Normal),
            Ok(Verdict::Approved(used)) => (used, Admitted::Normal),
            Ok(Verdict::BreakGlass) => (
                Vec::new(),
                Admitted::BreakGlass(request.break_glass.clone().unwrap_or_default()),
            ),
            Err(rejection) if policy.enforcement == Enforcement::AuditOnly => {
                (Vec::new(), Admitted::Shadow(rejection))
            }
            Err(rejection) => return Err(Outcome::Reject(rejection)),
        };
        self.record_admission(caller, decision_id, request, policy, used, admitted)
            .await
    }

    /// Rows 3–4: the caller's roles, then the environment.
    fn authorize(
        &self,
        caller: &Caller,
        request: &AdmissionRequest,
    ) -> Result<&EnvironmentPolicy, Outcome> {
        let env = &request.environment;
        let scope = Some(env.parts());
        self.inner
            .roles
            .authorize(&caller.identity, Role::Orchestrator, scope)
            .map_err(Outcome::Reject)?;
        if request.break_glass.is_some() {
            self.inner
                .roles
                .authorize(&caller.identity, Role::BreakGlass, scope)
                .map_err(Outcome::Reject)?;
        }
        env.policy(&self.inner.policies).map_err(Outcome::Reject)
    }

    /// Row 5: a retry with the same content returns the original admission; different content
    /// under the same request_id is a conflict.
    async fn check_request_id(
        &self,
        caller: &Caller,
        request: &AdmissionRequest,
    ) -> Result<(), Outcome> {
        let stored = self
            .inner
            .store
            .idempotency(caller.identity.as_str(), &request.request_id)
            .await
            .map_err(Outcome::from)?;
        match stored {
            None => Ok(()),
            Some((fingerprint, _)) if fingerprint != request.fingerprint => {
                Err(Outcome::Reject(request_id_conflict(&request.request_id)))
            }
            Some((_, Some(admission))) => {
                Err(Outcome::Answer(Box::new(decode_admission(&admission)?)))
            }
            Some((_, None)) => Ok(()),
        }
    }

    /// The stored use state of every approval the credentials name (for rows 23–24).
    async fn approval_states(
        &self,
        credentials: &[Result<Decoded, VerifyError>],
    ) -> Result<HashMap<String, ApprovalUseState>, Outcome> {
        let mut states = HashMap::new();
        for decoded in credentials.iter().flatten() {
            let id = &decoded.claims.approval_id;
            if states.contains_key(id) {
                continue;
            }
            if let Some(row) = self.inner.store.approval(id).await.map_err(Outcome::from)? {
                states.insert(
                    id.clone(),
                    ApprovalUseState {
                        revoked: row.state == "revoked",
                        uses: row.uses,
                        max_uses: row.max_uses,
                        approved: row.state == "approved",
                    },
                );
            }
        }
        Ok(states)
    }

    /// Appends the admit entry, consuming one use of each approval, and answers.
    async fn record_admission(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
        policy: &EnvironmentPolicy,
        used: Vec<UsedApproval>,
        admitted: Admitted,
    ) -> Result<pb::Admission, Outcome> {
        let decided_at = SystemTime::now();
        let (outcome, reason, detail, shadow_reason, break_glass) = match &admitted {
            Admitted::Normal => (
                "admitted",
                String::new(),
                String::new(),
                String::new(),
                false,
            ),
            Admitted::BreakGlass(justification) => (
                "admitted_break_glass",
                String::new(),
                format!("break-glass: {justification}"),
                String::new(),
                true,
            ),
            Admitted::Shadow(would_be) => (
                "admitted_shadow",
                would_be.reason.as_str().to_owned(),
                would_be.message.clone(),
                would_be.reason.as_str().to_owned(),
                false,
            ),
        };
        let mut entry = request_entry(
            caller,
            decision_id,
            request,
            policy.required_capabilities(request.action, &request.requested_capabilities),
        );
        entry.approval_ids = used.iter().map(|u| u.approval_id.clone()).collect();
        entry.approvers = used.iter().flat_map(|u| u.issuers.clone()).collect();
        entry.outcome = outcome.to_owned();
        entry.reason = reason;
        entry.grpc_code = GRPC_OK.to_owned();
        entry.detail = detail;
        let admission = pb::Admission {
            decision_id: decision_id.to_owned(),
            action: pb_action(request.action) as i32,
            spec_hash: request.spec_hash.to_string(),
            approval_ids: entry.approval_ids.clone(),
            decided_at: Some(decided_at.into()),
            audit_entry_hash: String::new(),
            shadow_reason,
            break_glass,
        };
        let scope = request.environment.clone();
        let consume = used
            .iter()
            .map(|u| ApprovalUse {
                approval_id: u.approval_id.clone(),
                max_uses: policy.max_uses,
                scope: scope.clone(),
                spec_hash: request.spec_hash.to_string(),
                capabilities: u.capabilities.clone(),
                expires_at: u.expires_at,
                approvers: u.issuers.clone(),
            })
            .collect();
        let refused_entry = entry.clone();
        let shadow = policy.enforcement == Enforcement::AuditOnly;
        let shadow_admission = shadow.then(|| admission.clone());
        let append = Append {
            entry,
            consume,
            on_refused: Some(Box::new(move |refusal: &UseRefusal| {
                refused(refused_entry, refusal, shadow_admission)
            })),
            idempotency: Some(IdempotencyKey {
                caller: caller.identity.as_str().to_owned(),
                request_id: request.request_id.clone(),
                fingerprint: request.fingerprint.clone(),
            }),
            admission: Some(admission.encode_to_vec()),
            approval_write: None,
        };
        match self.inner.store.append(append).await? {
            Appended::Committed(receipt) => Ok(with_receipt(admission, &receipt)),
            Appended::Refused { refusal, receipt } if shadow => {
                Ok(with_receipt(shadow_refused(admission, &refusal), &receipt))
            }
            Appended::Refused { refusal, receipt } => Err(Outcome::Reject(
                refusal_rejection(&refusal).with("decision_id", receipt.entry_id),
            )),
            Appended::Duplicate { admission } => Ok(decode_admission(&admission)?),
            Appended::RequestIdConflict { .. } => {
                Err(Outcome::Reject(request_id_conflict(&request.request_id)))
            }
            Appended::ApprovalVersionConflict => Err(Outcome::Unavailable),
        }
    }

    /// Records a rejection and returns it with its `decision_id`; AUDIT_UNAVAILABLE if the
    /// entry could not be made durable. A rejection decided after row 5 is recorded only if the
    /// store, inside its write transaction, holds no admission of this very request: if it
    /// does (an identical retry raced the original and read the state the original left), the
    /// answer is that original admission and nothing is recorded.
    async fn record_rejection(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
        rejection: Rejection,
    ) -> Result<pb::Admission, Rejection> {
        if rejection.metadata.contains_key("decision_id") {
            // Already recorded by the store (a use refused inside the append transaction).
            return Err(rejection);
        }
        let entry = rejection_entry(caller, decision_id, request, &rejection);
        if !passed_row_five(rejection.reason) {
            return Err(self.append_unkeyed(entry, rejection).await);
        }
        let key = IdempotencyKey {
            caller: caller.identity.as_str().to_owned(),
            request_id: request.request_id.clone(),
            fingerprint: request.fingerprint.clone(),
        };
        self.append_keyed(entry, key, rejection).await
    }

    /// Records a request to `action` that failed rows 1–2.
    async fn record_invalid(
        &self,
        caller: &Caller,
        decision_id: &str,
        action: &str,
        invalid: Box<Invalid>,
    ) -> Rejection {
        let mut entry = NewEntry {
            entry_id: decision_id.to_owned(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            initiated_by: invalid.initiated_by.clone(),
            action: action.to_owned(),
            scope: invalid.environment.clone(),
            request_id: invalid.request_id.clone(),
            ..NewEntry::default()
        };
        set_rejection(&mut entry, &invalid.rejection);
        self.append_unkeyed(entry, invalid.rejection).await
    }

    /// Records a request whose body could not be read as its message (row 1) and returns the
    /// rejection with its `decision_id`; `action` names the RPC in the audit entry.
    pub async fn record_unreadable(
        &self,
        caller: &Caller,
        action: &str,
        rejection: Rejection,
    ) -> Rejection {
        // Row 27, as for every other decision.
        let Ok(_permit) = self.inner.in_flight.try_acquire() else {
            return overloaded();
        };
        let mut entry = NewEntry {
            entry_id: new_decision_id(),
            actor: caller.identity.as_str().to_owned(),
            actor_cert_sha256: caller.cert_sha256.clone(),
            action: action.to_owned(),
            ..NewEntry::default()
        };
        set_rejection(&mut entry, &rejection);
        self.append_unkeyed(entry, rejection).await
    }

    /// Records a rejection that claims no request_id.
    async fn append_unkeyed(&self, entry: NewEntry, rejection: Rejection) -> Rejection {
        let decision_id = entry.entry_id.clone();
        match self.inner.store.append(rejection_append(entry, None)).await {
            Ok(Appended::Committed(_)) => rejection.with("decision_id", decision_id),
            // Nothing else records this entry; answer only what is durable.
            Ok(_) | Err(_) => audit_unavailable(),
        }
    }

    /// Records a rejection under the request's idempotency key, unless the store already
    /// holds this request: admitted (answer that admission) or taken by other content (answer
    /// and record REQUEST_ID_CONFLICT).
    async fn append_keyed(
        &self,
        entry: NewEntry,
        key: IdempotencyKey,
        rejection: Rejection,
    ) -> Result<pb::Admission, Rejection> {
        let decision_id = entry.entry_id.clone();
        let conflict_entry = entry.clone();
        match self
            .inner
            .store
            .append(rejection_append(entry, Some(key)))
            .await
        {
            Ok(Appended::Committed(_)) => Err(rejection.with("decision_id", decision_id)),
            Ok(Appended::Duplicate { admission }) => {
                tracing::debug!(
                    reason = rejection.reason.as_str(),
                    "request was admitted meanwhile; answering the original admission"
                );
                decode_admission(&admission).map_err(|_| audit_unavailable())
            }
            Ok(Appended::RequestIdConflict { .. }) => {
                // Another request took the request_id after row 5 was checked, so row 5 is the
                // answer now; nothing was written, so record that answer instead.
                let mut entry = conflict_entry;
                let conflict = request_id_conflict(&entry.request_id);
                set_rejection(&mut entry, &conflict);
                Err(self.append_unkeyed(entry, conflict).await)
            }
            // A rejection consumes nothing and writes no approval, so neither can happen;
            // nothing was recorded either way.
            Ok(Appended::Refused { .. } | Appended::ApprovalVersionConflict) | Err(_) => {
                Err(audit_unavailable())
            }
        }
    }

    /// Evaluates a request without credentials and without consuming anything; audited.
    pub async fn preview(
        &self,
        caller: &Caller,
        request: Result<AdmissionRequest, Box<Invalid>>,
    ) -> Result<pb::Preview, Rejection> {
        let Ok(_permit) = self.inner.in_flight.try_acquire() else {
            return Err(overloaded());
        };
        let decision_id = new_decision_id();
        let request = match request {
            Ok(request) => request,
            Err(invalid) => {
                let action = preview_action_name(invalid.action);
                return Err(self
                    .record_invalid(caller, &decision_id, action, invalid)
                    .await);
            }
        };
        let policy = match self.authorize(caller, &request) {
            Ok(policy) => policy,
            Err(Outcome::Reject(rejection)) => {
                // Rows 3–4 claim no request_id: a preview never answers with an admission.
                let entry = rejection_entry(caller, &decision_id, &request, &rejection);
                return Err(self.append_unkeyed(entry, rejection).await);
            }
            Err(_) => return Err(audit_unavailable()),
        };
        let decision = rules::policy_decision(&request, policy);
        let required =
            policy.required_capabilities(request.action, &request.requested_capabilities);
        let needs_approval = decision == PolicyDecision::RequireApproval;
        let eligible = if needs_approval {
            crate::app::approvals::eligible(
                &self.inner.store,
                policy,
                request.action,
                request.spec_hash.as_str(),
                &required,
                SystemTime::now(),
            )
            .await
            .map_err(|_| audit_unavailable())?
        } else {
            Vec::new()
        };
        let mut entry = request_entry(caller, &decision_id, &request, required.clone());
        entry.action = preview_action_name(request.action).to_owned();
        entry.outcome = "previewed".to_owned();
        entry.grpc_code = GRPC_OK.to_owned();
        entry.detail = format!("policy decision {}", decision_name(decision));
        entry.approval_ids = eligible.iter().map(|a| a.approval_id.clone()).collect();
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: None,
        };
        match self.inner.store.append(append).await {
            Ok(_) => {}
            Err(_) => return Err(audit_unavailable()),
        }
        Ok(pb::Preview {
            action: pb_action(request.action) as i32,
            spec_hash: request.spec_hash.to_string(),
            policy_decision: pb_decision(decision) as i32,
            posture: pb_posture(policy.posture) as i32,
            required_capabilities: required,
            required_approvals: if needs_approval {
                policy.required_approvals
            } else {
                0
            },
            eligible_approvals: eligible,
            decision_id,
        })
    }
}

/// Why the checked path stopped before admitting.
enum Outcome {
    /// An earlier admission of this request, answered again.
    Answer(Box<pb::Admission>),
    /// A rejection still to be recorded (unless it carries a decision_id already).
    Reject(Rejection),
    /// The store could not make the decision durable.
    Unavailable,
}

impl From<StoreError> for Outcome {
    fn from(error: StoreError) -> Self {
        tracing::warn!(error = %error, "audit store failed during a decision");
        Outcome::Unavailable
    }
}

fn decode_admission(bytes: &[u8]) -> Result<pb::Admission, StoreError> {
    pb::Admission::decode(bytes).map_err(|error| {
        tracing::error!(%error, "stored admission could not be decoded");
        StoreError::Unavailable
    })
}

fn with_receipt(mut admission: pb::Admission, receipt: &Receipt) -> pb::Admission {
    admission.audit_entry_hash = receipt.entry_hash.clone();
    admission
}

/// The append of a rejection: no uses consumed, nothing admitted.
fn rejection_append(entry: NewEntry, idempotency: Option<IdempotencyKey>) -> Append {
    Append {
        entry,
        consume: Vec::new(),
        on_refused: None,
        idempotency,
        admission: None,
        approval_write: None,
    }
}

/// Whether a rejection was decided after row 5 checked the request_id. Only those claim the
/// request_id: a rejection at rows 3–4 must not, or storing it would turn that answer into
/// REQUEST_ID_CONFLICT (and leave it unrecorded) when the caller had used the request_id before.
fn passed_row_five(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::CallerNotAuthorized | Reason::EnvironmentUnknown | Reason::RequestIdConflict
    )
}

/// The entry recording `rejection` of `request`.
fn rejection_entry(
    caller: &Caller,
    decision_id: &str,
    request: &AdmissionRequest,
    rejection: &Rejection,
) -> NewEntry {
    let capabilities = request.requested_capabilities.clone();
    let mut entry = request_entry(caller, decision_id, request, capabilities);
    set_rejection(&mut entry, rejection);
    entry
}

fn set_rejection(entry: &mut NewEntry, rejection: &Rejection) {
    entry.outcome = "rejected".to_owned();
    entry.reason = rejection.reason.as_str().to_owned();
    entry.grpc_code = rejection.reason.code_name().to_owned();
    entry.detail = rejection.message.clone();
}

/// The audit entry common to every decision on this request.
fn request_entry(
    caller: &Caller,
    decision_id: &str,
    request: &AdmissionRequest,
    capabilities: Vec<String>,
) -> NewEntry {
    NewEntry {
        entry_id: decision_id.to_owned(),
        actor: caller.identity.as_str().to_owned(),
        actor_cert_sha256: caller.cert_sha256.clone(),
        initiated_by: request.initiated_by.clone(),
        action: action_name(request.action).to_owned(),
        scope: request.environment.clone(),
        spec_hash: request.spec_hash.to_string(),
        capabilities,
        request_id: request.request_id.clone(),
        ..NewEntry::default()
    }
}

/// What is recorded when the store refuses a use inside the append transaction: a rejection,
/// or in shadow mode an admission reporting the would-be rejection (stored for retries).
fn refused(
    mut entry: NewEntry,
    refusal: &UseRefusal,
    shadow_admission: Option<pb::Admission>,
) -> RefusalRecord {
    let rejection = refusal_rejection(refusal);
    set_rejection(&mut entry, &rejection);
    let Some(admission) = shadow_admission else {
        return RefusalRecord {
            entry,
            admission: None,
        };
    };
    entry.outcome = "admitted_shadow".to_owned();
    entry.grpc_code = GRPC_OK.to_owned();
    entry.approval_ids.clear();
    RefusalRecord {
        entry,
        admission: Some(shadow_refused(admission, refusal).encode_to_vec()),
    }
}

/// The shadow-mode admission when a use was refused: nothing consumed, the reason reported.
fn shadow_refused(mut admission: pb::Admission, refusal: &UseRefusal) -> pb::Admission {
    admission.approval_ids.clear();
    admission.shadow_reason = refusal_rejection(refusal).reason.as_str().to_owned();
    admission
}

fn refusal_rejection(refusal: &UseRefusal) -> Rejection {
    match refusal {
        UseRefusal::Revoked { approval_id } => Rejection::new(
            Reason::ApprovalRevoked,
            format!(
                "approval {} was revoked; request a new approval",
                echo(approval_id)
            ),
        )
        .with("approval_id", truncated(approval_id)),
        UseRefusal::Exhausted {
            approval_id,
            uses,
            max_uses,
        } => Rejection::new(
            Reason::ApprovalConsumed,
            format!(
                "approval {} has been used {uses} of {max_uses} times; request a new approval",
                echo(approval_id)
            ),
        )
        .with("approval_id", truncated(approval_id)),
    }
}

fn request_id_conflict(request_id: &str) -> Rejection {
    Rejection::new(
        Reason::RequestIdConflict,
        format!(
            "request_id {} was already used by this caller for a different request; use a new request_id",
            echo(request_id)
        ),
    )
}

fn overloaded() -> Rejection {
    Rejection::new(
        Reason::Overloaded,
        "the admission service is at its in-flight limit; retry with backoff",
    )
}

fn audit_unavailable() -> Rejection {
    Rejection::new(
        Reason::AuditUnavailable,
        "the decision could not be recorded in the audit trail in time; nothing was admitted, retry later",
    )
}

fn action_name(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Deploy => "deploy.admit",
        ActionKind::ReplayDryRun | ActionKind::ReplayExecute => "replay.admit",
    }
}

fn preview_action_name(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Deploy => "deploy.preview",
        ActionKind::ReplayDryRun | ActionKind::ReplayExecute => "replay.preview",
    }
}

fn pb_decision(decision: PolicyDecision) -> pb::PolicyDecision {
    match decision {
        PolicyDecision::Allow => pb::PolicyDecision::Allow,
        PolicyDecision::DryRunOnly => pb::PolicyDecision::DryRunOnly,
        PolicyDecision::RequireApproval => pb::PolicyDecision::RequireApproval,
        PolicyDecision::Deny => pb::PolicyDecision::Deny,
    }
}

fn decision_name(decision: PolicyDecision) -> &'static str {
    pb_decision(decision).as_str_name()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
