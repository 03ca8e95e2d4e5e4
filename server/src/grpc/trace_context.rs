//! W3C Trace Context on incoming calls: the caller's `traceparent` (and `tracestate`) in the
//! gRPC metadata, so an orchestrator's trace continues through the admission span.

use opentelemetry::{
    Context,
    propagation::{Extractor, TextMapPropagator as _},
    trace::TraceContextExt as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataMap};

/// Reads ASCII metadata entries as propagation headers.
struct MetadataExtractor<'a>(&'a MetadataMap);

/// The caller's span context, when the call carries a valid `traceparent`.
pub fn caller_context(metadata: &MetadataMap) -> Option<Context> {
    let context = TraceContextPropagator::new()
        .extract_with_context(&Context::new(), &MetadataExtractor(metadata));
    context.span().span_context().is_valid().then_some(context)
}

// === impl MetadataExtractor ===

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                KeyRef::Ascii(key) => Some(key.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;

    use super::*;

    #[test]
    fn a_valid_traceparent_becomes_the_parent_and_garbage_is_ignored() {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        let context = caller_context(&metadata);
        let trace_id = context.map(|c| c.span().span_context().trace_id());
        assert_eq!(
            trace_id,
            Some(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID))
        );
        metadata.insert(
            "traceparent",
            "not-a-trace".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(caller_context(&metadata).is_none());
        assert!(caller_context(&MetadataMap::new()).is_none());
    }
}
