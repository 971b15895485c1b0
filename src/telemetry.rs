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
        }
    }
}

pub fn init(ansi: bool) -> Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
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
        tracing_subscriber::registry().with(filter).with(fmt).with(otel).init();
        if let Some(e) = failed {
            tracing::warn!(error = %e, "OTLP exporter not started; traces are off");
        }
        Guard { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        tracing_subscriber::registry().with(filter).with(fmt).init();
        Guard {}
    }
}

#[cfg(feature = "otlp")]
fn otlp() -> Result<(opentelemetry_sdk::trace::SdkTracer, opentelemetry_sdk::trace::SdkTracerProvider), String> {
    use opentelemetry::trace::TracerProvider as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build().map_err(|e| e.to_string())?;
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(opentelemetry_sdk::Resource::builder().build())
        .build();
    Ok((provider.tracer("vworkspace-operator"), provider))
}
