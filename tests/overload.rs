//! Overload end to end over real mTLS, on SQLite and on PostgreSQL when
//! `ADMISSION_TEST_DATABASE_URL` is set: with a tiny audit queue (`[limits]
//! max_queued_audit_appends`, `max_audit_queue_wait`), admissions beyond it are answered
//! RESOURCE_EXHAUSTED / OVERLOADED with RetryInfo at once, an admission that waited past the
//! queue bound is refused the same way instead of timing out, and health stays SERVING: load
//! never takes a replica out of a load balancer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use admission_contract::ERROR_DOMAIN;
use common::requests::deploy;
use common::store::TestDb;
use common::{AUDITOR, DEV_ENVIRONMENT, ORCHESTRATOR, ROLES, TestServer};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

on_both_backends!(admissions_beyond_the_audit_queue_are_refused_overloaded);
on_both_backends!(decisions_beyond_the_in_flight_bound_are_refused_before_any_work);

fn assert_overloaded(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OVERLOADED");
    assert_eq!(info.domain, ERROR_DOMAIN);
    let retry = status.get_details_retry_info().expect("retry info");
    assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()));
}

async fn serving(server: &TestServer) -> ServingStatus {
    let client = server.client(AUDITOR).await;
    let response = client.health().check(HealthCheckRequest::default()).await;
    ServingStatus::try_from(response.unwrap().into_inner().status).unwrap()
}

async fn admissions_beyond_the_audit_queue_are_refused_overloaded(db: &TestDb) {
    let extra = format!(
        "{ROLES}{DEV_ENVIRONMENT}\n[audit]\ndurable_timeout = \"20s\"\n\n[limits]\n\
         max_queued_audit_appends = 1\nmax_audit_queue_wait = \"300ms\"\n"
    );
    let server = TestServer::start_on(db, &extra).await;
    let client = server.client(ORCHESTRATOR).await;
    client
        .deploy()
        .admit(deploy("dev", "req-before"))
        .await
        .unwrap();

    // The writer takes "first" and waits for the lock; "second" waits in the queue.
    let lock = db.lock().await;
    let admit = |request_id: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.deploy().admit(deploy("dev", request_id)).await })
    };
    let first = admit("req-first");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = admit("req-second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = client.deploy().admit(deploy("dev", "req-third")).await;
    assert_overloaded(&third.unwrap_err());
    assert_eq!(serving(&server).await, ServingStatus::Serving);

    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;
    first
        .await
        .unwrap()
        .expect("the admission the writer held is admitted");
    assert_overloaded(&second.await.unwrap().unwrap_err());
    assert_eq!(serving(&server).await, ServingStatus::Serving);

    // Refused decisions were not recorded: the retry of one is decided afresh.
    client
        .deploy()
        .admit(deploy("dev", "req-third"))
        .await
        .unwrap();
}

/// `[limits] max_in_flight_decisions`: with one decision held by the writer (the database is
/// locked), the next is refused OVERLOADED at once, before its request id is looked up or
/// anything is recorded, and health stays SERVING.
async fn decisions_beyond_the_in_flight_bound_are_refused_before_any_work(db: &TestDb) {
    let extra = format!(
        "{ROLES}{DEV_ENVIRONMENT}\n[audit]\ndurable_timeout = \"20s\"\n\n[limits]\n\
         max_in_flight_decisions = 1\n"
    );
    let server = TestServer::start_on(db, &extra).await;
    let client = server.client(ORCHESTRATOR).await;

    let lock = db.lock().await;
    let held = {
        let client = client.clone();
        tokio::spawn(async move { client.deploy().admit(deploy("dev", "req-held")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = client.deploy().admit(deploy("dev", "req-refused")).await;
    assert_overloaded(&refused.unwrap_err());
    assert_eq!(serving(&server).await, ServingStatus::Serving);

    lock.release().await;
    held.await.unwrap().expect("the held decision is admitted");
    // The refused decision was not recorded; its retry is decided afresh.
    let auditor = server.client(AUDITOR).await;
    let entries = common::server::audit_entries(&auditor, 100).await;
    assert!(entries.iter().any(|e| e.request_id == "req-held"));
    assert!(!entries.iter().any(|e| e.request_id == "req-refused"));
    client
        .deploy()
        .admit(deploy("dev", "req-refused"))
        .await
        .unwrap();
}
