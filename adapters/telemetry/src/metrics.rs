//! The Prometheus registry and the service's metrics.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::route::{is_template, route_template};

/// The `Content-Type` of [`Metrics::render`]'s output: Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of `http_request_duration_seconds`, in seconds: 100 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Refusal reasons known in advance: their counters are exported at 0 from the start,
/// so rates and alerts work before the first refusal.
const KNOWN_REFUSALS: &[&str] = &[
    "role_not_permitted",
    "opted_out",
    "permission_required",
    "network_refused",
    "unauthenticated",
    "rate_limited",
];

/// HTTP methods kept as label values; anything else is counted as `OTHER`.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The service's Prometheus metrics, in a registry of their own.
///
/// Cheap to clone (one `Arc`); every clone records into the same registry. Metrics:
///
/// | name | type | labels |
/// | --- | --- | --- |
/// | `http_requests_total` | counter | `method`, `route`, `status` |
/// | `http_request_duration_seconds` | histogram ([`DURATION_BUCKETS`]) | `method`, `route` |
/// | `access_refusals_total` | counter | `reason` |
/// | `audit_appends_total` | counter (durable appends to the audit chain: one per access, however many events it wrote) | |
/// | `sign_ins_total` | counter | `outcome` |
///
/// Label values must come from bounded vocabularies and never carry personal data:
/// `route` is a route template such as `/api/v1/people/{id}` (see
/// [`observe_request`](Self::observe_request)), `reason` and `outcome` are fixed words.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    refusals: IntCounterVec,
    audit_appends: IntCounter,
    sign_ins: IntCounterVec,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    ///
    /// # Errors
    /// Only if the `prometheus` crate refuses a metric definition (a programming error).
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new("access_refusals_total", "Requests refused, by reason."),
            &["reason"],
        )?;
        let audit_appends = IntCounter::new(
            "audit_appends_total",
            "Durable appends to the audit chain (one per access).",
        )?;
        let sign_ins = IntCounterVec::new(
            Opts::new("sign_ins_total", "Sign-in attempts, by outcome."),
            &["outcome"],
        )?;

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(audit_appends.clone()))?;
        registry.register(Box::new(sign_ins.clone()))?;
        for reason in KNOWN_REFUSALS {
            refusals
                .get_metric_with_label_values(&[reason])
                .context("access_refusals_total")?;
        }

        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                durations,
                refusals,
                audit_appends,
                sign_ins,
            }),
        })
    }

    /// Records one answered HTTP request.
    ///
    /// `route` must be the route *template* the router matched (`/api/v1/people/{id}`),
    /// never the concrete path: concrete paths carry identifiers and make the number of
    /// series unbounded. As a safety net, anything that still looks like an identifier
    /// (and any query string) is replaced as by [`route_template`]. Unknown methods are
    /// counted as `OTHER`.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = METHODS
            .iter()
            .copied()
            .find(|m| m.eq_ignore_ascii_case(method))
            .unwrap_or("OTHER");
        let route: Cow<'_, str> = if is_template(route) {
            Cow::Borrowed(route)
        } else {
            Cow::Owned(route_template(route))
        };
        let status = status.to_string();
        if let Ok(counter) = self
            .inner
            .requests
            .get_metric_with_label_values(&[method, &route, &status])
        {
            counter.inc();
        }
        if let Ok(histogram) = self
            .inner
            .durations
            .get_metric_with_label_values(&[method, &route])
        {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts one refused request; `reason` is a fixed word such as `role_not_permitted`,
    /// `opted_out`, `permission_required`, `network_refused`, `unauthenticated` or
    /// `rate_limited`.
    pub fn refusal(&self, reason: &str) {
        if let Ok(counter) = self.inner.refusals.get_metric_with_label_values(&[reason]) {
            counter.inc();
        }
    }

    /// Counts `n` events appended to the audit chain.
    pub fn audit_appended(&self, n: u64) {
        self.inner.audit_appends.inc_by(n);
    }

    /// Counts one sign-in attempt; `outcome` is a fixed word such as `succeeded`.
    pub fn sign_in(&self, outcome: &str) {
        if let Ok(counter) = self.inner.sign_ins.get_metric_with_label_values(&[outcome]) {
            counter.inc();
        }
    }

    /// Every metric in the Prometheus text exposition format 0.0.4 (serve it with
    /// [`CONTENT_TYPE`]).
    #[must_use]
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(buffer)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The underlying registry, for registering further collectors.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_is_the_text_format() {
        assert!(CONTENT_TYPE.starts_with(prometheus::TEXT_FORMAT));
    }

    #[test]
    fn render_shows_every_metric_and_recorded_samples() {
        let metrics = Metrics::new().unwrap();
        let clone = metrics.clone();
        clone.observe_request("get", "/api/v1/people/{id}", 200, Duration::from_millis(3));
        metrics.observe_request("GET", "/api/v1/people/{id}", 200, Duration::from_micros(50));
        metrics.refusal("opted_out");
        metrics.audit_appended(3);
        metrics.audit_appended(2);
        metrics.sign_in("succeeded");

        let text = metrics.render();
        for name in [
            "# TYPE http_requests_total counter",
            "# TYPE http_request_duration_seconds histogram",
            "# TYPE access_refusals_total counter",
            "# TYPE audit_appends_total counter",
            "# TYPE sign_ins_total counter",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        for sample in [
            r#"http_requests_total{method="GET",route="/api/v1/people/{id}",status="200"} 2"#,
            r#"http_request_duration_seconds_count{method="GET",route="/api/v1/people/{id}"} 2"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/people/{id}",le="0.0001"} 1"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/people/{id}",le="0.005"} 2"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/people/{id}",le="10"} 2"#,
            r#"access_refusals_total{reason="opted_out"} 1"#,
            r#"access_refusals_total{reason="rate_limited"} 0"#,
            "audit_appends_total 5",
            r#"sign_ins_total{outcome="succeeded"} 1"#,
        ] {
            assert!(text.contains(sample), "{sample} missing from\n{text}");
        }
    }

    #[test]
    fn concrete_paths_and_odd_methods_do_not_leak_into_labels() {
        let metrics = Metrics::new().unwrap();
        metrics.observe_request(
            "BREW",
            "/api/v1/consent/9434765919?x=Smith",
            404,
            Duration::ZERO,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="OTHER",route="/api/v1/consent/{id}",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("9434765919"));
        assert!(!text.contains("Smith"));
        assert!(!text.contains("BREW"));
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.audit_appended(7);
        assert!(a.render().contains("audit_appends_total 7"));
        assert!(b.render().contains("audit_appends_total 0"));
    }
}
