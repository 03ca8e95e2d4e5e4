//! Previews: the policy decision and eligible approvals for a request, audited, consuming
//! nothing and claiming no request_id.

use super::*;

// === impl Engine ===

impl Engine {
    /// Evaluates a request without credentials and without consuming anything; audited.
    pub async fn preview(
        &self,
        caller: &Caller,
        request: Result<AdmissionRequest, Box<Invalid>>,
    ) -> Result<Preview, Failure> {
        let begun = self
            .begin(caller, request, ActionKind::preview_audit_action)
            .await?;
        let (decision_id, request) = (begun.decision_id, &begun.request);
        let settings = self.inner.settings.current();
        let policy = match authorize(&settings, caller, request) {
            Ok(policy) => policy,
            Err(rejection) => {
                // Rows 3–4 claim no request_id: a preview never answers with an admission.
                let entry = rejection_entry(caller, &decision_id, request, &rejection);
                return Err(self.append_unkeyed(entry, rejection).await);
            }
        };
        let decision = rules::policy_decision(request, policy);
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
                audit_unavailable,
            )
            .await?
        } else {
            Vec::new()
        };
        let mut entry = request_entry(caller, &decision_id, request, required.clone());
        entry.action = request.action.preview_audit_action().to_owned();
        entry.outcome = Outcome::Previewed.as_str().to_owned();
        entry.grpc_code = GRPC_OK.to_owned();
        // The audit trail names the decision as the wire does.
        let name = wire::pb_decision(decision).as_str_name();
        entry.detail = format!("policy decision {name}");
        entry.approval_ids = eligible.iter().map(|a| a.approval_id.clone()).collect();
        self.record_preview(entry).await?;
        Ok(Preview {
            action: request.action,
            spec_hash: request.spec_hash.to_string(),
            policy_decision: decision,
            posture: policy.posture,
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

    /// Appends a preview's entry: it consumes nothing, claims no request_id, writes nothing.
    async fn record_preview(&self, entry: NewEntry) -> Result<(), Failure> {
        let append = Append {
            entry,
            consume: Vec::new(),
            on_refused: None,
            idempotency: None,
            admission: None,
            approval_write: None,
        };
        match self.inner.store.append(append).await {
            Ok(Appended::Committed(_)) => Ok(()),
            Ok(Appended::Duplicate { .. } | Appended::RequestIdConflict { .. }) => Err(
                Failure::impossible("a preview without a request_id matched a request"),
            ),
            Ok(Appended::Refused { .. }) => Err(Failure::impossible("a preview refused a use")),
            Ok(Appended::ApprovalVersionConflict) => Err(Failure::impossible(
                "a preview writing no approval conflicted",
            )),
            Err(error) => Err(Failure::from_store(error, audit_unavailable)),
        }
    }
}
