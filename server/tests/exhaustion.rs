//! The real `admission-server` binary under a memory-exhaustion attack: a client certificate
//! with no role opens many HTTP/2 streams, each claiming a large message, sends a megabyte of
//! it and leaves the stream open. The server's resident memory stays bounded while a
//! legitimate caller keeps being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{net::SocketAddr, path::Path, time::SystemTime};

use admission_contract::SpecHash;
use admission_server::runtime::config::Limits;
use bytes::Bytes;
use common::{
    dev::{dev_client, dev_command, free_port, spawn_until_served},
    raw_h2::{self, OpenCall, RawH2},
    requests::dev_deploy,
};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");
const ADMIT: &str = "/byteor.admission.v1.DeployAdmission/Admit";
const ATTACKER: &str = "spiffe://dev.local/attacker";

/// The attack as reported: 8 connections of 250 streams, each sending 1 MiB.
const CONNECTIONS: usize = 8;
const STREAMS_PER_CONNECTION: usize = 250;
const SENT_PER_STREAM: usize = 1024 * 1024;

/// The bound on the server's peak resident memory; unbounded, the attack took it past 2 GB.
const RSS_BOUND_BYTES: u64 = 300 * 1024 * 1024;

/// Starts `admission-server dev` (default limits) and waits until it serves.
async fn start_dev(dir: &Path, port: u16) -> tokio::process::Child {
    spawn_until_served(&mut dev_command(Path::new(BIN), dir, port))
        .await
        .0
}

/// `VmRSS` or `VmHWM` (peak) of process `pid`, in bytes.
fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// A certificate for `identity` from the dev CA: it chains, but holds no role.
fn no_role_certificate(dir: &Path, identity: &str) -> (String, String) {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    // The dev CA's subject, so the leaf chains to `ca.pem`.
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "ByteOr admission dev CA");
    let issuer = Issuer::new(ca, ca_key);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, identity);
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// One attacking connection: every stream claims `claimed` bytes, sends a megabyte of them and
/// stays open; returns the streams once each was read by the server or answered.
async fn attack_connection(
    addr: SocketAddr,
    ca: String,
    (cert, key): (String, String),
    claimed: u32,
) -> (RawH2, Vec<OpenCall>) {
    let raw = RawH2::connect(addr, &ca, &cert, &key).await;
    let payload = Bytes::from(vec![0x42u8; SENT_PER_STREAM]);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..STREAMS_PER_CONNECTION {
        let send = raw.send.clone();
        let payload = payload.clone();
        calls.spawn(async move { raw_h2::open_call(send, ADMIT, claimed, &payload).await });
    }
    let calls = calls.join_all().await;
    (raw, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_claiming_large_messages_cannot_exhaust_server_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    let server = start_dev(&dir, port).await;
    let pid = server.id().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let legitimate = dev_client(&dir, port, "orchestrator").await;
    let baseline = memory_of(pid, "VmRSS");

    // Half the connections claim 4 MiB per message as reported; half claim the largest
    // message the limits accept, so every claim passes the decoder's size check.
    let largest = u32::try_from(Limits::default().max_request_bytes()).unwrap();
    let attacker = no_role_certificate(&dir, ATTACKER);
    let mut connections = tokio::task::JoinSet::new();
    for index in 0..CONNECTIONS {
        let claimed = if index % 2 == 0 {
            4 * 1024 * 1024
        } else {
            largest
        };
        connections.spawn(attack_connection(
            addr,
            ca.clone(),
            attacker.clone(),
            claimed,
        ));
    }
    let attack = connections.join_all().await;

    // Every stream has been read or answered, and those held are still open.
    let during = memory_of(pid, "VmRSS");
    let health = legitimate
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    let request_id = format!(
        "during-attack-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let admitted = legitimate
        .admit_deploy(dev_deploy("dev", &request_id))
        .await
        .unwrap();
    assert_eq!(admitted.spec_hash, SpecHash::of_bytes(b"a=1\n").to_string());
    let peak = memory_of(pid, "VmHWM");
    println!(
        "server memory: {baseline} bytes before, {during} during the attack, peak {peak} \
         (bound {RSS_BOUND_BYTES})"
    );
    assert!(
        peak < RSS_BOUND_BYTES,
        "server peak RSS {peak} bytes is over {RSS_BOUND_BYTES}"
    );
    let streams: usize = attack.iter().map(|(_, calls)| calls.len()).sum();
    assert_eq!(streams, CONNECTIONS * STREAMS_PER_CONNECTION);
    drop(attack);
    drop(server);
}
