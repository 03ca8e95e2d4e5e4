//! Retry guidance end to end, over real mTLS against a real store whose write lock another
//! connection holds: AUDIT_UNAVAILABLE carries `google.rpc.RetryInfo`, the Rust client retries
//! the identical request until the store is writable again and is admitted exactly once, and a
//! client out of attempts returns the typed AUDIT_UNAVAILABLE rejection. Every test runs on
//! SQLite, and on PostgreSQL when `ADMISSION_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use admission_client::{
    AdmissionClient, AdmitError, Reason, Rejection, RetryEvent, RetryPolicy, pb,
};
use common::{
    AUDITOR, DEFAULT_ROLES, ORCHESTRATOR, REVIEWER, TestServer,
    requests::deploy,
    server::approved_in_prod,
    store::{Backend, StoreLock, TestDb},
};
use tokio::sync::mpsc;
use tonic::Code;
use tonic_types::StatusExt;

/// A short durable timeout, so each attempt against the locked store is answered quickly.
const AUDIT: &str = "[audit]\ndurable_timeout = \"300ms\"\n";

/// The RetryInfo delay the server sends with AUDIT_UNAVAILABLE.
const AUDIT_RETRY_DELAY: Duration = Duration::from_secs(1);

#[tokio::test]
async fn sqlite_retries_through_a_store_outage_and_admit_once() {
    retries_through_outage(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_retries_through_a_store_outage_and_admit_once() {
    retries_through_outage(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_exhausted_attempts_return_audit_unavailable() {
    exhausted_attempts(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_exhausted_attempts_return_audit_unavailable() {
    exhausted_attempts(Backend::Postgres).await;
}

/// With the store locked, a single Admit is answered UNAVAILABLE / AUDIT_UNAVAILABLE with
/// RetryInfo; a retrying client keeps resending the same request while the lock is held, and
/// once it is released the admission goes through: one admitted audit entry for the
/// `request_id`, the approval used once.
async fn retries_through_outage(backend: Backend) {
    let Some((server, db)) = start(backend, "retries_through_outage").await else {
        return;
    };
    let reviewer = server.client(REVIEWER).await;
    let orchestrator_cert = server.pki.client(ORCHESTRATOR);
    let once = server
        .builder_as(&orchestrator_cert)
        .connect()
        .await
        .unwrap();
    let (approval_id, credential) = approved_prod_credential(&once, &reviewer).await;
    let mut request = deploy("prod", "retry-outage-1");
    request.credentials = vec![credential];

    let lock = StoreLock::acquire(backend, &server.state.config().database_url).await;
    let status = once.deploy().admit(request.clone()).await.unwrap_err();
    assert_audit_unavailable(&status);
    let retry = status
        .get_details_retry_info()
        .expect("RetryInfo on AUDIT_UNAVAILABLE");
    assert_eq!(retry.retry_delay, Some(AUDIT_RETRY_DELAY));

    let (policy, mut retries) = observed(RetryPolicy::default().with_max_attempts(1000));
    let retrying = server
        .builder_as(&orchestrator_cert)
        .retry_policy(policy.with_deadline(Duration::from_secs(600)))
        .connect()
        .await
        .unwrap();
    let call = tokio::spawn({
        let request = request.clone();
        async move { retrying.admit_deploy(request).await }
    });
    for attempt in 1..=2 {
        let event = retries.recv().await.unwrap();
        assert_eq!(event.attempt, attempt);
        assert!(event.delay >= AUDIT_RETRY_DELAY, "{event:?}");
        assert_audit_unavailable(&event.status);
    }
    lock.release().await;
    let admission = call.await.unwrap().unwrap();
    assert_eq!(admission.approval_ids, vec![approval_id.clone()]);

    assert_eq!(reviewer.get_approval(&approval_id).await.unwrap().uses, 1);
    let entries = entries_for(&server.client(AUDITOR).await, "retry-outage-1").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].outcome, "admitted");
    assert_eq!(entries[0].entry_id, admission.decision_id);
    // The retried request is the admitted one: sending it again returns the same decision.
    let again = once.admit_deploy(request).await.unwrap();
    assert_eq!(again.decision_id, admission.decision_id);
    assert_eq!(reviewer.get_approval(&approval_id).await.unwrap().uses, 1);
    server.finish(db).await;
}

/// With the store locked throughout, a client allowed three attempts makes exactly three and
/// returns the typed AUDIT_UNAVAILABLE rejection; nothing is consumed or recorded.
async fn exhausted_attempts(backend: Backend) {
    let Some((server, db)) = start(backend, "exhausted_attempts").await else {
        return;
    };
    let reviewer = server.client(REVIEWER).await;
    let orchestrator_cert = server.pki.client(ORCHESTRATOR);
    let (policy, mut retries) =
        observed(RetryPolicy::default().with_deadline(Duration::from_secs(600)));
    let orchestrator = server
        .builder_as(&orchestrator_cert)
        .retry_policy(policy)
        .max_attempts(3)
        .connect()
        .await
        .unwrap();
    let (approval_id, credential) = approved_prod_credential(&orchestrator, &reviewer).await;
    let mut request = deploy("prod", "retry-exhausted-1");
    request.credentials = vec![credential];

    let lock = StoreLock::acquire(backend, &server.state.config().database_url).await;
    let result = orchestrator.admit_deploy(request).await;
    let rejection = match result {
        Err(AdmitError::Rejected(rejection)) => rejection,
        other => panic!("expected a typed rejection, got {other:?}"),
    };
    assert_eq!(rejection.code, Code::Unavailable, "{rejection}");
    assert!(rejection.is(Reason::AuditUnavailable), "{rejection}");
    let mut attempts = Vec::new();
    while let Ok(event) = retries.try_recv() {
        attempts.push(event.attempt);
    }
    assert_eq!(attempts, [1, 2], "three attempts, so two retries");
    lock.release().await;

    assert_eq!(reviewer.get_approval(&approval_id).await.unwrap().uses, 0);
    let entries = entries_for(&server.client(AUDITOR).await, "retry-exhausted-1").await;
    assert!(entries.is_empty(), "{entries:?}");
    server.finish(db).await;
}

/// `policy` reporting each retry on the returned channel.
fn observed(policy: RetryPolicy) -> (RetryPolicy, mpsc::UnboundedReceiver<RetryEvent>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let policy = policy.on_retry(move |event| {
        let _ = sender.send(event.clone());
    });
    (policy, receiver)
}

fn assert_audit_unavailable(status: &tonic::Status) {
    let rejection = Rejection::from_status(status).expect("a typed rejection");
    assert_eq!(rejection.code, Code::Unavailable, "{rejection}");
    assert!(rejection.is(Reason::AuditUnavailable), "{rejection}");
}

/// A server with [`DEFAULT_ROLES`] and [`AUDIT`] on a fresh database of `backend`.
async fn start(backend: Backend, test: &str) -> Option<(TestServer, TestDb)> {
    TestServer::start_fresh(backend, test, &format!("{DEFAULT_ROLES}{AUDIT}")).await
}

/// An approval in prod, approved by the reviewer: its id and credential.
async fn approved_prod_credential(
    orchestrator: &AdmissionClient,
    reviewer: &AdmissionClient,
) -> (String, String) {
    let approved = approved_in_prod(orchestrator, reviewer).await;
    (approved.approval_id, approved.credentials[0].clone())
}

/// Every audit entry recorded for `request_id`.
async fn entries_for(auditor: &AdmissionClient, request_id: &str) -> Vec<pb::AuditEntry> {
    let mut request = pb::ListAuditRequest {
        page_size: 100,
        ..pb::ListAuditRequest::default()
    };
    let mut entries = Vec::new();
    loop {
        let page = auditor
            .audit()
            .list(request.clone())
            .await
            .unwrap()
            .into_inner();
        entries.extend(
            page.entries
                .into_iter()
                .filter(|e| e.request_id == request_id),
        );
        if page.next_page_token.is_empty() {
            return entries;
        }
        request.page_token = page.next_page_token;
    }
}
