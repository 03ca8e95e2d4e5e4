//! The OTLP exporters for the protocol the environment names: `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! or the per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`, `grpc` or
//! `http/protobuf` (the SDK's endpoint, header and timeout variables apply to both).

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response, hyper::HyperClient};
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _,
};

/// How long one HTTP export may take at most.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport one signal is exported over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (hyper, plain `http://`).
    HttpProtobuf,
}

/// Sends each export on the server's tokio runtime: the SDK's batch processors export from
/// threads of their own, and hyper needs the runtime's reactor and timers.
struct OnRuntime {
    client: Arc<HyperClient>,
    runtime: tokio::runtime::Handle,
}

// === impl Transport ===

impl Transport {
    /// The transport `signal_var` (else `OTEL_EXPORTER_OTLP_PROTOCOL`) names; gRPC when
    /// neither is set. Any other value is refused, naming the variable.
    pub(super) fn from_vars(
        signal_var: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        for name in [signal_var, "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(protocol) = var(name) {
                return match protocol.as_str() {
                    "grpc" => Ok(Self::Grpc),
                    "http/protobuf" => Ok(Self::HttpProtobuf),
                    other => Err(format!(
                        "{name}={other}: unsupported OTLP protocol (expected grpc or http/protobuf)"
                    )),
                };
            }
        }
        Ok(Self::Grpc)
    }
}

/// The span exporter over `transport`.
pub(super) fn span_exporter(transport: Transport) -> Result<SpanExporter, String> {
    let built = match transport {
        Transport::Grpc => SpanExporter::builder().with_tonic().build(),
        Transport::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(on_runtime()?)
            .build(),
    };
    built.map_err(|error| format!("traces: {error}"))
}

/// The metric exporter over `transport`.
pub(super) fn metric_exporter(transport: Transport) -> Result<MetricExporter, String> {
    let built = match transport {
        Transport::Grpc => MetricExporter::builder().with_tonic().build(),
        Transport::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(on_runtime()?)
            .build(),
    };
    built.map_err(|error| format!("metrics: {error}"))
}

fn on_runtime() -> Result<OnRuntime, String> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the http exporter needs the async runtime, which is not running")?;
    Ok(OnRuntime {
        client: Arc::new(HyperClient::with_default_connector(HTTP_TIMEOUT, None)),
        runtime,
    })
}

// === impl OnRuntime ===

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_signal_variable_wins_and_unknown_protocols_are_refused() {
        let traces = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
        let general = "OTEL_EXPORTER_OTLP_PROTOCOL";
        assert_eq!(Transport::from_vars(traces, vars(&[])), Ok(Transport::Grpc));
        assert_eq!(
            Transport::from_vars(traces, vars(&[(general, "http/protobuf")])),
            Ok(Transport::HttpProtobuf)
        );
        assert_eq!(
            Transport::from_vars(
                traces,
                vars(&[(general, "http/protobuf"), (traces, "grpc")])
            ),
            Ok(Transport::Grpc)
        );
        assert_eq!(
            Transport::from_vars(traces, vars(&[(general, "http/json")])),
            Err(
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/json: unsupported OTLP protocol (expected \
                 grpc or http/protobuf)"
                    .to_owned()
            )
        );
    }
}
