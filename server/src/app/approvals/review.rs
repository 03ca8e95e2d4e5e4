//! Reviewing an approval: approve, deny, revoke.

use super::*;

// === impl ApprovalService ===

impl ApprovalService {
    /// `Approvals.Decide` (reviewer role; not the requester nor the initiator).
    pub async fn decide(
        &self,
        caller: &Caller,
        request: pb::DecideApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
        let this = self.pinned();
        let attempted = Attempt::of(&request.approval_id);
        let result = match this.check_review(&request.approval_id, &request.reason) {
            Ok(()) => this.decide_checked(caller, request).await,
            Err(rejection) => Err(rejection.into()),
        };
        this.record_refusal(caller, "approval.decide", attempted, result)
            .await
    }

    async fn decide_checked(
        &self,
        caller: &Caller,
        request: pb::DecideApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
        let verdict = match pb::Verdict::try_from(request.verdict) {
            Ok(pb::Verdict::Approve) => pb::Verdict::Approve,
            Ok(pb::Verdict::Deny) if request.reason.trim().is_empty() => {
                return Err(Rejection::invalid_field("reason", "is required to deny").into());
            }
            Ok(pb::Verdict::Deny) => pb::Verdict::Deny,
            Ok(pb::Verdict::Unspecified) | Err(_) => {
                return Err(Rejection::invalid_field(
                    "verdict",
                    "must be VERDICT_APPROVE or VERDICT_DENY",
                )
                .into());
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
    ) -> Result<ApprovalView, Failure> {
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
        Err(busy().into())
    }

    fn deny(
        &self,
        caller: &Caller,
        mut row: ApprovalRow,
        reason: &str,
        now: SystemTime,
    ) -> (ApprovalRow, NewEntry) {
        row.state = ApprovalState::Denied;
        row.decision_reason = reason.to_owned();
        row.updated_at = now;
        let mut entry = self.entry(caller, &row, "approval.decide", Outcome::ApprovalDenied);
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
        let signer = self.signer(&row)?;
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
        let issued_at = whole_seconds(now);
        let expires_at = credential_expiry(&row, issued_at);
        let credential = self.sign(signer, reviewer, &row, issued_at, expires_at)?;
        row.credentials.push(credential);
        row.approvers.push(reviewer.to_owned());
        row.expires_at = expires_at;
        row.state = row.state.approved(quorum_reached(&row));
        row.updated_at = now;
        let mut entry = self.entry(caller, &row, "approval.decide", Outcome::ApprovalApproved);
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

    /// The service's signing key; reviews cannot approve without one.
    fn signer(&self, row: &ApprovalRow) -> Result<&SigningKey, Rejection> {
        self.settings.signer.as_deref().ok_or_else(|| {
            Rejection::new(
                Reason::SigningNotConfigured,
                "this service has no [signing] key, so it cannot issue credentials; sign offline with admissionctl sign",
            )
            .with("approval_id", row.approval_id.clone())
        })
    }

    /// The credential `reviewer` issues for `row`, signed with `signer`.
    fn sign(
        &self,
        signer: &SigningKey,
        reviewer: &str,
        row: &ApprovalRow,
        issued_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<String, Rejection> {
        let policy = self.policy(&row.scope)?;
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
        signer.sign(&claims).map_err(|error| {
            tracing::error!(%error, approval_id = %row.approval_id, "could not sign a credential");
            Rejection::new(
                Reason::SigningNotConfigured,
                format!(
                    "the [signing] key could not sign a credential for {}: {error}",
                    row.approval_id
                ),
            )
        })
    }

    /// `Approvals.Revoke` (reviewer role).
    pub async fn revoke(
        &self,
        caller: &Caller,
        request: pb::RevokeApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
        let this = self.pinned();
        let attempted = Attempt::of(&request.approval_id);
        let result = match this.check_review(&request.approval_id, &request.reason) {
            Ok(()) => this.revoke_checked(caller, request).await,
            Err(rejection) => Err(rejection.into()),
        };
        this.record_refusal(caller, "approval.revoke", attempted, result)
            .await
    }

    async fn revoke_checked(
        &self,
        caller: &Caller,
        request: pb::RevokeApprovalRequest,
    ) -> Result<ApprovalView, Failure> {
        if request.reason.trim().is_empty() {
            return Err(Rejection::invalid_field("reason", "is required to revoke").into());
        }
        self.update_as_reviewer(caller, &request.approval_id, |mut row, now| {
            row.state = row.state.revoked().map_err(|state| {
                Rejection::new(
                    Reason::ApprovalNotRevocable,
                    format!("approval {} is already {state}", row.approval_id),
                )
                .with("approval_id", row.approval_id.clone())
            })?;
            row.decision_reason = request.reason.clone();
            row.updated_at = now;
            let mut entry = self.entry(caller, &row, "approval.revoke", Outcome::ApprovalRevoked);
            entry.detail = format!("revoked: {}", request.reason);
            Ok((row, entry))
        })
        .await
    }
}

/// When the credentials of `row` expire. The first approval starts the credential window at
/// `issued_at`; later ones (a quorum) end with it, so the approval expires exactly when its
/// first credential does.
fn credential_expiry(row: &ApprovalRow, issued_at: SystemTime) -> SystemTime {
    if row.approvers.is_empty() {
        let ttl = row
            .expires_at
            .duration_since(row.created_at)
            .unwrap_or_default();
        issued_at + ttl
    } else {
        row.expires_at
    }
}
