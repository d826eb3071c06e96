//! Logs and traces. Logs go to stderr (JSON lines with `PODIUM_LOG_FORMAT=json`). Traces go to
//! an OpenTelemetry collector over OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nowhere otherwise. The W3C trace context
//! travels in each record's `traceparent` header, so one answer is one trace from the command
//! API's request to the projector's fold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The record header and HTTP header that carry the trace context.
pub const TRACEPARENT: &str = "traceparent";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: per-record spans cost nothing when they are not.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Flushes the spans still buffered when dropped, at the end of `main`.
#[derive(Debug, Default)]
#[must_use = "hold it until the process ends, so the last spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs logging and, when OTLP is configured, trace export for `service` (unless
/// `OTEL_SERVICE_NAME` names it otherwise). `RUST_LOG` filters logs, defaulting to `info`.
/// A second call (tests build several services in one process) changes nothing.
pub fn init(service: &'static str) -> Telemetry {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PODIUM_LOG_FORMAT").is_ok_and(|f| f == "json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        // Colours only for a terminal: a log file or journald would keep the escape codes.
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    };
    let mut telemetry = Telemetry::default();
    let traces = if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.into());
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(name)
                            .build(),
                    )
                    .build();
                let tracer = provider.tracer(service);
                telemetry.provider = Some(provider);
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(filter()),
                )
            }
            Err(e) => {
                eprintln!("OTLP trace export is configured but cannot start: {e}");
                None
            }
        }
    } else {
        None
    };
    let exporting_now = traces.is_some();
    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok()
    {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(exporting_now, Ordering::Relaxed);
    } else {
        // Someone installed logging first: keep theirs, export nothing from here.
        telemetry.provider = None;
    }
    telemetry
}

/// The W3C `traceparent` of the current span, when spans are exported.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The W3C `traceparent` of `span`, when spans are exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace context in `traceparent`, a record's or a request's.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// Links `span` to the trace context in `traceparent`: a batch span to each of its records.
pub fn link_trace(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt as _;
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let linked = TraceContextPropagator::new().extract(&carrier);
    let context = linked.span().span_context().clone();
    if context.is_valid() {
        span.add_link(context);
    }
}

/// Records the span's trace and span ids in its `trace_id` and `span_id` fields, so every log
/// line inside it carries them (the JSON logs show the current span's fields).
pub fn record_ids(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    if !exporting() {
        return;
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        let _ = span.record("trace_id", ids.trace_id().to_string());
        let _ = span.record("span_id", ids.span_id().to_string());
    }
}

/// Request spans at `info`, so they reach the trace exporter, named by method and route
/// template, and children of the caller's trace when the request carries a `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", axum::extract::MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            method = %request.method(),
            uri = %request.uri().path(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        // Only the exporter reads the name; the logs have the method and path already.
        if exporting() {
            let _ = span.record("otel.name", format!("{} {route}", request.method()));
        }
        if let Some(parent) = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
        {
            continue_trace(&span, parent);
        }
        record_ids(&span);
        span
    }
}

/// The APIs' request tracing layer.
pub fn request_tracing() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    RequestSpan,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(RequestSpan)
}
