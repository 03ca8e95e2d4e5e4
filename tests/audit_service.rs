//! The audit trail through the server: fail closed while the store cannot write (and recover
//! without a restart), two replicas extending one PostgreSQL chain, and the Audit service's
//! filters, paging, roles and tamper reporting. Every test runs on SQLite, and on PostgreSQL
//! when `ADMISSION_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::{StreamExt as _, stream};
use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use admission_client::{AdmissionClient, AdmitError, Reason, Rejection, pb};
use admission_server::store::{Append, AuditStore, ListFilter, NewEntry, Scope, StoreOptions};
use common::{
    AUDITOR, DEFAULT_ROLES, DEV_ENVIRONMENT, NOBODY, ORCHESTRATOR, REVIEWER, SHOP_DEV_ENVIRONMENT,
    TestServer,
    requests::{deploy, environment},
    server::approved_in_prod,
    store::{Backend, StoreLock, TestDb, execute_sql},
};
use sqlx::Connection;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Bound on polling loops; each iteration sleeps [`POLL_INTERVAL`].
const POLL_ATTEMPTS: u32 = 1200;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

// === fail closed ===

#[tokio::test]
async fn sqlite_locked_store_fails_closed_and_recovers_without_restart() {
    fail_closed_and_recover(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_locked_store_fails_closed_and_recovers_without_restart() {
    fail_closed_and_recover(Backend::Postgres).await;
}

/// Holds the store's write lock from another connection: an admit that would consume an
/// approval is answered UNAVAILABLE / AUDIT_UNAVAILABLE with nothing consumed or recorded,
/// health reports NOT_SERVING; once the lock is released health is SERVING again and the same
/// request is admitted, consuming the approval once.
async fn fail_closed_and_recover(backend: Backend) {
    let Some((server, pg)) = start(
        backend,
        "fail_closed",
        "[audit]\ndurable_timeout = \"500ms\"\n",
    )
    .await
    else {
        return;
    };
    let orchestrator = server.client(ORCHESTRATOR).await;
    let reviewer = server.client(REVIEWER).await;
    let auditor = server.client(AUDITOR).await;
    let approval_id = approved_prod_approval(&orchestrator, &reviewer).await;
    let credential = reviewer
        .get_approval(&approval_id)
        .await
        .unwrap()
        .credentials[0]
        .clone();
    assert_eq!(health(&auditor, "").await, ServingStatus::Serving);

    let lock = StoreLock::acquire(backend, &server.state.config().database_url).await;
    let mut request = deploy("prod", "fail-closed-1");
    request.credentials = vec![credential];
    let rejection = rejected(orchestrator.admit_deploy(request.clone()).await);
    assert_eq!(rejection.code, Code::Unavailable, "{rejection}");
    assert!(rejection.is(Reason::AuditUnavailable), "{rejection}");
    assert_eq!(rejection.decision_id, None, "{rejection}");
    wait_for_health(&auditor, ServingStatus::NotServing).await;
    let deploy_service = "byteor.admission.v1.DeployAdmission";
    assert_eq!(
        health(&auditor, deploy_service).await,
        ServingStatus::NotServing
    );
    let unchanged = reviewer.get_approval(&approval_id).await.unwrap();
    assert_eq!(unchanged.uses, 0);
    lock.release().await;

    wait_for_health(&auditor, ServingStatus::Serving).await;
    assert_eq!(
        health(&auditor, deploy_service).await,
        ServingStatus::Serving
    );
    let admission = orchestrator.admit_deploy(request).await.unwrap();
    assert_eq!(admission.approval_ids, vec![approval_id.clone()]);
    let consumed = reviewer.get_approval(&approval_id).await.unwrap();
    assert_eq!(consumed.uses, 1);

    let entries = list_all(&auditor, pb::ListAuditRequest::default(), 50).await;
    let for_request: Vec<_> = entries
        .iter()
        .filter(|e| e.request_id == "fail-closed-1")
        .collect();
    assert_eq!(
        for_request.len(),
        1,
        "only the admitted attempt is recorded"
    );
    assert_eq!(for_request[0].entry_id, admission.decision_id);
    assert_eq!(for_request[0].outcome, "admitted");
    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, entries.len() as u64);
    server.finish(pg).await;
}

// === graceful shutdown ===

/// A decision in flight when graceful shutdown begins is still decided, recorded and answered
/// before the server stops. PostgreSQL shows deterministically that the call is in flight: its
/// write waits on a lock this test holds.
#[tokio::test]
async fn postgres_in_flight_admission_finishes_during_graceful_shutdown() {
    let Some((server, pg)) = start(
        Backend::Postgres,
        "graceful_shutdown",
        "[audit]\ndurable_timeout = \"30s\"\n",
    )
    .await
    else {
        return;
    };
    let orchestrator = server.client(ORCHESTRATOR).await;
    orchestrator
        .admit_deploy(deploy("dev", "graceful-0"))
        .await
        .unwrap();

    let lock = StoreLock::acquire(Backend::Postgres, &pg.url).await;
    let call = tokio::spawn({
        let orchestrator = orchestrator.clone();
        async move { orchestrator.admit_deploy(deploy("dev", "graceful-1")).await }
    });
    wait_for_lock_waiter(&pg.url).await;
    let stopping = tokio::spawn(server.stop());
    lock.release().await;

    let admission = call
        .await
        .unwrap()
        .expect("the in-flight admission is answered");
    stopping.await.unwrap();
    let store = AuditStore::open(&pg.url, StoreOptions::default())
        .await
        .unwrap();
    let (entries, _) = store.list(&ListFilter::default(), 10, "").await.unwrap();
    let recorded: Vec<_> = entries.iter().map(|e| e.entry.entry_id.as_str()).collect();
    assert!(
        recorded.contains(&admission.decision_id.as_str()),
        "{recorded:?}"
    );
    assert!(store.verify().await.unwrap().ok);
    drop(store);
    pg.cleanup().await;
}

/// Waits until some session waits for a lock in the database at `url`.
async fn wait_for_lock_waiter(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for _ in 0..POLL_ATTEMPTS {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE NOT l.granted AND d.datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("no write ever waited on the held lock");
}

// === two replicas, one chain ===

#[tokio::test]
async fn two_servers_sharing_postgres_extend_one_chain() {
    let Some(pg) = TestDb::postgres("two_servers").await else {
        return;
    };
    let first = serve_on(&pg, "").await;
    let second = serve_on(&pg, "").await;
    const PER_SERVER: usize = 50;

    let (first_client, second_client) = (
        first.client(ORCHESTRATOR).await,
        second.client(ORCHESTRATOR).await,
    );
    let (from_first, from_second) = tokio::join!(
        admit_many(&first_client, "first", PER_SERVER),
        admit_many(&second_client, "second", PER_SERVER)
    );
    let decided: HashSet<String> = from_first.into_iter().chain(from_second).collect();
    assert_eq!(decided.len(), 2 * PER_SERVER);

    for server in [&first, &second] {
        let auditor = server.client(AUDITOR).await;
        let report = verify(&auditor).await;
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries_checked, (2 * PER_SERVER) as u64);
        let entries = list_all(&auditor, pb::ListAuditRequest::default(), 7).await;
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=(2 * PER_SERVER) as u64).collect::<Vec<_>>());
        let listed: HashSet<String> = entries.iter().map(|e| e.entry_id.clone()).collect();
        assert_eq!(listed, decided);
        assert_eq!(entries.last().unwrap().entry_hash, report.head_hash);
    }
    first.stop().await;
    second.finish(pg).await;
}

// === the Audit service ===

#[tokio::test]
async fn sqlite_audit_list_filters_pages_and_verify_finds_tampering() {
    audit_service(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_audit_list_filters_pages_and_verify_finds_tampering() {
    audit_service(Backend::Postgres).await;
}

/// Filters by environment and outcome, bad page tokens, roles, then a row edited by SQL.
async fn audit_service(backend: Backend) {
    let Some((server, pg)) = start(backend, "audit_service", "").await else {
        return;
    };
    let orchestrator = server.client(ORCHESTRATOR).await;
    let auditor = server.client(AUDITOR).await;
    let mut payments = Vec::new();
    let mut first_admission = None;
    for i in 0..3 {
        let request = deploy("dev", &format!("payments-{i}"));
        let admission = orchestrator.admit_deploy(request).await.unwrap();
        payments.push(admission.decision_id.clone());
        first_admission.get_or_insert(admission);
    }
    // A retry answers the original admission, entry hash included, and records nothing.
    let first_admission = first_admission.unwrap();
    let retried = orchestrator
        .admit_deploy(deploy("dev", "payments-0"))
        .await
        .unwrap();
    assert_eq!(retried, first_admission);
    let mut shop = Vec::new();
    for i in 0..2 {
        let mut request = deploy("dev", &format!("shop-{i}"));
        request.environment.as_mut().unwrap().project_id = "shop".to_owned();
        shop.push(
            orchestrator
                .admit_deploy(request)
                .await
                .unwrap()
                .decision_id,
        );
    }
    let mut rejected_ids = Vec::new();
    for i in 0..2 {
        let rejection = rejected(
            orchestrator
                .admit_deploy(deploy("prod", &format!("prod-{i}")))
                .await,
        );
        assert_eq!(rejection.code, Code::PermissionDenied, "{rejection}");
        assert!(rejection.is(Reason::ApprovalRequired), "{rejection}");
        rejected_ids.push(rejection.decision_id.unwrap());
    }

    let by_env = |org: &str, project: &str, env: &str| pb::ListAuditRequest {
        environment: Some(environment(org, project, env)),
        ..pb::ListAuditRequest::default()
    };
    let ids = |entries: &[pb::AuditEntry]| -> Vec<String> {
        entries.iter().map(|e| e.entry_id.clone()).collect()
    };
    let listed = list_all(&auditor, by_env("acme", "payments", "dev"), 2).await;
    assert_eq!(ids(&listed), payments);
    assert_eq!(listed[0].entry_hash, first_admission.audit_entry_hash);
    let listed = list_all(&auditor, by_env("acme", "shop", "dev"), 0).await;
    assert_eq!(ids(&listed), shop);
    assert!(listed.iter().all(|e| e.outcome == "admitted"));
    // Empty parts of the environment match any.
    let listed = list_all(&auditor, by_env("acme", "", "dev"), 0).await;
    assert_eq!(listed.len(), payments.len() + shop.len());
    let rejected_only = pb::ListAuditRequest {
        outcome: "rejected".to_owned(),
        ..pb::ListAuditRequest::default()
    };
    let listed = list_all(&auditor, rejected_only.clone(), 1).await;
    assert_eq!(ids(&listed), rejected_ids);
    for entry in &listed {
        assert_eq!(entry.reason, "APPROVAL_REQUIRED");
        assert_eq!(entry.grpc_code, "PERMISSION_DENIED");
        assert_eq!(
            entry.resource_scope,
            Some(environment("acme", "payments", "prod"))
        );
    }
    let admitted_in_prod = pb::ListAuditRequest {
        outcome: "admitted".to_owned(),
        ..by_env("acme", "payments", "prod")
    };
    assert!(list_all(&auditor, admitted_in_prod, 0).await.is_empty());
    let future = pb::ListAuditRequest {
        since: Some((SystemTime::now() + Duration::from_secs(3600)).into()),
        ..pb::ListAuditRequest::default()
    };
    assert!(list_all(&auditor, future, 0).await.is_empty());

    for token in ["not a token", "YXVkaXQtYWZ0ZXI6MA", "c29tZXRoaW5nOjU"] {
        let request = pb::ListAuditRequest {
            page_token: token.to_owned(),
            ..pb::ListAuditRequest::default()
        };
        let status = auditor.audit().list(request).await.unwrap_err();
        let rejection = Rejection::from_status(&status).unwrap();
        assert_eq!(
            rejection.code,
            Code::InvalidArgument,
            "{token}: {rejection}"
        );
        assert!(rejection.is(Reason::RequestInvalid), "{token}: {rejection}");
        assert_eq!(rejection.field_violations[0].field, "page_token");
    }

    for identity in [ORCHESTRATOR, REVIEWER, NOBODY] {
        let client = server.client(identity).await;
        let status = client
            .audit()
            .list(pb::ListAuditRequest::default())
            .await
            .unwrap_err();
        assert_caller_not_authorized(&status, identity);
        let status = client
            .audit()
            .verify(pb::VerifyAuditRequest {})
            .await
            .unwrap_err();
        assert_caller_not_authorized(&status, identity);
    }

    let all = list_all(&auditor, pb::ListAuditRequest::default(), 0).await;
    let report = verify(&auditor).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries_checked, all.len() as u64);
    let tampered = listed_seq(&all, &rejected_ids[0]);
    let sql = format!("UPDATE audit_entries SET outcome = 'admitted' WHERE seq = {tampered}");
    execute_sql(backend, &server.state.config().database_url, &sql).await;
    let report = verify(&auditor).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_seq, tampered);
    assert_eq!(report.entries_checked, all.len() as u64);
    server.finish(pg).await;
}

#[tokio::test]
async fn sqlite_audit_list_page_size_is_capped_at_1000() {
    page_size_cap(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_audit_list_page_size_is_capped_at_1000() {
    page_size_cap(Backend::Postgres).await;
}

/// 1005 entries (appended to the server's store directly, for speed): a page asks for more
/// than 1000 and gets 1000, 0 gets the default of 100, and the pages join up exactly.
async fn page_size_cap(backend: Backend) {
    let Some((server, pg)) = start(backend, "page_size_cap", "").await else {
        return;
    };
    const TOTAL: u64 = 1005;
    let store = server.state.store().clone();
    // A few dozen at a time: the store's queue refuses what would wait past its bound.
    let appends = (0..TOTAL).map(|i| {
        let store = store.clone();
        async move { store.append(seeded_entry(i)).await.unwrap() }
    });
    let _: Vec<_> = stream::iter(appends).buffer_unordered(32).collect().await;
    let auditor = server.client(AUDITOR).await;

    let request = |page_size: u32, page_token: String| pb::ListAuditRequest {
        page_size,
        page_token,
        ..pb::ListAuditRequest::default()
    };
    let first = auditor
        .audit()
        .list(request(5000, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1000);
    assert_eq!(first.entries.last().unwrap().seq, 1000);
    assert!(!first.next_page_token.is_empty());
    let rest = auditor
        .audit()
        .list(request(u32::MAX, first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<u64> = rest.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1001..=TOTAL).collect::<Vec<_>>());
    assert_eq!(rest.next_page_token, "");
    let default = auditor
        .audit()
        .list(request(0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.entries.len(), 100);
    assert!(!default.next_page_token.is_empty());
    server.finish(pg).await;
}

// === helpers ===

/// Starts a server with [`DEFAULT_ROLES`], the two dev environments and `extra` on a fresh database of
/// `backend`, or `None` (with a notice) for PostgreSQL when `ADMISSION_TEST_DATABASE_URL` is
/// unset.
async fn start(backend: Backend, test: &str, extra: &str) -> Option<(TestServer, TestDb)> {
    let environments = format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}{SHOP_DEV_ENVIRONMENT}{extra}");
    TestServer::start_fresh(backend, test, &environments).await
}

/// A server with [`DEFAULT_ROLES`], the two dev environments and `extra` whose store is `db`.
async fn serve_on(db: &TestDb, extra: &str) -> TestServer {
    TestServer::start_on(
        db,
        &format!("{DEFAULT_ROLES}{DEV_ENVIRONMENT}{SHOP_DEV_ENVIRONMENT}{extra}"),
    )
    .await
}

/// Admits `count` deploys to `acme/payments/dev` at once; their decision ids.
async fn admit_many(client: &AdmissionClient, prefix: &str, count: usize) -> Vec<String> {
    let calls = (0..count).map(|i| {
        let request = deploy("dev", &format!("{prefix}-{i}"));
        async move { client.admit_deploy(request).await.unwrap().decision_id }
    });
    futures::future::join_all(calls).await
}

/// An approval in `acme/payments/prod` approved by the reviewer, not used yet: its id.
async fn approved_prod_approval(
    orchestrator: &AdmissionClient,
    reviewer: &AdmissionClient,
) -> String {
    let approved = approved_in_prod(orchestrator, reviewer).await;
    assert_eq!(approved.uses, 0);
    approved.approval_id
}

fn rejected<T: std::fmt::Debug>(result: Result<T, AdmitError>) -> Rejection {
    match result {
        Err(AdmitError::Rejected(rejection)) => rejection,
        other => panic!("expected a typed rejection, got {other:?}"),
    }
}

fn assert_caller_not_authorized(status: &tonic::Status, identity: &str) {
    let rejection = Rejection::from_status(status).unwrap();
    assert_eq!(
        rejection.code,
        Code::PermissionDenied,
        "{identity}: {rejection}"
    );
    assert!(
        rejection.is(Reason::CallerNotAuthorized),
        "{identity}: {rejection}"
    );
}

async fn health(client: &AdmissionClient, service: &str) -> ServingStatus {
    let response = client
        .health()
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(response.status).unwrap()
}

/// Polls overall health until it reports `wanted` (bounded by [`POLL_ATTEMPTS`]).
async fn wait_for_health(client: &AdmissionClient, wanted: ServingStatus) {
    let mut last = ServingStatus::Unknown;
    for _ in 0..POLL_ATTEMPTS {
        last = health(client, "").await;
        if last == wanted {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("health stayed {last:?}, expected {wanted:?}");
}

async fn verify(auditor: &AdmissionClient) -> pb::VerifyAuditResponse {
    auditor
        .audit()
        .verify(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Every entry matching `request`, following `next_page_token` with pages of `page_size`.
async fn list_all(
    auditor: &AdmissionClient,
    mut request: pb::ListAuditRequest,
    page_size: u32,
) -> Vec<pb::AuditEntry> {
    request.page_size = page_size;
    let mut entries = Vec::new();
    loop {
        let page = auditor
            .audit()
            .list(request.clone())
            .await
            .unwrap()
            .into_inner();
        if page_size > 0 {
            assert!(page.entries.len() <= page_size as usize);
        }
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        request.page_token = page.next_page_token;
    }
}

fn listed_seq(entries: &[pb::AuditEntry], entry_id: &str) -> u64 {
    entries
        .iter()
        .find(|e| e.entry_id == entry_id)
        .map(|e| e.seq)
        .unwrap_or_else(|| panic!("{entry_id} is not listed"))
}

/// An entry appended straight to the store.
fn seeded_entry(i: u64) -> Append {
    Append {
        entry: NewEntry {
            entry_id: format!("seeded-{i}"),
            actor: ORCHESTRATOR.to_owned(),
            actor_cert_sha256: "ab".repeat(32),
            initiated_by: "alice@acme.example".to_owned(),
            action: "deploy.admit".to_owned(),
            scope: Scope {
                org_id: "acme".to_owned(),
                project_id: "payments".to_owned(),
                environment_id: "dev".to_owned(),
            },
            outcome: "admitted".to_owned(),
            grpc_code: "OK".to_owned(),
            request_id: format!("seeded-{i}"),
            ..NewEntry::default()
        },
        consume: Vec::new(),
        on_refused: None,
        idempotency: None,
        admission: None,
        approval_write: None,
    }
}
