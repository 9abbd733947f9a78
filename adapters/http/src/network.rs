//! Where a request comes from, and whether it may come in: the client address (believing
//! `X-Forwarded-For` only from configured proxies) and the IP allow-list, checked before
//! anything else, authentication included.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use poem::http::Method;
use poem::web::RemoteAddr;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tracing::Instrument;

use crate::problem::{Problem, problem_response, types};
use crate::{AppState, Observer};

/// The client's address as the API believes it, put in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Which networks may reach the API, and whose forwarding headers are believed.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    /// Allowed client ranges (CIDR).
    pub allowed: Vec<IpNet>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for NetworkPolicy {
    /// Loopback only, no proxies.
    fn default() -> Self {
        Self {
            allowed: loopback(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// 127.0.0.0/8 and ::1.
pub fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Parses a comma-separated list of CIDR ranges (a bare address is a /32 or /128).
pub fn parse_networks(
    field: &'static str,
    raw: &str,
) -> Result<Vec<IpNet>, care_kernel::InvalidValue> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    care_kernel::InvalidValue::new(
                        field,
                        format!("{s:?} is not a CIDR range or an IP address"),
                    )
                })
        })
        .collect()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl NetworkPolicy {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// Whether this client may reach the API.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, unless the peer is a trusted proxy, in which case
    /// the right-most address of `X-Forwarded-For` that is not itself a trusted proxy
    /// (addresses further left were written by the client and prove nothing). A trusted
    /// proxy that forwards a chain this cannot read gives `None`: the request is refused
    /// rather than credited to the proxy's own (allowed) address.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&[u8]]) -> Option<IpAddr> {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return Some(peer);
        }
        let mut hops = Vec::new();
        for header in forwarded_for {
            let text = std::str::from_utf8(header).ok()?;
            hops.extend(text.split(',').map(str::trim));
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let ip = parse_hop(hop)?;
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|sa| canonical(sa.ip()))
}

/// The middleware: resolves the client address, refuses (403, audited in the security
/// log) any client outside the allow-list, and otherwise passes the request on with a
/// [`ClientAddr`] in its extensions. `/health` stays reachable for liveness probes.
pub(crate) struct Guard {
    pub(crate) state: Arc<AppState>,
}

impl<E: Endpoint> Middleware<E> for Guard {
    type Output = GuardEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        GuardEndpoint {
            inner: ep,
            state: self.state.clone(),
        }
    }
}

pub(crate) struct GuardEndpoint<E> {
    inner: E,
    state: Arc<AppState>,
}

impl<E: Endpoint> Endpoint for GuardEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let peer = match req.remote_addr() {
            RemoteAddr(poem::Addr::SocketAddr(sa)) => sa.ip(),
            _ => IpAddr::from([0, 0, 0, 0]),
        };
        let forwarded: Vec<&[u8]> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let client = self.state.network.client(peer, &forwarded);
        let allowed = client.is_some_and(|c| self.state.network.allows(c));
        if req.uri().path() != "/health" && !allowed {
            let path = req.uri().path().to_owned();
            self.state.observer.refusal("network_refused");
            let recorded = client.unwrap_or(peer);
            if !self.state.limits.may_record_refusal(recorded) {
                self.state.observer.refusal("network_refused_unrecorded");
            } else if let Err(e) = self
                .state
                .accounts
                .record_network_refusal(recorded, &path)
                .await
            {
                // Fail closed either way: the request is refused; the failure is logged.
                tracing::error!(error = %e, "could not record a network refusal");
            }
            return Ok(problem_response(Problem::forbidden(
                types::NETWORK_REFUSED,
                "Network not allowed",
                "your address is not on the allow-list",
            )));
        }
        let client = client.unwrap_or(peer);
        // Read the body here, at most MAX_BODY_BYTES of it (feeds: MAX_FEED_BODY_BYTES),
        // whatever the headers say (HTTP/2 bodies need declare no length).
        // A feed's large body is read only for a signed-in feed account (its session is
        // checked here, before the body), a few at a time, and within a time limit, so that
        // large bodies cannot fill the memory or the slots before anyone is known.
        let token = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
            .map(|v| v[7..].trim().to_owned());
        let feed_body = match token {
            Some(token) if req.uri().path().starts_with("/api/v1/feeds/") => self
                .state
                .accounts
                .authenticate(&token, client)
                .await
                .is_ok_and(|a| a.actor.role == care_kernel::Role::Feed),
            _ => false,
        };
        let _permit = if feed_body {
            match tokio::time::timeout(FEED_BODY_WAIT, FEED_BODIES.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return Ok(problem_response(Problem::unavailable())),
            }
        } else {
            None
        };
        let limit = if feed_body {
            crate::MAX_FEED_BODY_BYTES
        } else {
            crate::MAX_BODY_BYTES
        };
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
            || req
                .headers()
                .contains_key(poem::http::header::CONTENT_LENGTH)
            || req
                .headers()
                .contains_key(poem::http::header::TRANSFER_ENCODING)
        {
            let read =
                tokio::time::timeout(BODY_READ_LIMIT, read_capped(req.take_body(), limit)).await;
            match read {
                Ok(Ok(Some(bytes))) => req.set_body(bytes),
                Err(_) => {
                    return Ok(problem_response(Problem::invalid(
                        "body",
                        "was not received in time",
                    )));
                }
                Ok(Err(_)) => {
                    return Ok(problem_response(Problem::invalid(
                        "body",
                        "was not received completely",
                    )));
                }
                Ok(Ok(None)) => {
                    return Ok(problem_response(Problem::invalid(
                        "body",
                        &format!("must be at most {limit} bytes"),
                    )));
                }
            }
        }
        req.extensions_mut().insert(ClientAddr(client));
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Reads a body of at most `limit` bytes; `None` when it is longer. A longer body is
/// read on and thrown away for a little while (up to [`DRAIN_MAX`] more bytes, for up
/// to [`DRAIN_FOR`]) before the answer goes out: closing on a client that is still
/// sending makes its TCP stack reset the connection, and the reset can discard the 400
/// it had been sent (the "lingering close" web servers do).
async fn read_capped(body: poem::Body, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut reader = body.into_async_read();
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(bytes));
        }
        if bytes.len() + n > limit {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let drain = async {
        let mut drained = 0usize;
        while drained < DRAIN_MAX {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
    Ok(None)
}

/// How much of a too-large body is read and thrown away before answering.
const DRAIN_MAX: usize = 1024 * 1024;
/// How long a too-large body is drained before answering.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a feed waits for one of the large-body slots before 503.
const FEED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a request body may take to arrive.
const BODY_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Large feed bodies read at once (each up to `MAX_FEED_BODY_BYTES`), for feed accounts
/// whose session is live.
static FEED_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// The route templates of the API, to name a request's route without its values.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// In the document's (sorted) order, the documentation's own last: the first
    /// template a path matches names it.
    templates: Vec<Template>,
    front_end: Option<fn(&str) -> Option<&'static str>>,
}

/// One path of the document: its template, split at `/`, and its methods as a 405's
/// `Allow` header lists them.
#[derive(Debug)]
struct Template {
    name: String,
    segments: Vec<String>,
    allow: String,
}

impl Template {
    fn new(name: &str, allow: String) -> Self {
        Self {
            name: name.to_owned(),
            segments: name.split('/').map(str::to_owned).collect(),
            allow,
        }
    }
}

impl Routes {
    /// The paths of the OpenAPI document with their methods, plus the documentation's own.
    pub(crate) fn from_spec(spec: &str) -> Self {
        let parsed: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut templates: Vec<Template> = parsed["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(name, operations)| Template::new(name, allow_header(operations)))
                    .collect()
            })
            .unwrap_or_default();
        for own in ["/openapi.json", "/docs"] {
            templates.push(Template::new(own, "GET, HEAD".to_owned()));
        }
        Self {
            templates,
            front_end: None,
        }
    }

    /// The methods a template takes, for a 405's `Allow` header (RFC 9110, 15.5.6).
    pub(crate) fn allowed(&self, template: &str) -> Option<&str> {
        self.templates
            .iter()
            .find(|t| t.name == template)
            .map(|t| t.allow.as_str())
    }

    /// Also names the front end's paths.
    pub(crate) fn with_front_end(
        mut self,
        route: Option<fn(&str) -> Option<&'static str>>,
    ) -> Self {
        self.front_end = route;
        self
    }

    /// The template a path matches (`{x}` matches any one segment), or `unmatched`.
    pub(crate) fn template(&self, path: &str) -> &str {
        if let Some(route) = self.front_end.and_then(|f| f(path)) {
            return route;
        }
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        self.templates
            .iter()
            .find(|template| {
                let t = &template.segments;
                t.len() == segments.len()
                    && t.iter().zip(&segments).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            .map_or("unmatched", |t| t.name.as_str())
    }
}

/// The methods of one path of the OpenAPI document, in the order the document keeps
/// them (alphabetical); a path that takes GET also answers HEAD, which poem answers
/// from the GET operation.
fn allow_header(operations: &serde_json::Value) -> String {
    let mut methods: Vec<String> = operations
        .as_object()
        .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
        .unwrap_or_default();
    if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
        methods.push("HEAD".to_owned());
    }
    methods.join(", ")
}

/// Sends the front end's paths to the front end and everything else to the API.
pub(crate) struct Split<A> {
    pub(crate) api: A,
    pub(crate) front_end: Option<crate::FrontEnd>,
}

impl<A: Endpoint> Endpoint for Split<A> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        match &self.front_end {
            Some(front) if (front.route)(req.uri().path()).is_some() => {
                front.endpoint.call(req).await
            }
            _ => self.api.call(req).await.map(IntoResponse::into_response),
        }
    }
}

/// Records every request's method, route, status and time with the observer, and turns
/// any error that escaped into problem+json.
pub(crate) struct Observe {
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) routes: Arc<Routes>,
}

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        ObserveEndpoint {
            inner: ep,
            observer: self.observer.clone(),
            routes: self.routes.clone(),
        }
    }
}

pub(crate) struct ObserveEndpoint<E> {
    inner: E,
    observer: Arc<dyn Observer>,
    routes: Arc<Routes>,
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let started = std::time::Instant::now();
        let method = req.method().as_str().to_owned();
        let route = self.routes.template(req.uri().path()).to_owned();
        // The request's span: method and route template only — never the path, query or
        // headers, which carry ids, NHS numbers and names.
        let span = tracing::info_span!(
            "http.request",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        let mut response = match self.inner.call(req).instrument(span.clone()).await {
            Ok(r) => r.into_response(),
            Err(e) => crate::problem::from_poem_error(e),
        };
        if response.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = self.routes.allowed(&route)
            && let Ok(value) = poem::http::HeaderValue::from_str(allow)
        {
            response
                .headers_mut()
                .insert(poem::http::header::ALLOW, value);
        }
        span.record("http.response.status_code", response.status().as_u16());
        self.observer.request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let p = NetworkPolicy {
            allowed: parse_networks("a", "10.0.0.0/8").unwrap(),
            trusted_proxies: parse_networks("t", "192.168.1.10, 192.168.1.11").unwrap(),
        };
        let c = |peer: &str, headers: &[&str]| {
            let raw: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
            p.client(ip(peer), &raw)
        };
        // Untrusted peer: its header is ignored.
        assert_eq!(c("203.0.113.9", &["10.1.1.1"]), Some(ip("203.0.113.9")));
        // Trusted peer: the right-most untrusted hop.
        assert_eq!(
            c("192.168.1.10", &["10.9.9.9, 10.1.1.1"]),
            Some(ip("10.1.1.1"))
        );
        // Through two trusted proxies.
        assert_eq!(
            c("192.168.1.10", &["10.1.1.1, 192.168.1.11"]),
            Some(ip("10.1.1.1"))
        );
        // A client forging a left-most entry gains nothing.
        assert_eq!(
            c("192.168.1.10", &["10.0.0.1", "203.0.113.9"]),
            Some(ip("203.0.113.9"))
        );
        // Ports are allowed and ignored.
        assert_eq!(
            c("192.168.1.10", &["203.0.113.9:4711"]),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            c("192.168.1.10", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        // A chain that cannot be read is not credited to the proxy: no client at all.
        assert_eq!(c("192.168.1.10", &["nonsense"]), None);
        assert_eq!(c("192.168.1.10", &["203.0.113.9, garbage"]), None);
        assert_eq!(p.client(ip("192.168.1.10"), &[b"\xe9, 203.0.113.9"]), None);
        // IPv4-mapped IPv6 peers are IPv4.
        assert_eq!(c("::ffff:203.0.113.9", &[]), Some(ip("203.0.113.9")));
        assert!(p.allows(ip("10.1.1.1")));
        assert!(!p.allows(ip("203.0.113.9")));
    }

    #[test]
    fn routes_are_named_by_their_template() {
        let spec = r#"{"paths": {"/api/v1/people/{id}": {}, "/api/v1/people/{id}/referrals": {}, "/health": {}}}"#;
        let r = Routes::from_spec(spec);
        assert_eq!(
            r.template("/api/v1/people/0190c5a4-1b2c-7d3e-8f40-123456789abc"),
            "/api/v1/people/{id}"
        );
        assert_eq!(
            r.template("/api/v1/people/x/referrals"),
            "/api/v1/people/{id}/referrals"
        );
        assert_eq!(r.template("/health"), "/health");
        assert_eq!(r.template("/docs"), "/docs");
        assert_eq!(r.template("/wp-admin/install.php"), "unmatched");
        assert_eq!(r.template("/api/v1/people//referrals"), "unmatched");
        let front: fn(&str) -> Option<&'static str> =
            |p| p.starts_with("/ui/").then_some("/ui/{file}");
        let r = Routes::from_spec(spec).with_front_end(Some(front));
        assert_eq!(r.template("/ui/app.js"), "/ui/{file}");
        assert_eq!(r.template("/health"), "/health");
    }

    #[test]
    fn a_template_s_methods_are_what_a_405_allows() {
        let spec = r#"{"paths": {"/api/v1/sessions/current": {"get": {}, "delete": {}},
            "/api/v1/sessions": {"post": {}}}}"#;
        let r = Routes::from_spec(spec);
        assert_eq!(
            r.allowed("/api/v1/sessions/current"),
            Some("DELETE, GET, HEAD")
        );
        assert_eq!(r.allowed("/api/v1/sessions"), Some("POST"));
        assert_eq!(r.allowed("/docs"), Some("GET, HEAD"));
        assert_eq!(r.allowed("unmatched"), None);
    }

    #[test]
    fn networks_parse_with_clear_errors() {
        assert_eq!(parse_networks("n", "127.0.0.1, ::1/128").unwrap().len(), 2);
        let e = parse_networks("CARE_ALLOWED_NETWORKS", "10.0.0.0/33").unwrap_err();
        assert_eq!(e.field, "CARE_ALLOWED_NETWORKS");
        assert!(NetworkPolicy::default().allows(ip("127.0.0.1")));
        assert!(!NetworkPolicy::default().allows(ip("10.0.0.1")));
    }
}
