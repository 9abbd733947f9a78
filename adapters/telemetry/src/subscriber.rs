//! The process-wide `tracing` subscriber and the optional OTLP trace exporter.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

/// The environment variable whose presence turns OTLP trace export on. Its value is the
/// collector's gRPC endpoint, e.g. `http://localhost:4317`.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The filter used when neither `RUST_LOG` nor the caller gives one.
const DEFAULT_FILTER: &str = "info";

/// Crates whose own events must never become exported spans: the exporter's transport
/// would otherwise trace its own exports, forever.
const EXPORTER_TARGETS: &[&str] = &[
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tower_http",
];

/// Set by the first successful [`init`]; a second call is refused.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Keeps telemetry running; dropping it flushes pending spans to the collector and shuts
/// the tracer provider down (waiting at most five seconds). Keep it alive until the end
/// of `main`, inside the Tokio runtime when OTLP export is on.
#[must_use = "dropping the guard shuts OpenTelemetry export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.exporting())
            .finish()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            shutdown(&provider);
        }
    }
}

/// Shuts the provider down. The gRPC transport runs on the Tokio runtime; when dropped on
/// a worker of a multi-threaded runtime, the wait is moved off the worker so the runtime
/// can still drive the final export.
fn shutdown(provider: &SdkTracerProvider) {
    let run = || {
        if let Err(e) = provider.shutdown() {
            eprintln!("telemetry: flushing spans at shutdown failed: {e}");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run);
        }
        _ => run(),
    }
}

/// Installs the global `tracing` subscriber:
///
/// - a filter: `RUST_LOG` if set (and not empty), else `log_filter`, else `info`;
/// - a human-readable fmt layer writing to stderr;
/// - only when [`OTEL_EXPORTER_OTLP_ENDPOINT`](OTLP_ENDPOINT_VAR) is set and not empty:
///   an OpenTelemetry layer exporting spans over OTLP/gRPC (tonic) through a batch span
///   processor, with `service_name` as the `service.name` resource. The usual
///   `OTEL_EXPORTER_OTLP_*` variables (traces endpoint, headers, timeout, compression)
///   apply. The W3C trace-context propagator is installed globally as well, and the
///   provider is the global tracer provider. Without the variable no OpenTelemetry
///   exporter is created at all.
///
/// Keep the returned guard until the end of `main`.
///
/// # Errors
/// - `init` was already called successfully in this process, or another global
///   subscriber is installed (nothing is changed then);
/// - the filter does not parse;
/// - OTLP export was asked for but the exporter cannot be built: the endpoint is not a
///   URI, it is `https` (no TLS support is compiled in: use a plain-text collector next
///   to the service), or `init` was called outside a Tokio runtime (the gRPC transport
///   needs one).
pub fn init(service_name: &str, log_filter: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let otlp = std::env::var_os(OTLP_ENDPOINT_VAR).is_some_and(|v| !v.is_empty());
    let otlp = otlp.then_some(Endpoint::FromEnvironment);
    init_with(service_name, rust_log.as_deref(), log_filter, otlp)
}

/// Where the OTLP exporter sends spans.
#[derive(Debug, Clone)]
enum Endpoint {
    /// As the `OTEL_EXPORTER_OTLP_*` variables say.
    FromEnvironment,
    /// This URI (tests).
    #[cfg(test)]
    Given(String),
}

/// [`init`] with the environment passed in.
fn init_with(
    service_name: &str,
    rust_log: Option<&str>,
    log_filter: Option<&str>,
    otlp: Option<Endpoint>,
) -> anyhow::Result<TelemetryGuard> {
    if INITIALISED.swap(true, Ordering::SeqCst) {
        bail!("telemetry is already initialised in this process");
    }
    let result = install(service_name, rust_log, log_filter, otlp);
    if result.is_err() {
        INITIALISED.store(false, Ordering::SeqCst);
    }
    result
}

fn install(
    service_name: &str,
    rust_log: Option<&str>,
    log_filter: Option<&str>,
    otlp: Option<Endpoint>,
) -> anyhow::Result<TelemetryGuard> {
    let filter = env_filter(rust_log, log_filter)?;
    let provider = otlp
        .map(|endpoint| tracer_provider(service_name, &endpoint))
        .transpose()?;
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.to_owned()))
            .with_filter(not_exporter_targets())
    });
    let fmt_layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);

    let installed = Registry::default()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    if let Err(e) = installed {
        if let Some(provider) = &provider {
            shutdown(provider);
        }
        return Err(anyhow::Error::new(e).context("installing the global tracing subscriber"));
    }
    if let Some(provider) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(TelemetryGuard { provider })
}

fn env_filter(rust_log: Option<&str>, log_filter: Option<&str>) -> anyhow::Result<EnvFilter> {
    match rust_log.filter(|s| !s.trim().is_empty()) {
        Some(directives) => {
            EnvFilter::try_new(directives).context("RUST_LOG is not a valid filter")
        }
        None => {
            let directives = log_filter
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(DEFAULT_FILTER);
            EnvFilter::try_new(directives)
                .with_context(|| format!("{directives:?} is not a valid log filter"))
        }
    }
}

/// Everything except the exporter's own transport.
fn not_exporter_targets() -> Targets {
    EXPORTER_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |targets, target| targets.with_target(*target, LevelFilter::OFF),
    )
}

/// An OTLP/gRPC span exporter behind a batch processor.
fn tracer_provider(service_name: &str, endpoint: &Endpoint) -> anyhow::Result<SdkTracerProvider> {
    if tokio::runtime::Handle::try_current().is_err() {
        bail!("{OTLP_ENDPOINT_VAR} is set, but telemetry was initialised outside a Tokio runtime");
    }
    let builder = SpanExporter::builder().with_tonic();
    let builder = match endpoint {
        Endpoint::FromEnvironment => builder,
        #[cfg(test)]
        Endpoint::Given(uri) => {
            opentelemetry_otlp::WithExportConfig::with_endpoint(builder, uri.clone())
        }
    };
    let exporter = builder.build().context("building the OTLP span exporter")?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test that installs the global subscriber: a process has one.
    #[test]
    fn init_without_otlp_installs_the_subscriber_once() {
        let guard = init_with("care-telemetry-test", None, Some("warn"), None).unwrap();
        assert!(!guard.exporting());
        assert!(tracing::enabled!(tracing::Level::WARN));
        assert!(!tracing::enabled!(tracing::Level::INFO));
        tracing::warn!("telemetry test event");

        // A second call, through the public function, is an error and changes nothing.
        let again = init("care-telemetry-test", None);
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("already initialised")
        );
        let again = init_with(
            "care-telemetry-test",
            None,
            None,
            Some(Endpoint::Given("http://127.0.0.1:1".into())),
        );
        assert!(again.is_err());
        assert!(!tracing::enabled!(tracing::Level::INFO));
        drop(guard);
    }

    #[test]
    fn filter_precedence() {
        let rust_log = env_filter(Some("debug"), Some("warn")).unwrap();
        assert_eq!(rust_log.max_level_hint(), Some(LevelFilter::DEBUG));
        let given = env_filter(None, Some("warn")).unwrap();
        assert_eq!(given.max_level_hint(), Some(LevelFilter::WARN));
        let blank = env_filter(Some(" "), None).unwrap();
        assert_eq!(blank.max_level_hint(), Some(LevelFilter::INFO));
        assert!(env_filter(None, Some("care=notalevel")).is_err());
    }

    #[test]
    fn otlp_needs_a_tokio_runtime() {
        let err =
            tracer_provider("svc", &Endpoint::Given("http://127.0.0.1:1".into())).unwrap_err();
        assert!(err.to_string().contains("outside a Tokio runtime"));
    }

    #[test]
    fn otlp_rejects_a_bad_endpoint() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        assert!(tracer_provider("svc", &Endpoint::Given("not a uri".into())).is_err());
    }

    /// The OTLP layer sends the recorded span to the collector when the guard is dropped,
    /// and shuts down promptly although the "collector" (a bare TCP listener that hangs
    /// up) answers nothing useful. Uses a scoped subscriber, not the global one.
    #[test]
    fn otlp_layer_exports_on_drop_and_shuts_down() {
        use std::net::TcpListener;
        use std::time::{Duration, Instant};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let collector = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok((connection, _)) = listener.accept() {
                    drop(connection);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let provider = tracer_provider("svc", &Endpoint::Given(endpoint)).unwrap();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("svc"))
                .with_filter(not_exporter_targets());
            let subscriber = Registry::default().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("request", route = "/api/v1/people/{id}");
                let _entered = span.enter();
                tracing::info!("inside");
            });
            let guard = TelemetryGuard {
                provider: Some(provider),
            };
            assert!(guard.exporting());
            let started = Instant::now();
            drop(guard);
            assert!(started.elapsed() < Duration::from_secs(10));
        });
        assert!(collector.join().unwrap(), "the exporter never connected");
    }
}
