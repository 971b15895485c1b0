//! Logs to stderr, and OTLP traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (standard
//! `OTEL_*` variables; `OTEL_SERVICE_NAME` names the service). Without the variable no exporter
//! exists and spans cost only the subscriber's filter. The exporter runs on the caller's tokio
//! runtime: call [`init`] inside it.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops the exporter when dropped.
pub struct Guard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
            if let Some(s) = crate::signals::spans::sink() {
                let _ = s.force_flush();
                let _ = s.shutdown();
            }
        }
    }
}

type Filter = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static FILTER: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();

/// The log filter in force (`RUST_LOG` syntax).
pub fn filter() -> Option<String> {
    FILTER.get().and_then(|h| h.with_current(|f| f.to_string()).ok())
}

/// Changes the log filter at run time (`PUT /loglevel`).
pub fn set_filter(directives: &str) -> Result<(), String> {
    let f =
        tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| format!("bad filter {directives:?}: {e}"))?;
    FILTER.get().ok_or("logging is not initialised")?.reload(f).map_err(|e| e.to_string())
}

/// Logs to stderr as text, or as JSON lines (`json`) with the current span's fields (the
/// Operation key and trace ID on the effector's spans).
pub fn init(ansi: bool, json: bool) -> Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let text = (!json).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    let base = tracing_subscriber::registry().with(filter).with(text).with(json);
    #[cfg(feature = "otlp")]
    {
        let (tracer, provider, failed) = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
            None => (None, None, None),
            Some(_) => match otlp() {
                Ok((t, p)) => (Some(t), Some(p), None),
                Err(e) => (None, None, Some(e)),
            },
        };
        let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
        base.with(otel).init();
        if let Some(e) = failed {
            tracing::warn!(error = %e, "OTLP exporter not started; traces are off");
        }
        Guard { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        base.init();
        Guard {}
    }
}

/// The service (from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, default
/// `vworkspace-operator`) and, in a pod, where it runs: the Downward API's `POD_NAME` and
/// `POD_NAMESPACE`, and the StatefulSet the pod name's ordinal belongs to.
#[cfg(feature = "otlp")]
pub fn resource() -> opentelemetry_sdk::Resource {
    use opentelemetry::KeyValue;
    let mut b = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        b = b.with_service_name("vworkspace-operator");
    }
    if let Ok(pod) = std::env::var("POD_NAME") {
        if let Some((set, ordinal)) = pod.rsplit_once('-')
            && ordinal.parse::<u32>().is_ok()
        {
            b = b.with_attribute(KeyValue::new("k8s.statefulset.name", set.to_string()));
        }
        b = b.with_attribute(KeyValue::new("k8s.pod.name", pod));
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE") {
        b = b.with_attribute(KeyValue::new("k8s.namespace.name", ns));
    }
    b.build()
}

/// A batch processor exporting over OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` (or `endpoint`).
#[cfg(feature = "otlp")]
pub fn processor(
    endpoint: Option<&str>,
) -> Result<
    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor<opentelemetry_sdk::runtime::Tokio>,
    String,
> {
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SpanProcessor;
    let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    let exporter = b.build().map_err(|e| e.to_string())?;
    let mut p = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    p.set_resource(&resource());
    Ok(p)
}

#[cfg(feature = "otlp")]
fn otlp() -> Result<(opentelemetry_sdk::trace::SdkTracer, opentelemetry_sdk::trace::SdkTracerProvider), String> {
    use opentelemetry::trace::TracerProvider as _;
    // Operation traces (signals with derived IDs) and the effector's own spans: two processors.
    crate::signals::spans::set_sink(Box::new(processor(None)?));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor(None)?)
        .with_resource(resource())
        .build();
    Ok((provider.tracer("vworkspace-operator"), provider))
}
