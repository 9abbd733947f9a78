//! The HTTP API (poem + poem-openapi): sign-in and sessions, the IP allow-list, the
//! clinical read API, the DPO's, auditor's and System Manager's APIs, health, readiness
//! and metrics. Every call goes through the application's use cases, so policy and
//! audit happen there; this crate only translates HTTP to use cases and back.
//!
//! Layers, outermost first: observe (metrics, and any error turned into problem+json) →
//! network guard (client address, allow-list) → routes. The OpenAPI document is at
//! `/openapi.json` and an interactive UI at `/docs`.

// Handlers return `Result<_, Problem>` as poem-openapi wants; a problem is a few
// strings, built only on the (cold) error path, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod api;
mod deferred;
mod dto;
mod feedbody;
mod network;
pub mod problem;
mod ratelimit;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use care_application::{
    Accounts, FeedReport, FeedSession, IngestError, Resubmission, ResubmitError, Services,
};
use care_kernel::UpdateOutcome;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

pub use network::{ClientAddr, NetworkPolicy, loopback, parse_networks};
pub use ratelimit::SignInLimits;

/// Sees every request and refusal (metrics). The binary wires Prometheus in.
pub trait Observer: Send + Sync {
    /// One request answered: method, route template (`/api/v1/people/{id}`, or
    /// `unmatched` for paths that are no route: never a concrete path, so neither ids
    /// nor a scanner's inventions become labels), status and time taken.
    fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration);
    /// A refusal, by reason (`network_refused`, `unauthenticated`, `rate_limited`, the
    /// policy's reasons...).
    fn refusal(&self, reason: &str);
    /// A sign-in, by outcome.
    fn sign_in(&self, outcome: &str);
    /// The metrics in Prometheus text format, if this observer keeps any.
    fn render(&self) -> Option<String>;
}

/// An observer that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn request(&self, _: &str, _: &str, _: u16, _: Duration) {}
    fn refusal(&self, _: &str) {}
    fn sign_in(&self, _: &str) {}
    fn render(&self) -> Option<String> {
        None
    }
}

/// Whether the service can do its work (the database answers).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok` when ready; otherwise why not (logged, not shown).
    async fn check(&self) -> Result<(), String>;
}

/// Everything a request handler needs.
pub struct AppState {
    /// The record's use cases.
    pub services: Services,
    /// Accounts and sessions.
    pub accounts: Accounts,
    /// The allow-list and trusted proxies.
    pub network: NetworkPolicy,
    /// Sign-in rate limits.
    pub limits: SignInLimits,
    /// Metrics.
    pub observer: Arc<dyn Observer>,
    /// Readiness.
    pub readiness: Arc<dyn Readiness>,
    /// The feed parsers.
    pub feeds: Arc<dyn FeedGateway>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// The largest request body accepted (the API takes small JSON documents).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest body a feed submits (an HL7 batch or a FHIR bundle), read only for a
/// request with a bearer token and at most eight at a time.
pub const MAX_FEED_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A feed submission's body, by its content type.
#[derive(Debug, Clone, Copy)]
pub enum FeedBody<'a> {
    /// `application/hl7-v2`: one HL7 v2 message, several, or an FHS/BHS batch.
    Hl7v2(&'a [u8]),
    /// `application/fhir+json`: a FHIR R4 Bundle (or one resource).
    Fhir(&'a [u8]),
}

/// The feed parsers, as this adapter needs them: given an authorised session, apply or
/// quarantine each message of a body; given an opened re-submission, map and apply its
/// message again. Implemented by the composition root over `care-feeds` (adapters do
/// not depend on each other).
#[async_trait]
pub trait FeedGateway: Send + Sync {
    /// Applies or quarantines each message of a body.
    async fn submit(
        &self,
        session: FeedSession,
        body: FeedBody<'_>,
    ) -> Result<FeedReport, IngestError>;
    /// Maps and applies a quarantined message again, as it was received.
    async fn resubmit(&self, resubmission: Resubmission) -> Result<UpdateOutcome, ResubmitError>;
}

/// The API version, as the OpenAPI document states it.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The OpenAPI service (for the document and the routes).
fn openapi(state: &Arc<AppState>) -> OpenApiService<api::Apis, ()> {
    OpenApiService::new(api::apis(state.clone()), "Care Record API", API_VERSION).description(
        "The shared care record's API. Sign in with POST /api/v1/sessions and send the \
             token as `Authorization: Bearer <token>`. Errors are RFC 9457 \
             application/problem+json.",
    )
}

/// The OpenAPI document as JSON.
pub fn openapi_json(state: &Arc<AppState>) -> String {
    openapi(state).spec()
}

/// A front end served beside the API, behind the same allow-list and headers: the
/// professionals' portal. It is a client of `/api/v1` like any other; the binary wires
/// it in (adapters do not depend on each other).
pub struct FrontEnd {
    /// The route template of a path the front end serves (for metrics), or `None` for a
    /// path that is the API's.
    pub route: fn(&str) -> Option<&'static str>,
    /// Serves those paths.
    pub endpoint: poem::endpoint::BoxEndpoint<'static, poem::Response>,
}

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEnd").finish_non_exhaustive()
    }
}

/// The whole HTTP application: the API, its documentation and, when given, the front
/// end.
pub fn app(state: Arc<AppState>, front_end: Option<FrontEnd>) -> impl Endpoint + use<> {
    let service = openapi(&state);
    let front_route = front_end.as_ref().map(|f| f.route);
    let routes = Arc::new(network::Routes::from_spec(&service.spec()).with_front_end(front_route));
    let spec = service.spec_endpoint();
    let ui = service.swagger_ui();
    let api = Route::new()
        .nest("/", service)
        .at("/openapi.json", spec)
        .nest("/docs", ui);
    network::Split { api, front_end }
        .with(network::Guard {
            state: state.clone(),
        })
        .with(network::Observe {
            observer: state.observer.clone(),
            routes,
        })
        .with(
            poem::middleware::SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("Referrer-Policy", "no-referrer")
                .overriding("Cache-Control", "no-store"),
        )
}
