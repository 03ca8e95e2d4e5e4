//! Logs (`tracing`, text or JSON, filtered by `RUST_LOG`) and, when the standard OpenTelemetry
//! variables ask for it, OTLP export of traces and metrics (SPEC §8), over gRPC or
//! HTTP/protobuf as `OTEL_EXPORTER_OTLP_PROTOCOL` (or its per-signal variants) says.
//!
//! Export is switched on by `OTEL_EXPORTER_OTLP_ENDPOINT` (both signals) or the per-signal
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, and off by
//! `OTEL_SDK_DISABLED=true` or `OTEL_{TRACES,METRICS}_EXPORTER=none`. The SDK itself reads the
//! rest (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_TRACES_SAMPLER`, …). An unsupported protocol is a configuration error; otherwise
//! telemetry never stops admissions: a configuration the exporter cannot use is logged once
//! and the server runs without export.

use std::str::FromStr;

use opentelemetry::{Key, global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::{EnvFilter, filter::filter_fn, fmt, prelude::*};

use self::otlp::Transport;
pub use crate::SERVICE_NAME;

mod otlp;

/// Crates whose own spans stay out of the exported traces: the exporter speaks gRPC itself, and
/// exporting the export would feed back into the next batch.
const UNEXPORTED_TARGETS: [&str; 6] = ["h2", "hyper", "tonic", "tower", "opentelemetry", "rustls"];

/// The log filter without `RUST_LOG`: the SDK announces its setup at `info`, which says nothing
/// the server's own "exporting telemetry over otlp" line does not.
const DEFAULT_LOGS: &str = "info,opentelemetry=warn";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps the OTLP providers alive; dropping it flushes what is buffered and shuts them down.
///
/// Drop it outside async code while the tokio runtime it was created in is still running: the
/// final export blocks this thread and runs on the runtime's workers.
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops OTLP export"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

/// Which signals the environment asks to export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Signals {
    traces: bool,
    metrics: bool,
}

// === impl LogFormat ===

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

// === impl TelemetryGuard ===

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(Err(error)) = self.tracer_provider.take().map(|p| p.shutdown()) {
            tracing::warn!(%error, "flushing traces at shutdown failed");
        }
        if let Some(Err(error)) = self.meter_provider.take().map(|p| p.shutdown()) {
            tracing::warn!(%error, "flushing metrics at shutdown failed");
        }
    }
}

// === impl Signals ===

impl Signals {
    /// Reads the standard variables that switch export on or off.
    fn from_env() -> Self {
        Self::from_vars(env_value)
    }

    /// [`Signals::from_env`] over `var`, which returns a set, non-empty variable's value.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let is = |name: &str, value: &str| var(name).is_some_and(|v| v.eq_ignore_ascii_case(value));
        if is("OTEL_SDK_DISABLED", "true") {
            return Self::default();
        }
        let both = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let wanted = |endpoint: &str, exporter: &str| {
            (both || var(endpoint).is_some()) && !is(exporter, "none")
        };
        Self {
            traces: wanted("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"),
            metrics: wanted(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_METRICS_EXPORTER",
            ),
        }
    }

    fn any(self) -> bool {
        self.traces || self.metrics
    }
}

/// Installs logging only: stderr, `RUST_LOG` filter (default `info`). For commands that do not
/// serve and so have nothing to export.
pub fn init_logs(format: LogFormat) {
    install_subscriber(format, None);
}

/// Installs logging and, when the environment asks for it, OTLP export of traces and metrics.
/// Fails (with logging installed) only when a requested OTLP protocol is not supported.
///
/// Call it inside the tokio runtime that serves: the exporters send on it. Keep the returned
/// guard until the server has returned.
pub fn init(format: LogFormat) -> Result<TelemetryGuard, String> {
    let signals = Signals::from_env();
    if !signals.any() {
        install_subscriber(format, None);
        return Ok(TelemetryGuard::default());
    }
    let transports = match transports(signals, env_value) {
        Ok(transports) => transports,
        Err(problem) => {
            install_subscriber(format, None);
            return Err(problem);
        }
    };
    match build_providers(signals, transports) {
        Ok(guard) => {
            install_subscriber(format, guard.tracer_provider.as_ref());
            if let Some(provider) = &guard.tracer_provider {
                global::set_tracer_provider(provider.clone());
            }
            if let Some(provider) = &guard.meter_provider {
                global::set_meter_provider(provider.clone());
            }
            tracing::info!(
                traces = signals.traces,
                metrics = signals.metrics,
                "exporting telemetry over otlp"
            );
            Ok(guard)
        }
        Err(error) => {
            install_subscriber(format, None);
            tracing::warn!(%error, "otlp export is not configured correctly; telemetry is not exported");
            Ok(TelemetryGuard::default())
        }
    }
}

/// The transport of traces and of metrics, checked only for the signals exported.
fn transports(
    signals: Signals,
    var: impl Fn(&str) -> Option<String> + Copy,
) -> Result<(Transport, Transport), String> {
    let of = |wanted: bool, name: &str| {
        if wanted {
            Transport::from_vars(name, var)
        } else {
            Ok(Transport::Grpc)
        }
    };
    Ok((
        of(signals.traces, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?,
        of(signals.metrics, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?,
    ))
}

/// The providers for the requested signals, or why the configuration cannot be used.
fn build_providers(
    signals: Signals,
    (traces, metrics): (Transport, Transport),
) -> Result<TelemetryGuard, String> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err("the exporters need the async runtime, which is not running".to_owned());
    }
    let resource = resource();
    let mut guard = TelemetryGuard::default();
    if signals.traces {
        let exporter = otlp::span_exporter(traces)?;
        guard.tracer_provider = Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone())
                .build(),
        );
    }
    if signals.metrics {
        let exporter = otlp::metric_exporter(metrics)?;
        guard.meter_provider = Some(
            SdkMeterProvider::builder()
                .with_periodic_exporter(exporter)
                .with_resource(resource)
                .build(),
        );
    }
    Ok(guard)
}

/// The SDK's resource (service name and attributes from the environment), named
/// [`SERVICE_NAME`] when the environment does not name it.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name(SERVICE_NAME).build()
    }
}

/// Installs the global subscriber: log lines filtered by `RUST_LOG` (default `info`) and, with
/// `tracer_provider`, `info` and above spans exported whatever `RUST_LOG` says, so quieting the
/// logs does not drop the traces.
fn install_subscriber(format: LogFormat, tracer_provider: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOGS));
    let logs = match format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let export = tracer_provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(filter_fn(|metadata| {
                let target = metadata.target();
                *metadata.level() <= Level::INFO
                    && !UNEXPORTED_TARGETS
                        .iter()
                        .any(|name| target.starts_with(name))
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(export)
        .try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}

/// A variable's value, treating unset, empty and non-UTF-8 alike.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(vars: &[(&str, &str)]) -> Signals {
        Signals::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn endpoints_switch_signals_on_and_the_standard_switches_off() {
        let endpoint = "http://127.0.0.1:4317";
        let both = Signals {
            traces: true,
            metrics: true,
        };
        let traces = Signals {
            traces: true,
            metrics: false,
        };
        let metrics = Signals {
            traces: false,
            metrics: true,
        };
        let rows: [(&[(&str, &str)], Signals); 7] = [
            (&[], Signals::default()),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)], both),
            (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)], traces),
            (
                &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint)],
                metrics,
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_SDK_DISABLED", "TRUE"),
                ],
                Signals::default(),
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_SDK_DISABLED", "false"),
                ],
                both,
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_METRICS_EXPORTER", "none"),
                ],
                traces,
            ),
        ];
        for (vars, expected) in rows {
            assert_eq!(signals(vars), expected, "{vars:?}");
        }
    }

    #[test]
    fn log_format_parses_text_and_json_only() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
