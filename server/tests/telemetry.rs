//! OTLP export from the real `admission-server` binary, received by an in-process collector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use admission_client::{AdmissionClient, pb};
use common::{
    dev::{dev_client, dev_command, free_port, spawn_until_served},
    requests::{self, bundle},
};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const BIN: &str = env!("CARGO_BIN_EXE_admission-server");

/// How often the tests look at what arrived, and how many looks before giving up (30 s).
const POLL: Duration = Duration::from_millis(100);
const POLLS: usize = 300;

/// What the collector received: resource `service.name` and span per exported span, and the
/// names of the exported metrics.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            for scope in resource_metrics.scope_metrics {
                metrics.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref() {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }) => Some(value.clone()),
            _ => None,
        })
}

/// Serves the collector on a loopback port it picks; returns the port.
async fn start_collector(collector: Collector) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    port
}

/// Starts `admission-server dev` with `otel_env` and waits until it has printed its
/// instructions, which it does once the listener is bound.
async fn start_dev(dir: &Path, port: u16, otel_env: &[(&str, &str)]) -> tokio::process::Child {
    let mut command = dev_command(Path::new(BIN), dir, port);
    command.stderr(Stdio::piped());
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        command.env_remove(var);
    }
    command.envs(otel_env.iter().copied());
    spawn_until_served(&mut command).await.0
}

async fn connect(dir: &Path, port: u16) -> AdmissionClient {
    dev_client(dir, port, "orchestrator").await
}

fn dev_deploy() -> pb::DeployRequest {
    pb::DeployRequest {
        config_bundle: Some(bundle("b1", &format!("sha256:{}", "0".repeat(64)), "dev")),
        initiated_by: "alice@dev.example".into(),
        ..requests::dev_deploy("dev", "telemetry-1")
    }
}

/// Sends SIGTERM, the signal a deploy system stops the server with.
fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("the server is still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls `found` until it returns something, for at most [`POLLS`] × [`POLL`].
async fn eventually<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..POLLS {
        if let Some(value) = found() {
            return Some(value);
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

#[tokio::test]
async fn admit_is_exported_as_a_span_and_metrics() {
    let collector = Collector::default();
    let collector_port = start_collector(collector.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{collector_port}");
    let server = start_dev(
        &dir,
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
    )
    .await;

    let client = connect(&dir, port).await;
    let admission = client.admit_deploy(dev_deploy()).await.unwrap();
    assert!(!admission.decision_id.is_empty());

    let span = eventually(|| {
        let spans = collector.spans.lock().unwrap();
        spans
            .iter()
            .find(|(_, span)| span.name == "DeployAdmission/Admit")
            .cloned()
    })
    .await;
    let Some((service, span)) = span else {
        let names: Vec<_> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.name.clone())
            .collect();
        let metrics = collector.metrics.lock().unwrap().clone();
        terminate(&server);
        let output = server.wait_with_output().await.unwrap();
        panic!(
            "no admit span; spans {names:?}, metrics {metrics:?}, server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    assert_eq!(service, "admission-server");
    let attribute = |key| string_attribute(&span.attributes, key);
    assert_eq!(attribute("rpc").as_deref(), Some("DeployAdmission/Admit"));
    assert_eq!(attribute("environment").as_deref(), Some("dev/app/dev"));
    assert_eq!(attribute("outcome").as_deref(), Some("admitted"));

    let metrics = eventually(|| {
        let metrics = collector.metrics.lock().unwrap();
        let names = ["admission.decisions", "admission.decision.duration"];
        names
            .iter()
            .all(|name| metrics.iter().any(|m| m == name))
            .then(|| metrics.clone())
    })
    .await;
    assert!(
        metrics.is_some(),
        "the collector received both decision metrics"
    );

    terminate(&server);
    let output = server.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn an_unreachable_collector_does_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let server = start_dev(
        &dir,
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &closed),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ],
    )
    .await;

    let client = connect(&dir, port).await;
    let health = client
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    client.admit_deploy(dev_deploy()).await.unwrap();

    terminate(&server);
    let output = server.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn an_unusable_otlp_configuration_does_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    // The protocol is supported; the endpoint is not a URL the exporter can use.
    let server = start_dev(
        &dir,
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;

    let client = connect(&dir, port).await;
    let health = client
        .health()
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    terminate(&server);
    let output = server.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("otlp"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("telemetry is not exported"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unsupported_otlp_protocol_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
    ] {
        let output = std::process::Command::new(BIN)
            .args(["dev", "--dir"])
            .arg(tmp.path().join("dev"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(var, value)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{var}");
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            format!(
                "admission-server: {var}={value}: unsupported OTLP protocol (expected grpc or \
                 http/protobuf)\n"
            )
        );
    }
}

/// The trace ids of the spans named `DeployAdmission/Admit` an OTLP/HTTP receiver was sent.
type HttpSpans = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A tiny OTLP/HTTP receiver: `POST /v1/traces` with a protobuf body; returns its port.
async fn start_http_collector(spans: HttpSpans) -> u16 {
    use axum::routing::post;
    use prost::Message as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receive = move |body: axum::body::Bytes| {
        let spans = spans.clone();
        async move {
            let request = ExportTraceServiceRequest::decode(body).unwrap();
            let mut spans = spans.lock().unwrap();
            for span in request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .filter(|span| span.name == "DeployAdmission/Admit")
            {
                spans.push((span.trace_id.clone(), span.parent_span_id.clone()));
            }
            let answer = ExportTraceServiceResponse::default().encode_to_vec();
            (
                [(http::header::CONTENT_TYPE, "application/x-protobuf")],
                answer,
            )
        }
    };
    let router = axum::Router::new().route("/v1/traces", post(receive));
    tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    port
}

#[tokio::test]
async fn http_protobuf_export_continues_the_callers_trace() {
    let spans = HttpSpans::default();
    let collector_port = start_http_collector(spans.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{collector_port}");
    let server = start_dev(
        &dir,
        port,
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{endpoint}/v1/traces"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let client = connect(&dir, port).await;
    let mut request = Request::new(dev_deploy());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    client.deploy().admit(request).await.unwrap();

    let seen = eventually(|| spans.lock().unwrap().first().cloned()).await;
    terminate(&server);
    let output = server.wait_with_output().await.unwrap();
    let Some((seen_trace, seen_parent)) = seen else {
        panic!(
            "no admit span over http; server: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    assert_eq!(hex(&seen_trace), trace_id);
    assert_eq!(hex(&seen_parent), parent_id);
    assert_eq!(output.status.code(), Some(0));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
