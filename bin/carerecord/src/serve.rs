//! `carerecord serve` and `carerecord demo`: configuration (defaults, then an optional
//! TOML file, then `CARE_…` environment variables), wiring the adapters into the HTTP
//! application, and serving it (HTTP, or HTTPS with rustls) until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use care_application::{
    AccountSettings, Accounts, IdentityPorts, LockoutPolicy, Services, SessionPolicy,
};
use care_http::{AppState, NetworkPolicy, Observer, Readiness, SignInLimits, parse_networks};
use care_in_memory::{SystemClock, UuidV7Ids};
use care_kernel::UserId;
use care_persistence::Database;
use care_policy::CasbinPolicy;
use care_security::{Argon2Hasher, RandomTokens};
use poem::listener::{
    Acceptor, AcceptorExt, Listener, RustlsCertificate, RustlsConfig, TcpListener,
};
use serde::Deserialize;

/// The settings file (`--config FILE` or `CARE_CONFIG`). Every key is optional; the
/// environment overrides the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    http_addr: Option<String>,
    database_url: Option<String>,
    session_idle_timeout: Option<String>,
    session_absolute_lifetime: Option<String>,
    allowed_networks: Option<Vec<String>>,
    trusted_proxies: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    policy_model: Option<PathBuf>,
    policy_file: Option<PathBuf>,
    sign_in_per_minute_per_address: Option<u32>,
    sign_in_per_minute_per_account: Option<u32>,
    mllp_addr: Option<String>,
    mllp_account: Option<String>,
    mllp_allowed_networks: Option<Vec<String>>,
}

/// The server's settings, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub http_addr: SocketAddr,
    /// The database.
    pub database_url: String,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// The allow-list and proxies.
    pub network: NetworkPolicy,
    /// Certificate and key (PEM) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Policy files (default: the shipped ones).
    pub policy: Option<(PathBuf, PathBuf)>,
    /// Sign-in attempts per minute per address and per account.
    pub sign_in_limits: (u32, u32),
    /// The MLLP listener, when there is one: where, and the feed account it submits as.
    pub mllp: Option<(SocketAddr, UserId)>,
    /// Who may connect to the MLLP listener (the interface engines): its own list,
    /// loopback only unless `CARE_MLLP_ALLOWED_NETWORKS` says otherwise — never the
    /// staff allow-list, which reaches every ward PC.
    pub mllp_allowed: Vec<ipnet::IpNet>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A duration as `900`, `900s`, `15m`, `1h 30m` (humantime).
fn duration(name: &str, raw: &str) -> anyhow::Result<Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(raw)
        .with_context(|| format!("{name}: {raw:?} is not a duration (e.g. 900, 15m, 1h)"))
}

impl ServeConfig {
    /// Defaults, then the file, then the environment. `database` is the command line's
    /// (or `CARE_DATABASE_URL`'s) choice, which outranks the file.
    pub fn load(file: Option<&Path>, database: Option<String>) -> anyhow::Result<Self> {
        let file_config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the settings file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("in the settings file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let f = file_config;
        let http_addr = env("CARE_HTTP_ADDR")
            .or(f.http_addr)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let http_addr: SocketAddr = http_addr
            .parse()
            .with_context(|| format!("CARE_HTTP_ADDR: {http_addr:?} is not an address:port"))?;
        let database_url = database
            .or(f.database_url)
            .unwrap_or_else(|| crate::DEFAULT_DATABASE.into());
        let defaults = SessionPolicy::default();
        let idle_timeout = match env("CARE_SESSION_IDLE_TIMEOUT").or(f.session_idle_timeout) {
            Some(raw) => duration("CARE_SESSION_IDLE_TIMEOUT", &raw)?,
            None => defaults.idle_timeout,
        };
        let absolute_lifetime =
            match env("CARE_SESSION_ABSOLUTE_LIFETIME").or(f.session_absolute_lifetime) {
                Some(raw) => duration("CARE_SESSION_ABSOLUTE_LIFETIME", &raw)?,
                None => defaults.absolute_lifetime,
            };
        anyhow::ensure!(
            !idle_timeout.is_zero() && !absolute_lifetime.is_zero(),
            "session timeouts must be longer than zero"
        );
        let networks = |var: &'static str,
                        from_file: Option<Vec<String>>|
         -> anyhow::Result<Option<Vec<ipnet::IpNet>>> {
            match env(var).or(from_file.map(|v| v.join(","))) {
                Some(raw) => Ok(Some(parse_networks(var, &raw)?)),
                None => Ok(None),
            }
        };
        let allowed = networks("CARE_ALLOWED_NETWORKS", f.allowed_networks)?
            .unwrap_or_else(care_http::loopback);
        let trusted_proxies =
            networks("CARE_TRUSTED_PROXIES", f.trusted_proxies)?.unwrap_or_default();
        let tls = match (
            env("CARE_TLS_CERT").map(PathBuf::from).or(f.tls_cert),
            env("CARE_TLS_KEY").map(PathBuf::from).or(f.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("CARE_TLS_CERT and CARE_TLS_KEY go together: give both or neither"),
        };
        let policy = match (
            env("CARE_POLICY_MODEL")
                .map(PathBuf::from)
                .or(f.policy_model),
            env("CARE_POLICY_FILE").map(PathBuf::from).or(f.policy_file),
        ) {
            (Some(m), Some(p)) => Some((m, p)),
            (None, None) => None,
            _ => anyhow::bail!("CARE_POLICY_MODEL and CARE_POLICY_FILE go together"),
        };
        let limit = |var: &str, from_file: Option<u32>, default: u32| -> anyhow::Result<u32> {
            match env(var) {
                Some(raw) => raw
                    .trim()
                    .parse()
                    .with_context(|| format!("{var}: {raw:?} is not a number")),
                None => Ok(from_file.unwrap_or(default)),
            }
        };
        let mllp = match env("CARE_MLLP_ADDR").or(f.mllp_addr) {
            None => None,
            Some(raw) => {
                let addr: SocketAddr = raw
                    .trim()
                    .parse()
                    .with_context(|| format!("CARE_MLLP_ADDR: {raw:?} is not an address:port"))?;
                let account = env("CARE_MLLP_ACCOUNT")
                    .or(f.mllp_account)
                    .unwrap_or_else(|| "feed".into());
                let account = UserId::parse(account.trim())
                    .map_err(|e| anyhow::anyhow!("CARE_MLLP_ACCOUNT: {}", e.reason))?;
                Some((addr, account))
            }
        };
        let mllp_allowed = networks("CARE_MLLP_ALLOWED_NETWORKS", f.mllp_allowed_networks)?
            .unwrap_or_else(care_http::loopback);
        Ok(Self {
            http_addr,
            database_url,
            sessions: SessionPolicy {
                idle_timeout,
                absolute_lifetime,
            },
            network: NetworkPolicy {
                allowed,
                trusted_proxies,
            },
            tls,
            policy,
            sign_in_limits: (
                limit(
                    "CARE_SIGN_IN_PER_MINUTE_PER_ADDRESS",
                    f.sign_in_per_minute_per_address,
                    30,
                )?,
                limit(
                    "CARE_SIGN_IN_PER_MINUTE_PER_ACCOUNT",
                    f.sign_in_per_minute_per_account,
                    10,
                )?,
            ),
            mllp,
            mllp_allowed,
        })
    }
}

struct DatabaseReadiness(Database);

#[async_trait]
impl Readiness for DatabaseReadiness {
    async fn check(&self) -> Result<(), String> {
        self.0.connection().ping().await.map_err(|e| e.to_string())
    }
}

/// The use cases over a database, with the account ports.
pub struct Wired {
    /// The database.
    pub db: Database,
    /// The record's use cases.
    pub services: Services,
    /// Accounts.
    pub accounts: Accounts,
}

/// Opens (and migrates) the database and wires every port.
pub async fn wire(
    config: &ServeConfig,
    metrics: &care_telemetry::Metrics,
) -> anyhow::Result<Wired> {
    let db = Database::connect_serving(&config.database_url).await?;
    db.migrate().await?;
    let policy = match &config.policy {
        Some((model, file)) => CasbinPolicy::load(model, file).await?,
        None => CasbinPolicy::load_default().await?,
    };
    let mut ports = db.ports(Arc::new(policy), Arc::new(SystemClock), Arc::new(UuidV7Ids));
    ports.audit = crate::metrics::counting_audit(ports.audit, metrics.clone());
    ports.sources = crate::cache::cached_sources(ports.sources);
    let services = Services::new(ports);
    let (accounts, sessions, security) = db.identity_stores();
    let identity = IdentityPorts {
        accounts,
        sessions,
        security,
        hasher: Arc::new(Argon2Hasher::new()?),
        tokens: Arc::new(RandomTokens),
    };
    let accounts = Accounts::new(
        services.clone(),
        identity,
        AccountSettings {
            lockout: LockoutPolicy::default(),
            sessions: config.sessions,
        },
    );
    Ok(Wired {
        db,
        services,
        accounts,
    })
}

/// Serves the API until Ctrl-C or SIGTERM.
pub async fn serve(
    config: ServeConfig,
    wired: Wired,
    metrics: care_telemetry::Metrics,
) -> anyhow::Result<()> {
    let observer: Arc<dyn Observer> = Arc::new(crate::metrics::PrometheusObserver(metrics));
    let (stop_mllp, mllp_stopped) = tokio::sync::watch::channel(false);
    let mllp_task = match &config.mllp {
        None => None,
        Some((addr, account)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for MLLP on {addr}"))?;
            let bound = listener.local_addr()?;
            eprintln!("carerecord: MLLP listening on {bound} (feed account {account})");
            let network = NetworkPolicy {
                allowed: config.mllp_allowed.clone(),
                trusted_proxies: Vec::new(),
            };
            let mut settings = care_feeds::mllp::MllpSettings::new(account.clone());
            settings.allowed = Arc::new(move |ip| network.allows(ip));
            let mut stopped = mllp_stopped.clone();
            Some(tokio::spawn(care_feeds::mllp::serve(
                listener,
                wired.services.clone(),
                wired.accounts.clone(),
                settings,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )))
        }
    };
    let state = Arc::new(AppState {
        services: wired.services,
        accounts: wired.accounts,
        network: config.network.clone(),
        limits: SignInLimits::new(config.sign_in_limits.0, config.sign_in_limits.1),
        observer,
        readiness: Arc::new(DatabaseReadiness(wired.db.clone())),
        feeds: Arc::new(crate::feeds::Feeds),
    });
    let front_end = care_http::FrontEnd {
        route: care_web::Portal::route,
        endpoint: poem::EndpointExt::boxed(care_web::Portal),
    };
    let app = care_http::app(state, Some(front_end));
    let listener = TcpListener::bind(config.http_addr);
    let (acceptor, scheme) = match &config.tls {
        Some((cert, key)) => {
            let cert_pem = std::fs::read(cert)
                .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
            let key_pem = std::fs::read(key)
                .with_context(|| format!("reading the TLS key {}", key.display()))?;
            let tls =
                RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert_pem).key(key_pem));
            (
                listener
                    .rustls(tls)
                    .into_acceptor()
                    .await
                    .with_context(|| format!("listening on {}", config.http_addr))?
                    .boxed(),
                "https",
            )
        }
        None => (
            listener
                .into_acceptor()
                .await
                .with_context(|| format!("listening on {}", config.http_addr))?
                .boxed(),
            "http",
        ),
    };
    let bound: Vec<String> = acceptor
        .local_addr()
        .iter()
        .filter_map(|a| a.as_socket_addr().map(ToString::to_string))
        .collect();
    let allowed: Vec<String> = config
        .network
        .allowed
        .iter()
        .map(ToString::to_string)
        .collect();
    eprintln!(
        "carerecord: listening on {scheme}://{} ({} database; allowed networks {})",
        bound.join(", "),
        wired.db.backend_name(),
        allowed.join(", "),
    );
    tracing::info!(addr = %bound.join(","), "serving");
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(Duration::from_secs(10)))
        .await
        .context("serving HTTP")?;
    let _ = stop_mllp.send(true);
    if let Some(task) = mllp_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    eprintln!("carerecord: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
