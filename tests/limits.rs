//! Transport and call limits of `[limits]`, end to end over real mTLS: the request buffer
//! budget, calls per identity, HTTP/2 stream cap, request timeout, idle timeout, keepalive,
//! and TLS handshakes that idle sockets cannot starve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use admission_contract::ERROR_DOMAIN;
use admission_server::{identity::tls::Identity, runtime::config::Config};
use bytes::Bytes;
use common::raw_h2::{self, OpenCall, RawH2, grpc_status};
use common::{DEFAULT_ROLES, NOBODY, ORCHESTRATOR, Pki, TestServer, write_config};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

const ADMIT: &str = "/byteor.admission.v1.DeployAdmission/Admit";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// Small request limits, so a test's budget is a few hundred kilobytes: the largest request
/// is 1,000 + 1,000 + 65,536 = 67,536 bytes.
const SMALL_REQUESTS: &str = "spec_kv_max_bytes = 1000\nmax_credentials = 1\n\
                              credential_max_bytes = 1000\n";

async fn start(limits: &str) -> TestServer {
    let extra = format!("{DEFAULT_ROLES}\n[limits]\n{limits}");
    TestServer::start_with(Pki::new("test clients CA"), &[], &extra).await
}

async fn raw_as(server: &TestServer, identity: &str) -> RawH2 {
    let cert = server.pki.client(identity);
    RawH2::connect(
        server.addr,
        &server.pki.ca_pem(),
        &cert.cert_pem,
        &cert.key_pem,
    )
    .await
}

/// Guards against a hung test only; no assertion depends on how fast anything happens.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Waits until `condition` holds.
async fn eventually(mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(HANG_GUARD, wait)
        .await
        .expect("condition never held");
}

async fn health_of(server: &TestServer, identity: &str) -> Result<ServingStatus, tonic::Status> {
    let client = server.client(identity).await;
    let response = client.health().check(HealthCheckRequest::default()).await?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap())
}

fn assert_overloaded(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OVERLOADED");
    assert_eq!(info.domain, ERROR_DOMAIN);
    assert!(!info.metadata.contains_key("decision_id"), "{info:?}");
}

#[tokio::test]
async fn a_call_that_would_exceed_the_buffer_budget_is_refused_unread() {
    let server = start(&format!(
        "{SMALL_REQUESTS}max_buffered_request_bytes = 100000\n"
    ))
    .await;
    let limits = server.state.call_limits().clone();
    let attacker = raw_as(&server, NOBODY).await;

    // Claims 60,000 bytes and sends ten: the whole claim is reserved at the prefix.
    let held = attacker
        .open_call(ADMIT, 60_000, &Bytes::from(vec![0; 10]))
        .await;
    eventually(|| limits.buffered_bytes() == 60_005).await;

    // 40,000 + 5 more would exceed 100,000: refused without waiting for its bytes.
    let refused = attacker.open_call(ADMIT, 40_000, &Bytes::new()).await;
    assert_overloaded(&grpc_status(refused.response).await);
    assert_eq!(limits.buffered_bytes(), 60_005);

    // A small call still fits, from anyone.
    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );

    // Once the first call goes away, its budget is free again.
    drop(held);
    eventually(|| limits.buffered_bytes() == 0).await;
    let _admitted = attacker.open_call(ADMIT, 40_000, &Bytes::new()).await;
    eventually(|| limits.buffered_bytes() == 40_005).await;
}

#[tokio::test]
async fn messages_are_decoded_up_to_the_largest_request_the_limits_allow() {
    let server = start(SMALL_REQUESTS).await;
    let limits = server.state.call_limits().clone();
    let largest = 67_536;
    let attacker = raw_as(&server, NOBODY).await;

    // The largest request is accepted for decoding: its bytes are awaited, with budget held.
    let waiting = attacker.open_call(ADMIT, largest, &Bytes::new()).await;
    eventually(|| limits.buffered_bytes() == largest as usize + 5).await;

    // One byte more is refused at the prefix, before any of it is sent.
    let refused = attacker.open_call(ADMIT, largest + 1, &Bytes::new()).await;
    let status = tokio::time::timeout(HANG_GUARD, grpc_status(refused.response))
        .await
        .expect("a message over the limit was not refused at its prefix");
    // An oversized body is an invalid request, answered with ErrorInfo like any other.
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|info| info.reason),
        Some("REQUEST_INVALID".to_owned())
    );
    drop(waiting);
    eventually(|| limits.buffered_bytes() == 0).await;
}

#[tokio::test]
async fn one_identity_cannot_take_more_than_its_share_of_calls() {
    let server = start("max_calls_per_identity = 2\n").await;
    let limits = server.state.call_limits().clone();
    let nobody = Identity::new(NOBODY);
    let attacker = raw_as(&server, NOBODY).await;
    let first = attacker.open_call(ADMIT, 1000, &Bytes::new()).await;
    let _second = attacker.open_call(ADMIT, 1000, &Bytes::new()).await;
    eventually(|| limits.calls_in_flight(&nobody) == 2).await;

    // The third call of the same identity, on another connection, is refused...
    let error = health_of(&server, NOBODY).await.unwrap_err();
    assert_overloaded(&error);
    // ...while another caller is served.
    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );

    drop(first);
    eventually(|| limits.calls_in_flight(&nobody) == 1).await;
    assert_eq!(
        health_of(&server, NOBODY).await.unwrap(),
        ServingStatus::Serving
    );
}

#[tokio::test]
async fn the_server_advertises_its_stream_limit() {
    let server = start("max_concurrent_streams = 3\n").await;
    let raw = raw_as(&server, ORCHESTRATOR).await;
    // A first call completes, so the server's SETTINGS have been applied.
    let call = raw.open_call(HEALTH, 0, &Bytes::new()).await;
    let OpenCall { response, mut body } = call;
    body.send_data(Bytes::new(), true).unwrap();
    assert_eq!(grpc_status(response).await.code(), Code::Ok);
    assert_eq!(raw.send.current_max_send_streams(), 3);
}

#[tokio::test]
async fn a_call_that_does_not_finish_in_time_is_answered_deadline_exceeded() {
    // The idle timeout is shorter than the request timeout: a call in flight keeps its
    // connection open, so the answer arrives instead of a closed connection.
    let server = start("request_timeout = \"3s\"\nidle_timeout = \"1s\"\n").await;
    let raw = raw_as(&server, ORCHESTRATOR).await;
    let call = raw.open_call(ADMIT, 1000, &Bytes::from(vec![0; 10])).await;
    let status = grpc_status(call.response).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "the call did not complete within the server's request timeout of 3s"
    );
    assert_eq!(server.state.call_limits().buffered_bytes(), 0);
}

#[tokio::test]
async fn a_connection_without_calls_is_closed_after_the_idle_timeout() {
    // Long enough that the call below starts before the connection counts as idle.
    let server = start("idle_timeout = \"1s\"\nkeepalive_interval = \"1h\"\n").await;
    let raw = raw_as(&server, ORCHESTRATOR).await;
    let OpenCall { response, mut body } = raw.open_call(HEALTH, 0, &Bytes::new()).await;
    body.send_data(Bytes::new(), true).unwrap();
    assert_eq!(grpc_status(response).await.code(), Code::Ok);
    // With nothing in flight the server closes the connection; the client sees it end.
    let ended = tokio::time::timeout(HANG_GUARD, raw.connection).await;
    assert!(ended.is_ok(), "the idle connection was never closed");
    // A client that reconnects is served as before.
    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );
}

#[tokio::test]
async fn a_peer_that_does_not_answer_keepalive_pings_is_disconnected() {
    let server = start(
        "keepalive_interval = \"100ms\"\nkeepalive_timeout = \"100ms\"\nidle_timeout = \"1h\"\n",
    )
    .await;
    let cert = server.pki.client(ORCHESTRATOR);
    let mut tls = raw_h2::tls_connect(
        server.addr,
        &server.pki.ca_pem(),
        &cert.cert_pem,
        &cert.key_pem,
    )
    .await;
    // The HTTP/2 preface and an empty SETTINGS frame; after that the peer only reads.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frames = Vec::new();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_until_closed = async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            // Frame header: 24-bit length, type, flags, stream id.
            while received.len() >= 9 {
                let len = u32::from_be_bytes([0, received[0], received[1], received[2]]) as usize;
                if received.len() < 9 + len {
                    break;
                }
                frames.push((received[3], received[4]));
                received.drain(..9 + len);
            }
        }
    };
    let closed = tokio::time::timeout(HANG_GUARD, read_until_closed).await;
    assert!(closed.is_ok(), "the silent peer was never disconnected");
    const PING: u8 = 0x6;
    assert!(
        frames.contains(&(PING, 0)),
        "the server sent no keepalive ping before closing: {frames:?}"
    );
}

#[tokio::test]
async fn one_identity_cannot_hold_more_than_its_share_of_connections() {
    let server = start("max_connections_per_identity = 2\n").await;
    let transport = server.state.transport().clone();
    let nobody = Identity::new(NOBODY);
    let first = raw_as(&server, NOBODY).await;
    let _second = raw_as(&server, NOBODY).await;
    eventually(|| transport.connections_of(&nobody) == 2).await;

    // A third connection completes TLS on the client side, then the server closes it.
    let third = raw_as(&server, NOBODY).await;
    let ended = tokio::time::timeout(HANG_GUARD, third.connection).await;
    assert!(ended.is_ok(), "the connection over the cap stayed open");
    assert_eq!(transport.handshakes().refused_per_identity, 1);
    // Other callers connect as usual.
    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );

    // A closed connection frees its slot.
    first.connection.abort();
    eventually(|| transport.connections_of(&nobody) == 1).await;
    assert_eq!(
        health_of(&server, NOBODY).await.unwrap(),
        ServingStatus::Serving
    );
}

/// Raises this process's soft limit on open files to cover `needed` descriptors (the test's
/// sockets and the in-process server's), up to the hard limit.
fn allow_open_files(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|current| current >= needed) {
        return;
    }
    if limit.maximum.is_some_and(|maximum| maximum < needed) {
        panic!("this test needs {needed} open files; the hard limit is {limit:?} (ulimit -Hn)");
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        },
    )
    .unwrap();
}

/// Opens `count` TCP connections from `source` that never send a byte.
async fn idle_sockets(source: &str, server: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        sockets.push(socket.connect(server).await.unwrap());
    }
    sockets
}

#[tokio::test]
async fn idle_sockets_from_one_address_cannot_lock_out_other_clients() {
    // Default limits (1,024 pending handshakes, 64 per source address), except that no
    // handshake may time out while the attack is set up.
    let server = start("handshake_timeout = \"1h\"\n").await;
    let limits = Config::load(server.dir.path().join("admission.toml"))
        .unwrap()
        .limits;
    let per_address = limits.max_pending_handshakes_per_address as u64;
    let attackers = 2000;
    // Each attacking socket, the server's side of those it holds, and room for the rest.
    allow_open_files(2 * attackers as u64 + 1024);
    let _idle = idle_sockets("127.0.0.2", server.addr, attackers).await;
    let mut counts = server.state.transport().subscribe();
    counts
        .wait_for(|c| c.pending + c.refused_per_address + c.failed == attackers as u64)
        .await
        .unwrap();
    let seen = server.state.transport().handshakes();
    assert_eq!(seen.pending, per_address);
    assert_eq!(seen.refused_per_address, attackers as u64 - per_address);

    // A fresh client from another address completes mTLS and is served.
    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(server.state.transport().handshakes().established, 1);
}

#[tokio::test]
async fn when_every_handshake_slot_is_taken_the_oldest_is_shed() {
    let server = start("max_pending_handshakes = 8\nhandshake_timeout = \"1h\"\n").await;
    let mut idle = idle_sockets("127.0.0.2", server.addr, 8).await;
    let mut counts = server.state.transport().subscribe();
    counts.wait_for(|c| c.pending == 8).await.unwrap();

    assert_eq!(
        health_of(&server, ORCHESTRATOR).await.unwrap(),
        ServingStatus::Serving
    );
    let seen = server.state.transport().handshakes();
    assert_eq!((seen.shed, seen.established), (1, 1));
    // The oldest idle socket was the one dropped: it reads end of stream.
    let mut buf = [0u8; 1];
    assert_eq!(idle[0].read(&mut buf).await.unwrap(), 0);
}

fn config_error(limits: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{DEFAULT_ROLES}\n[limits]\n{limits}");
    let path = write_config(dir.path(), &Pki::new("ca"), &[], &extra);
    let error = Config::load(&path).unwrap_err().to_string();
    assert!(!error.contains('\n'), "{error}");
    error.replace(&format!("{}/", dir.path().display()), "DIR/")
}

#[test]
fn transport_limits_refuse_zero_and_name_the_field() {
    for field in [
        "max_pending_handshakes_per_address",
        "max_concurrent_streams",
        "max_buffered_request_bytes",
        "max_calls_per_identity",
        "max_connections_per_identity",
    ] {
        assert_eq!(
            config_error(&format!("{field} = 0\n")),
            format!("DIR/admission.toml: [limits] {field}: must be at least 1")
        );
    }
    for field in [
        "handshake_timeout",
        "request_timeout",
        "idle_timeout",
        "keepalive_interval",
        "keepalive_timeout",
    ] {
        assert_eq!(
            config_error(&format!("{field} = \"0s\"\n")),
            format!("DIR/admission.toml: [limits] {field}: must be longer than zero")
        );
    }
    assert_eq!(
        config_error("request_timeout = \"soon\"\n"),
        "DIR/admission.toml: [limits] request_timeout: invalid duration \"soon\": expected \
         number at 0 at line 33"
    );
    assert_eq!(
        config_error("max_concurrent_streams = -1\n"),
        "DIR/admission.toml: [limits] max_concurrent_streams: invalid value: integer `-1`, \
         expected u32 at line 33"
    );
}

#[test]
fn the_buffer_budget_must_hold_the_largest_request() {
    assert_eq!(
        config_error(&format!(
            "{SMALL_REQUESTS}max_buffered_request_bytes = 67540\n"
        )),
        "DIR/admission.toml: [limits] max_buffered_request_bytes: must be at least 67541, \
         the largest request the other limits allow"
    );
    assert_eq!(
        config_error("max_buffered_request_bytes = 4294967296\n"),
        "DIR/admission.toml: [limits] max_buffered_request_bytes: must be at most 4294967295"
    );
    assert_eq!(
        config_error("credential_max_bytes = 1000000000\n"),
        "DIR/admission.toml: [limits] credential_max_bytes: with spec_kv_max_bytes and \
         max_credentials it allows requests of 8001114117 bytes, more than the 4294967295 a \
         gRPC message can hold"
    );
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!("{DEFAULT_ROLES}\n[limits]\n{SMALL_REQUESTS}max_buffered_request_bytes = 67541\n");
    let config = Config::load(write_config(dir.path(), &Pki::new("ca"), &[], &extra)).unwrap();
    assert_eq!(config.limits.max_request_bytes(), 67_536);
}

#[test]
fn transport_limits_have_safe_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(write_config(
        dir.path(),
        &Pki::new("ca"),
        &[],
        DEFAULT_ROLES,
    ))
    .unwrap()
    .limits;
    assert_eq!(config.handshake_timeout, Duration::from_secs(5));
    assert_eq!(config.max_pending_handshakes, 1024);
    assert_eq!(config.max_pending_handshakes_per_address, 64);
    assert_eq!(config.max_concurrent_streams, 64);
    assert_eq!(config.max_buffered_request_bytes, 128 * 1024 * 1024);
    assert_eq!(config.max_calls_per_identity, 64);
    assert_eq!(config.max_connections_per_identity, 256);
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.keepalive_interval, Duration::from_secs(30));
    assert_eq!(config.keepalive_timeout, Duration::from_secs(10));
    assert_eq!(
        config.max_request_bytes(),
        1024 * 1024 + 8 * 16 * 1024 + 64 * 1024
    );
}
