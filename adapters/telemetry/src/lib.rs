//! Telemetry for Care Record: the process-wide `tracing` subscriber (with optional
//! OpenTelemetry OTLP export) and the Prometheus metrics registry.
//!
//! This crate knows nothing about HTTP frameworks or the rest of the workspace; the
//! binary wires it in:
//!
//! - [`init`] once at start-up, keeping the returned [`TelemetryGuard`] alive until the
//!   end of `main` (dropping it flushes pending spans);
//! - one [`Metrics`] (cheap to clone) shared by whatever records requests, refusals,
//!   audit appends and sign-ins, and served by `/metrics` with [`Metrics::render`] and
//!   [`CONTENT_TYPE`].
//!
//! Metric labels never carry personal data: routes are templates (see
//! [`route_template`]), reasons and outcomes are fixed vocabularies.

mod metrics;
mod route;
mod subscriber;

pub use metrics::{CONTENT_TYPE, DURATION_BUCKETS, Metrics};
pub use route::route_template;
pub use subscriber::{OTLP_ENDPOINT_VAR, TelemetryGuard, init};
