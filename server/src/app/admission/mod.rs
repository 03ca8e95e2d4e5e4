//! Admission decisions (SPEC §7): the whole order from request to durable audit entry.
//!
//! [`request`] validates rows 1–2, [`Engine`] checks rows 3–5 and reads what the rules need,
//! [`rules`] decides rows 6–25 without I/O, and the audit store appends the entry and consumes the
//! approval uses in one transaction (rows 23–24 again, atomically, and row 26). Row 27 is the
//! in-flight limit in front of all of it.
//!
//! Retries. An admitted request retried by the same caller with the same content gets the
//! original admission and records nothing. Row 5 is checked by the store, which looks the
//! request up inside its write transaction before recording anything for it, admit or
//! rejection: the decision path does not read the request_id first (that read would be repeated
//! by the writer for every call to save work only on retries). So a retry that read the approval
//! state the original left behind (its use consumed) never reports APPROVAL_CONSUMED for a
//! request that was admitted, and different content under an admitted or rejected request_id
//! is answered REQUEST_ID_CONFLICT whatever rows 6–25 would have said. A rejection is not replayed: every retry
//! of a rejected request is decided again, recorded under its own decision_id, and answered by
//! the state at that moment, which is the same rejection while nothing has changed.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use admission_contract::{
    Reason,
    credential::{Decoded, VerifyError},
    echo,
    echo::truncated,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::domain::{
    request::{AdmissionRequest, Invalid, RequestLimits},
    rules::{self, ApprovalUseState, RuleInput, UsedApproval, Verdict},
};
use crate::{
    app::failure::Failure,
    app::recording::{record_rejection, rejection_append, set_rejection},
    app::settings::{Settings, SharedSettings},
    app::transparency::{SharedLog, TransparencyLog},
    app::wire,
    domain::approval::ApprovalState,
    domain::decision::{Admission, Preview, new_decision_id},
    domain::outcome::Outcome,
    domain::policy::{ActionKind, Enforcement, EnvironmentPolicy, PolicyDecision},
    domain::rejection::Rejection,
    identity::roles::Role,
    identity::tls::Caller,
    store::{
        Append, Appended, ApprovalUse, AuditStore, IdempotencyKey, NewEntry, Receipt,
        RefusalRecord, StoreError, UseRefusal,
    },
};

mod answer;
mod preview;
mod record;

use self::answer::*;
use self::record::*;

/// The gRPC code name recorded for decisions answered OK.
const GRPC_OK: &str = "OK";

/// Decides admissions and previews.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SharedSettings,
    store: AuditStore,
    log: SharedLog,
    limits: RequestLimits,
    in_flight: Semaphore,
}

/// Why the checked path stopped before admitting.
enum Stop {
    /// A rejection still to be recorded (unless it carries a decision_id already).
    Reject(Rejection),
    /// Nothing to record: the store failed, or a bug.
    Fail(Failure),
}

/// What every decision starts with: the in-flight permit (row 27 is taken), its decision_id,
/// and the request that passed rows 1–2.
struct Begun<'a> {
    _permit: SemaphorePermit<'a>,
    decision_id: String,
    request: AdmissionRequest,
}

// === impl Engine ===

impl Engine {
    /// An engine over the shared settings (each decision reads them once) and the store,
    /// signing receipts with `log`.
    pub fn new(
        settings: SharedSettings,
        store: AuditStore,
        log: SharedLog,
        limits: RequestLimits,
        max_in_flight: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                store,
                log,
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
    ) -> Result<Admission, Failure> {
        let begun = self
            .begin(caller, request, ActionKind::admit_audit_action)
            .await?;
        let (decision_id, request) = (&begun.decision_id, &begun.request);
        let admission = match self.admit_checked(caller, decision_id, request).await {
            Ok(admission) => admission,
            Err(Stop::Reject(rejection)) => {
                self.record_rejection(caller, decision_id, request, rejection)
                    .await?
            }
            Err(Stop::Fail(failure)) => return Err(failure),
        };
        Ok(self.with_stored_receipt(admission, request).await)
    }

    /// The log, for the Audit service and the checkpoint task.
    pub fn log(&self) -> &SharedLog {
        &self.inner.log
    }

    /// `admission` with its receipt: an earlier admission answered again is signed again from
    /// its stored form and its entry, which gives the original bytes. Without the entry (the
    /// store failing now) it is answered without a receipt rather than not at all.
    async fn with_stored_receipt(
        &self,
        mut admission: Admission,
        request: &AdmissionRequest,
    ) -> Admission {
        if !admission.receipt.is_empty() || !self.inner.log.signs() {
            return admission;
        }
        match self.inner.store.leaf_of(&admission.decision_id).await {
            Ok(Some((index, entry_hash))) => {
                admission.receipt = self.inner.log.receipt(
                    &admission,
                    &request.environment,
                    index + 1,
                    &entry_hash,
                );
            }
            Ok(None) => {
                tracing::error!(decision_id = %admission.decision_id, "an admission answered again has no audit entry")
            }
            Err(error) => {
                tracing::warn!(%error, decision_id = %admission.decision_id, "the receipt of an admission answered again could not be read")
            }
        }
        admission
    }

    /// The prelude of admit and preview: row 27, a decision_id, and a request that failed
    /// rows 1–2 recorded (under `audit_action` of its action) and answered.
    async fn begin(
        &self,
        caller: &Caller,
        request: Result<AdmissionRequest, Box<Invalid>>,
        audit_action: fn(ActionKind) -> &'static str,
    ) -> Result<Begun<'_>, Failure> {
        // Row 27.
        let Ok(permit) = self.inner.in_flight.try_acquire() else {
            return Err(overloaded().into());
        };
        let decision_id = new_decision_id();
        match request {
            Ok(request) => Ok(Begun {
                _permit: permit,
                decision_id,
                request,
            }),
            Err(invalid) => {
                let action = audit_action(invalid.action);
                Err(self
                    .record_invalid(caller, &decision_id, action, invalid)
                    .await)
            }
        }
    }

    async fn admit_checked(
        &self,
        caller: &Caller,
        decision_id: &str,
        request: &AdmissionRequest,
    ) -> Result<Admission, Stop> {
        // One settings snapshot for the whole decision, whatever a reload swaps meanwhile.
        let settings = self.inner.settings.current();
        // Rows 3–4.
        let policy = authorize(&settings, caller, request).map_err(Stop::Reject)?;
        // Row 5 is the store's, in the append (see the module docs).
        let credentials = if rules::needs_credentials(request, policy) {
            rules::decode_credentials(request, &self.inner.limits)
        } else {
            Vec::new()
        };
        let approvals = self.approval_states(&credentials).await?;
        let input = RuleInput {
            request,
            policy,
            keys: &settings.keys,
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
            Err(rejection) => return Err(Stop::Reject(rejection)),
        };
        self.record_admission(caller, decision_id, request, policy, used, admitted)
            .await
    }

    /// The stored use state of every approval the credentials name (for rows 23–24).
    async fn approval_states(
        &self,
        credentials: &[Result<Decoded, VerifyError>],
    ) -> Result<HashMap<String, ApprovalUseState>, Stop> {
        let mut states = HashMap::new();
        for decoded in credentials.iter().flatten() {
            let id = &decoded.claims.approval_id;
            if states.contains_key(id) {
                continue;
            }
            if let Some(row) = self.inner.store.approval(id).await? {
                states.insert(
                    id.clone(),
                    ApprovalUseState {
                        revoked: row.state == ApprovalState::Revoked,
                        uses: row.uses,
                        max_uses: row.max_uses,
                        approved: row.state.admits(),
                    },
                );
            }
        }
        Ok(states)
    }
}

/// Rows 3–4: the caller's roles, then the environment, under one settings snapshot.
pub(super) fn authorize<'s>(
    settings: &'s Settings,
    caller: &Caller,
    request: &AdmissionRequest,
) -> Result<&'s EnvironmentPolicy, Rejection> {
    let env = &request.environment;
    let scope = Some(env.parts());
    settings
        .roles
        .authorize(&caller.identity, Role::Orchestrator, scope)?;
    if request.break_glass.is_some() {
        settings
            .roles
            .authorize(&caller.identity, Role::BreakGlass, scope)?;
    }
    env.policy(&settings.policies)
}

// === impl Stop ===

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Stop::Fail(Failure::from_store(error, audit_unavailable))
    }
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Stop::Fail(failure)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
