use super::*;

fn body(bytes: &[u8]) -> Body {
    Body::new(Full::new(Bytes::copy_from_slice(bytes)))
}

fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn frames_are_read_whole_and_bounded() {
    let ok = read_frame(body(&framed(0, b"abc")), 8).await.unwrap();
    assert_eq!(ok, (false, Bytes::from_static(b"abc")));
    assert_eq!(
        read_frame(body(b""), 8).await.unwrap_err(),
        BodyError::Truncated
    );
    assert_eq!(
        read_frame(body(&framed(0, b"abc")[..6]), 8)
            .await
            .unwrap_err(),
        BodyError::Truncated
    );
    let mut two = framed(0, b"abc");
    two.extend(framed(0, b"d"));
    assert_eq!(
        read_frame(body(&two), 8).await.unwrap_err(),
        BodyError::Trailing
    );
    assert_eq!(
        read_frame(body(&framed(0, &[0; 9])), 8).await.unwrap_err(),
        BodyError::TooLarge { max: 8, actual: 9 }
    );
}

#[test]
fn gzip_is_decompressed_within_the_limit() {
    let mut headers = http::HeaderMap::new();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &[b'a'; 1000]).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert_eq!(
        decompress(&headers, &gzipped, 2000),
        Err(BodyError::MissingEncoding)
    );
    headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    assert_eq!(decompress(&headers, &gzipped, 2000).unwrap().len(), 1000);
    assert_eq!(
        decompress(&headers, &gzipped, 999),
        Err(BodyError::TooLarge {
            max: 999,
            actual: 1000
        })
    );
    assert_eq!(
        decompress(&headers, b"not gzip", 2000),
        Err(BodyError::BadGzip)
    );
    headers.insert("grpc-encoding", HeaderValue::from_static("zstd"));
    assert_eq!(
        decompress(&headers, &gzipped, 2000),
        Err(BodyError::UnsupportedEncoding("zstd".into()))
    );
}

#[test]
fn every_api_path_names_its_rpc() {
    for rpc in [
        Rpc::DeployAdmit,
        Rpc::DeployPreview,
        Rpc::ReplayAdmit,
        Rpc::ReplayPreview,
        Rpc::ApprovalsCreate,
        Rpc::ApprovalsDecide,
        Rpc::ApprovalsGet,
        Rpc::ApprovalsListEligible,
        Rpc::ApprovalsRevoke,
        Rpc::AuditList,
        Rpc::AuditVerify,
        Rpc::AuditGetCheckpoint,
        Rpc::AuditProveInclusion,
        Rpc::AuditProveConsistency,
    ] {
        let path = format!("/byteor.admission.v1.{}", rpc.name().replace('.', "/"));
        assert_eq!(Rpc::from_path(&path), Some(rpc), "{path}");
        assert_eq!(rpc.check_decodes(&[]), Ok(()));
        assert!(rpc.check_decodes(b"\xff").is_err());
    }
    assert_eq!(Rpc::from_path("/grpc.health.v1.Health/Check"), None);
}
