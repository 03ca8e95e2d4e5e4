use rcgen::{CertificateParams, DnType, KeyPair, SanType};

use super::*;

fn cert_der(params: CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn identity_prefers_uri_then_dns_then_common_name() {
    let mut params = CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::URI("spiffe://acme/ci".try_into().unwrap()));
    let der = cert_der(params);
    let caller = Caller::from_certificate(&der).unwrap();
    assert_eq!(caller.identity.as_str(), "spiffe://acme/ci");
    assert_eq!(caller.cert_sha256, hex::encode(Sha256::digest(&der)));
    assert_eq!(caller.cert_sha256.len(), 64);

    let params = CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
    let caller = Caller::from_certificate(&cert_der(params)).unwrap();
    assert_eq!(caller.identity.as_str(), "host.example");

    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "build-agent");
    let caller = Caller::from_certificate(&cert_der(params)).unwrap();
    assert_eq!(caller.identity.as_str(), "build-agent");
}

fn settings(total: usize, per_address: usize) -> AcceptSettings {
    AcceptSettings {
        handshake_timeout: Duration::from_secs(5),
        max_pending_handshakes: total,
        max_pending_handshakes_per_address: per_address,
        idle_timeout: Duration::from_secs(300),
        max_connections_per_identity: 256,
    }
}

#[test]
fn a_full_registry_sheds_its_oldest_handshake() {
    let mut pending = PendingHandshakes::new(&settings(2, 10));
    let a: IpAddr = "127.0.0.2".parse().unwrap();
    let b: IpAddr = "127.0.0.3".parse().unwrap();
    let (first, mut first_cancelled, shed) = pending.admit(a).unwrap();
    assert!(!shed);
    let (_, _, shed) = pending.admit(a).unwrap();
    assert!(!shed);
    let (_, _, shed) = pending.admit(b).unwrap();
    assert!(shed);
    assert_eq!(pending.len(), 2);
    // The shed task sees its cancellation, and finishing it later changes nothing.
    assert_eq!(
        first_cancelled.try_recv(),
        Err(oneshot::error::TryRecvError::Closed)
    );
    assert!(!pending.finish(first));
    assert_eq!(pending.per_address[&a], 1);
}

#[test]
fn an_address_at_its_cap_is_refused_while_others_are_admitted() {
    let mut pending = PendingHandshakes::new(&settings(10, 2));
    let a: IpAddr = "127.0.0.2".parse().unwrap();
    let (first, _, _) = pending.admit(a).unwrap();
    pending.admit(a).unwrap();
    assert!(pending.admit(a).is_none());
    assert!(pending.admit("127.0.0.1".parse().unwrap()).is_some());
    assert!(pending.finish(first));
    assert!(pending.admit(a).is_some());
}

#[test]
fn an_identity_is_held_to_its_cap() {
    let counts = Arc::new(PerIdentity::default());
    let ci = Identity::new("spiffe://acme/ci");
    let first = counts.begin(&ci, 2).unwrap();
    let _second = counts.begin(&ci, 2).unwrap();
    assert!(counts.begin(&ci, 2).is_none());
    assert!(
        counts
            .begin(&Identity::new("spiffe://acme/other"), 2)
            .is_some()
    );
    drop(first);
    assert_eq!(counts.count(&ci), 1);
    assert!(counts.begin(&ci, 2).is_some());
}

#[test]
fn certificate_without_a_name_has_no_caller() {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    assert_eq!(Caller::from_certificate(&cert_der(params)), None);
}
