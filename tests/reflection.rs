//! gRPC reflection over real mTLS in both versions tools speak (`grpc.reflection.v1` and the
//! older `v1alpha` that grpcurl 1.8 and many IDEs use): each lists every service, and each
//! serves the descriptors of the `google.rpc` error details that rejections carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{NOBODY, TestServer};
use prost::Message;
use prost_types::FileDescriptorProto;
use tonic_reflection::pb::{v1, v1alpha};

/// Every service the server answers, sorted.
const SERVICES: &[&str] = &[
    "byteor.admission.v1.Approvals",
    "byteor.admission.v1.Audit",
    "byteor.admission.v1.DeployAdmission",
    "byteor.admission.v1.ReplayAdmission",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[tokio::test]
async fn v1_lists_every_service_and_serves_error_details() {
    let server = TestServer::start().await;
    let client = server.client(NOBODY).await;
    let mut reflection =
        v1::server_reflection_client::ServerReflectionClient::new(client.channel());
    let ask = |message_request| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message_request),
    };
    use v1::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let requests = [
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "google.rpc.ErrorInfo".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "google.rpc.RetryInfo".into(),
        )),
    ];
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        answers.push(response.message_response.unwrap());
    }
    let [listed, error_info, retry_info] = <[_; 3]>::try_from(answers).unwrap();
    let MessageResponse::ListServicesResponse(list) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    assert_eq!(sorted(list.service.into_iter().map(|s| s.name)), SERVICES);
    for (answer, message) in [(error_info, "ErrorInfo"), (retry_info, "RetryInfo")] {
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            panic!("expected descriptors for {message}, got {answer:?}");
        };
        assert_defines(&files.file_descriptor_proto, message);
    }
}

#[tokio::test]
async fn v1alpha_lists_every_service_and_serves_error_details() {
    let server = TestServer::start().await;
    let client = server.client(NOBODY).await;
    let mut reflection =
        v1alpha::server_reflection_client::ServerReflectionClient::new(client.channel());
    let ask = |message_request| v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message_request),
    };
    use v1alpha::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let requests = [
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "google.rpc.ErrorInfo".into(),
        )),
    ];
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        answers.push(response.message_response.unwrap());
    }
    let [listed, error_info] = <[_; 2]>::try_from(answers).unwrap();
    let MessageResponse::ListServicesResponse(list) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    assert_eq!(sorted(list.service.into_iter().map(|s| s.name)), SERVICES);
    let MessageResponse::FileDescriptorResponse(files) = error_info else {
        panic!("expected descriptors for ErrorInfo, got {error_info:?}");
    };
    assert_defines(&files.file_descriptor_proto, "ErrorInfo");
}

fn sorted(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names
}

/// The encoded files include `google/rpc/error_details.proto` defining `google.rpc.<message>`.
fn assert_defines(encoded: &[Vec<u8>], message: &str) {
    let files: Vec<FileDescriptorProto> = encoded
        .iter()
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let details = files
        .iter()
        .find(|f| f.name() == "google/rpc/error_details.proto")
        .unwrap_or_else(|| panic!("no error_details.proto among {:?}", names(&files)));
    assert_eq!(details.package(), "google.rpc");
    assert!(
        details.message_type.iter().any(|m| m.name() == message),
        "google.rpc.{message} is not defined"
    );
}

fn names(files: &[FileDescriptorProto]) -> Vec<&str> {
    files.iter().map(|f| f.name()).collect()
}
