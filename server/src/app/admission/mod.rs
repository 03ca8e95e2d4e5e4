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
    domain::policy::{Enforcement, EnvironmentPolicy, Policies, PolicyDecision},
    domain::rejection::Rejection,
    identity::roles::{Role, RoleBindings},
    identity::tls::Caller,
    store::{
        Append, Appended, ApprovalUse, AuditStore, IdempotencyKey, NewEntry, Receipt,
        RefusalRecord, StoreError, UseRefusal,
    },
};

mod record;

use self::record::*;

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
                let action = invalid.action.admit_audit_action();
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
            Err(Outcome::Overloaded) => Err(overloaded()),
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
                let action = invalid.action.preview_audit_action();
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
        entry.action = request.action.preview_audit_action().to_owned();
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
        if let Err(error) = self.inner.store.append(append).await {
            return Err(store_refusal(&error));
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
    /// The store is at capacity: refused before anything was recorded.
    Overloaded,
}

impl From<StoreError> for Outcome {
    fn from(error: StoreError) -> Self {
        if error == StoreError::Overloaded {
            return Outcome::Overloaded;
        }
        tracing::warn!(error = %error, "audit store failed during a decision");
        Outcome::Unavailable
    }
}

/// The answer when the store did not take an append: OVERLOADED when it was at capacity,
/// AUDIT_UNAVAILABLE otherwise. Nothing was recorded either way.
pub(super) fn store_refusal(error: &StoreError) -> Rejection {
    match error {
        StoreError::Overloaded => overloaded(),
        _ => audit_unavailable(),
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
