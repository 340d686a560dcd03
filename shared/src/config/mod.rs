//! Typed, layered configuration: built-in defaults, then an optional TOML file
//! (`LEADFLOW_CONFIG`, or `leadflow.toml` in the working directory when present), then
//! `LEADFLOW_*` environment variables. Everything is parsed and validated once at start;
//! an error names the variable, so a bad deploy fails loudly instead of at the first job.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::crypto::MasterKey;
use crate::redis_target::RedisTarget;

mod channels;
mod google;
mod media;
mod scheduler;
pub use channels::ChannelsConfig;
pub use google::GoogleConfig;
pub use media::{parse_size, MediaConfig};
pub use scheduler::{Retention, SchedulerConfig};

/// Every setting Leadflow reads, with its default. File keys are the names without the
/// `LEADFLOW_` prefix, lower-cased (`redis_url = "..."`).
const SETTINGS: &[(&str, Option<&str>)] = &[
    ("LEADFLOW_ENV", Some("dev")),
    ("LEADFLOW_DATABASE_URL", Some("postgres://localhost/leadflow")),
    ("LEADFLOW_REDIS_URL", Some("redis://127.0.0.1:6379")),
    ("LEADFLOW_REDIS_CLUSTER_NODES", None),
    ("LEADFLOW_HTTP_ADDR", Some("127.0.0.1:8080")),
    ("LEADFLOW_OPS_ADDR", Some("127.0.0.1:9464")),
    ("LEADFLOW_METRICS", Some("true")),
    ("LEADFLOW_METRICS_TENANT_LABEL", Some("false")),
    ("LEADFLOW_AI_BASE_URL", Some("https://api.openai.com/v1")),
    ("LEADFLOW_AI_API_KEY", None),
    ("LEADFLOW_AI_TIMEOUT", Some("120s")),
    ("LEADFLOW_AI_MAX_ATTEMPTS", Some("6")),
    ("LEADFLOW_AI_MAX_RETRY_TIME", Some("10m")),
    ("LEADFLOW_AI_ALLOWED_MODELS", None),
    ("LEADFLOW_AI_MAX_TOKENS_CAP", None),
    ("LEADFLOW_MASTER_KEY", None),
    ("LEADFLOW_ADMIN_TOKEN", None),
    ("LEADFLOW_DATA_DIR", Some(".leadflow")),
    ("LEADFLOW_ALLOW_PRIVATE_URLS", Some("false")),
    ("LEADFLOW_POSTBACK_RETRY_SCHEDULE", Some("5s,5m,30m,2h,5h,10h,10h")),
    ("LEADFLOW_POSTBACK_TIMEOUT", Some("15s")),
    ("LEADFLOW_SYNC_TIMEOUT", Some("60s")),
    ("LEADFLOW_SYNC_MAX_WAITS_PER_TENANT", Some("200")),
    ("LEADFLOW_WORKER_CONCURRENCY", Some("2000")),
    ("LEADFLOW_QUEUE_PREFIX", Some("leadflow")),
    ("LEADFLOW_TENANT_RATE_LIMIT", Some("2000")),
    ("LEADFLOW_BACKEND_RATE_LIMIT", Some("100")),
    ("LEADFLOW_MAX_BODY_BYTES", Some("262144")),
    ("LEADFLOW_SHUTDOWN_TIMEOUT", Some("30s")),
    ("LEADFLOW_LOCK_DURATION", Some("6s")),
    ("LEADFLOW_STALLED_INTERVAL", Some("2s")),
    ("LEADFLOW_SWEEP_INTERVAL", Some("5s")),
    ("LEADFLOW_DB_MAX_CONNECTIONS", Some("20")),
    ("LEADFLOW_MIGRATE_ON_START", Some("true")),
    ("LEADFLOW_ALLOW_PRIVATE_ADDRS", Some("")),
    ("LEADFLOW_MEDIA_MAX_AUDIO_BYTES", Some("25MB")),
    ("LEADFLOW_MEDIA_MAX_PDF_BYTES", Some("20MB")),
    ("LEADFLOW_MEDIA_MAX_IMAGE_BYTES", Some("10MB")),
    ("LEADFLOW_MEDIA_TIMEOUT", Some("60s")),
    ("LEADFLOW_MEDIA_MAX_ATTEMPTS", Some("4")),
    ("LEADFLOW_MEDIA_WAIT", Some("60s")),
    ("LEADFLOW_MEDIA_CONCURRENCY", Some("32")),
    ("LEADFLOW_PDF_MAX_PAGES", Some("30")),
    ("LEADFLOW_PDF_MAX_CHARS", Some("30000")),
    ("LEADFLOW_PDF_MEMORY_LIMIT", Some("512MiB")),
    ("LEADFLOW_PDF_TIMEOUT", Some("30s")),
    ("LEADFLOW_PDF_EXTRACTOR", None),
    ("LEADFLOW_PUBLIC_URL", None),
    ("LEADFLOW_MAIL_POLL_INTERVAL", Some("30s")),
    ("LEADFLOW_CHANNEL_SEND_RATE", Some("5")),
    ("LEADFLOW_TYPING_DELAY", Some("1.5s")),
    ("LEADFLOW_WEBHOOK_MAX_ITEMS", Some("100")),
    ("LEADFLOW_WEBHOOK_RATE_LIMIT", Some("1000")),
    ("LEADFLOW_MAIL_NEW_LEADS_PER_HOUR", Some("60")),
    ("LEADFLOW_HEALTH_CHECK_INTERVAL", Some("60s")),
    ("LEADFLOW_HEALTH_CHECK_CONCURRENCY", Some("50")),
    ("LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT", Some("3")),
    ("LEADFLOW_DISCONNECTED_SEND_WAIT", Some("30m")),
    ("LEADFLOW_NOTIFICATION_QUIET_PERIOD", Some("10m")),
    ("LEADFLOW_HOUSEKEEPING_INTERVAL", Some("10m")),
    ("LEADFLOW_RETENTION_ATTEMPTS", Some("30d")),
    ("LEADFLOW_RETENTION_JOBS", Some("1d")),
    ("LEADFLOW_RETENTION_MESSAGES", Some("off")),
    ("LEADFLOW_RETENTION_MEDIA_BYTES", Some("off")),
    ("LEADFLOW_RETENTION_RAW_PAYLOADS", Some("30d")),
    ("LEADFLOW_RETENTION_IDEMPOTENCY_KEYS", Some("7d")),
    ("LEADFLOW_RETENTION_DELIVERY_BODIES", Some("30d")),
    ("LEADFLOW_GOOGLE_CLIENT_ID", None),
    ("LEADFLOW_GOOGLE_CLIENT_SECRET", None),
    (
        "LEADFLOW_GOOGLE_AUTH_URL",
        Some("https://accounts.google.com/o/oauth2/v2/auth"),
    ),
    ("LEADFLOW_GOOGLE_TOKEN_URL", Some("https://oauth2.googleapis.com/token")),
    (
        "LEADFLOW_GOOGLE_CALENDAR_API",
        Some("https://www.googleapis.com/calendar/v3"),
    ),
    (
        "LEADFLOW_GOOGLE_SCOPES",
        Some("https://www.googleapis.com/auth/calendar.events"),
    ),
    ("LEADFLOW_CALENDAR_RENEW_MARGIN", Some("24h")),
    ("LEADFLOW_CALENDAR_RENEW_INTERVAL", Some("5m")),
    ("LEADFLOW_CALENDAR_WATCH_TTL", Some("7d")),
];

/// The settings that hold secrets, each with its `_FILE` twin: the twin names a file
/// holding the value (a Docker or Kubernetes secret mounted into the container), so the
/// secret need not sit in the environment, where `docker inspect` and child processes see
/// it. `leadflow config check` masks these.
const SECRETS: &[(&str, &str)] = &[
    ("LEADFLOW_DATABASE_URL", "LEADFLOW_DATABASE_URL_FILE"),
    ("LEADFLOW_REDIS_URL", "LEADFLOW_REDIS_URL_FILE"),
    ("LEADFLOW_REDIS_CLUSTER_NODES", "LEADFLOW_REDIS_CLUSTER_NODES_FILE"),
    ("LEADFLOW_AI_API_KEY", "LEADFLOW_AI_API_KEY_FILE"),
    ("LEADFLOW_MASTER_KEY", "LEADFLOW_MASTER_KEY_FILE"),
    ("LEADFLOW_GOOGLE_CLIENT_SECRET", "LEADFLOW_GOOGLE_CLIENT_SECRET_FILE"),
    ("LEADFLOW_ADMIN_TOKEN", "LEADFLOW_ADMIN_TOKEN_FILE"),
];

/// Where a setting's effective value came from (`leadflow config check` says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The TOML file.
    File(PathBuf),
    Env,
    /// A `_FILE` variable's file.
    SecretFile(PathBuf),
    /// Set nowhere, and no default.
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::SecretFile(p) => write!(f, "secret file {}", p.display()),
            Source::Unset => f.write_str("not set"),
        }
    }
}

/// One setting as `leadflow config check` shows it: secrets masked.
#[derive(Debug, Clone)]
pub struct Effective {
    pub var: &'static str,
    /// The value, with a secret masked (`****`; a URL keeps everything but its password).
    pub shown: Option<String>,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.into(),
    }
}

/// Whether secrets may be generated locally and defaults relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub database_url: SecretString,
    /// One Redis (`LEADFLOW_REDIS_URL`) or a Redis Cluster
    /// (`LEADFLOW_REDIS_CLUSTER_NODES`, which wins when set).
    pub redis: RedisTarget,
    pub http_addr: SocketAddr,
    /// The ops listener (`/healthz`, `/readyz`) of a process running workers or the
    /// scheduler.
    pub ops_addr: SocketAddr,
    /// Prometheus metrics recorded and served (`/metrics`); off, nothing is recorded and
    /// the route answers 404.
    pub metrics: bool,
    /// A `tenant` label on the job, AI and postback metric families (for installs with
    /// few tenants: each tenant is a series per label set).
    pub metrics_tenant_label: bool,
    pub ai_base_url: String,
    pub ai_api_key: Option<SecretString>,
    pub ai_timeout: Duration,
    pub ai_max_attempts: u32,
    pub ai_max_retry_time: Duration,
    /// Models tenants may use on the operator's AI key (empty: any). A tenant with its own
    /// key is not limited.
    pub ai_allowed_models: Vec<String>,
    /// Most `max_tokens` a reply may ask for on the operator's AI key (`None`: no cap).
    pub ai_max_tokens_cap: Option<u32>,
    /// The operator console's bearer token (`/admin/api/*`); `None`: the console is off.
    pub admin_token: Option<SecretString>,
    /// `None` until [`Config::resolve_master_key`] ran (dev may generate one).
    pub master_key: Option<MasterKey>,
    pub data_dir: PathBuf,
    pub allow_private_urls: bool,
    /// Private `ip:port`s that user-given URLs may reach although the guard is on (an
    /// internal media store; tests' local fakes). Literal addresses only.
    pub allow_private_addrs: Vec<SocketAddr>,
    pub media: MediaConfig,
    pub channels: ChannelsConfig,
    pub scheduler: SchedulerConfig,
    pub google: GoogleConfig,
    pub postback_retry_schedule: Vec<Duration>,
    pub postback_timeout: Duration,
    pub sync_timeout: Duration,
    /// Synchronous `/ai/process` callers one tenant may have waiting per API process.
    pub sync_max_waits_per_tenant: usize,
    pub worker_concurrency: usize,
    pub queue_prefix: String,
    pub tenant_rate_limit: u32,
    /// `/backend/*` requests per second per tenant, across API processes (`0`: unlimited).
    pub backend_rate_limit: u32,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub lock_duration: Duration,
    pub stalled_interval: Duration,
    pub sweep_interval: Duration,
    pub db_max_connections: u32,
    /// Whether every role migrates at start; with `false` they refuse to start on a schema
    /// behind them, and `leadflow migrate` (run once per deploy) migrates.
    pub migrate_on_start: bool,
}

/// The raw layered values, before parsing.
struct Layers(BTreeMap<&'static str, String>);

impl Layers {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn req(&self, var: &'static str) -> Result<&str, ConfigError> {
        self.get(var).ok_or_else(|| invalid(var, "is required"))
    }
    fn duration(&self, var: &'static str) -> Result<Duration, ConfigError> {
        parse_duration(self.req(var)?).map_err(|e| invalid(var, e))
    }
    fn number<T: std::str::FromStr>(&self, var: &'static str) -> Result<T, ConfigError> {
        self.req(var)?
            .trim()
            .parse()
            .map_err(|_| invalid(var, "must be a whole number"))
    }
    /// A comma-separated list (possibly empty), each item parsed by `item`.
    fn list<T>(&self, var: &'static str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, ConfigError> {
        self.get(var)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| item(s).map_err(|e| invalid(var, e)))
            .collect()
    }
    /// A duration, or `off` (`None`).
    fn duration_or_off(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.get(var).map(str::trim) {
            Some("off") => Ok(None),
            _ => self.duration(var).map(Some),
        }
    }
    fn size(&self, var: &'static str) -> Result<u64, ConfigError> {
        parse_size(self.req(var)?).map_err(|e| invalid(var, e))
    }
    fn boolean(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.req(var)?.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(invalid(var, format!("must be true or false, got {other:?}"))),
        }
    }
}

/// Parses `500ms`, `5s`, `1.5s`, `2h`, `1h30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    if let Some(ms) = s.strip_suffix("ms") {
        if let Ok(v) = ms.parse::<f64>() {
            return Ok(Duration::from_secs_f64(v / 1000.0));
        }
    }
    if let Some(secs) = s.strip_suffix('s') {
        if let Ok(v) = secs.parse::<f64>() {
            if v.is_finite() && v >= 0.0 {
                return Ok(Duration::from_secs_f64(v));
            }
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 500ms, 5s, 2h"))
}

impl Config {
    /// Loads defaults, then the config file, then the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(&env)
    }

    /// Builds the configuration from explicit environment pairs (tests and tools).
    pub fn from_sources(env: &[(String, String)]) -> Result<Self, ConfigError> {
        let (layers, _) = layer(env)?;
        Self::parse(&layers)
    }

    /// Validates the configuration these environment pairs give and lists every setting's
    /// effective value and where it came from, secrets masked (`leadflow config check`).
    pub fn check(env: &[(String, String)]) -> Result<(Self, Vec<Effective>), ConfigError> {
        let (layers, sources) = layer(env)?;
        let cfg = Self::parse(&layers)?;
        let shown = SETTINGS
            .iter()
            .map(|&(var, _)| Effective {
                var,
                shown: layers
                    .get(var)
                    .map(|v| if is_secret(var) { mask(v) } else { v.to_string() }),
                source: sources.get(var).cloned().unwrap_or(Source::Unset),
            })
            .collect();
        Ok((cfg, shown))
    }

    fn parse(l: &Layers) -> Result<Self, ConfigError> {
        let env = match l.req("LEADFLOW_ENV")? {
            "dev" | "development" | "test" => Environment::Dev,
            "prod" | "production" => Environment::Production,
            other => {
                return Err(invalid(
                    "LEADFLOW_ENV",
                    format!("must be dev or production, got {other:?}"),
                ))
            }
        };
        let database_url = l.req("LEADFLOW_DATABASE_URL")?;
        if !database_url.starts_with("postgres://") && !database_url.starts_with("postgresql://") {
            return Err(invalid("LEADFLOW_DATABASE_URL", "must be a postgres:// URL"));
        }
        let redis = match l.get("LEADFLOW_REDIS_CLUSTER_NODES") {
            Some(nodes) => {
                RedisTarget::parse_cluster_nodes(nodes).map_err(|e| invalid("LEADFLOW_REDIS_CLUSTER_NODES", e))?
            }
            None => {
                let url = l.req("LEADFLOW_REDIS_URL")?;
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(invalid("LEADFLOW_REDIS_URL", "must be a redis:// or rediss:// URL"));
                }
                RedisTarget::Single(url.to_string())
            }
        };
        let http_addr = l
            .req("LEADFLOW_HTTP_ADDR")?
            .parse()
            .map_err(|_| invalid("LEADFLOW_HTTP_ADDR", "must be host:port, e.g. 127.0.0.1:8080"))?;
        let ops_addr = l
            .req("LEADFLOW_OPS_ADDR")?
            .parse()
            .map_err(|_| invalid("LEADFLOW_OPS_ADDR", "must be host:port, e.g. 127.0.0.1:9464"))?;
        let ai_base_url = l.req("LEADFLOW_AI_BASE_URL")?.trim_end_matches('/').to_string();
        url::Url::parse(&ai_base_url).map_err(|e| invalid("LEADFLOW_AI_BASE_URL", e.to_string()))?;
        let master_key = match l.get("LEADFLOW_MASTER_KEY") {
            Some(k) => Some(MasterKey::from_encoded(k).map_err(|e| invalid("LEADFLOW_MASTER_KEY", e.to_string()))?),
            None if env == Environment::Production => {
                return Err(invalid(
                    "LEADFLOW_MASTER_KEY",
                    "is required in production (64 hex characters; generate with `openssl rand -hex 32`)",
                ))
            }
            None => None,
        };
        let schedule = l
            .req("LEADFLOW_POSTBACK_RETRY_SCHEDULE")?
            .split(',')
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("LEADFLOW_POSTBACK_RETRY_SCHEDULE", e))?;
        let worker_concurrency: usize = l.number("LEADFLOW_WORKER_CONCURRENCY")?;
        if worker_concurrency == 0 {
            return Err(invalid("LEADFLOW_WORKER_CONCURRENCY", "must be at least 1"));
        }
        let queue_prefix = l.req("LEADFLOW_QUEUE_PREFIX")?.to_string();
        if queue_prefix.contains(':') || queue_prefix.contains(char::is_whitespace) {
            return Err(invalid("LEADFLOW_QUEUE_PREFIX", "must not contain ':' or spaces"));
        }
        let cfg = Config {
            env,
            database_url: SecretString::from(database_url.to_string()),
            redis,
            http_addr,
            ops_addr,
            metrics: l.boolean("LEADFLOW_METRICS")?,
            metrics_tenant_label: l.boolean("LEADFLOW_METRICS_TENANT_LABEL")?,
            ai_base_url,
            ai_api_key: l.get("LEADFLOW_AI_API_KEY").map(|k| SecretString::from(k.to_string())),
            ai_timeout: l.duration("LEADFLOW_AI_TIMEOUT")?,
            ai_max_attempts: l.number("LEADFLOW_AI_MAX_ATTEMPTS")?,
            ai_max_retry_time: l.duration("LEADFLOW_AI_MAX_RETRY_TIME")?,
            ai_allowed_models: l.list("LEADFLOW_AI_ALLOWED_MODELS", |s| Ok(s.to_string()))?,
            ai_max_tokens_cap: match l.get("LEADFLOW_AI_MAX_TOKENS_CAP") {
                None => None,
                Some(_) => match l.number::<u32>("LEADFLOW_AI_MAX_TOKENS_CAP")? {
                    0 => return Err(invalid("LEADFLOW_AI_MAX_TOKENS_CAP", "must be at least 1")),
                    n => Some(n),
                },
            },
            admin_token: match l.get("LEADFLOW_ADMIN_TOKEN") {
                None => None,
                Some(t) if t.trim().len() < 16 => {
                    return Err(invalid(
                        "LEADFLOW_ADMIN_TOKEN",
                        "must be at least 16 characters (generate one with `openssl rand -hex 32`)",
                    ))
                }
                Some(t) => Some(SecretString::from(t.trim().to_string())),
            },
            master_key,
            data_dir: PathBuf::from(l.req("LEADFLOW_DATA_DIR")?),
            allow_private_urls: l.boolean("LEADFLOW_ALLOW_PRIVATE_URLS")?,
            allow_private_addrs: l.list("LEADFLOW_ALLOW_PRIVATE_ADDRS", |s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| format!("{s:?} is not an ip:port address"))
            })?,
            media: MediaConfig::parse(l)?,
            channels: ChannelsConfig::parse(l)?,
            scheduler: SchedulerConfig::parse(l)?,
            google: GoogleConfig::parse(l)?,
            postback_retry_schedule: schedule,
            postback_timeout: l.duration("LEADFLOW_POSTBACK_TIMEOUT")?,
            sync_timeout: l.duration("LEADFLOW_SYNC_TIMEOUT")?,
            sync_max_waits_per_tenant: l.number("LEADFLOW_SYNC_MAX_WAITS_PER_TENANT")?,
            worker_concurrency,
            queue_prefix,
            tenant_rate_limit: l.number("LEADFLOW_TENANT_RATE_LIMIT")?,
            backend_rate_limit: l.number("LEADFLOW_BACKEND_RATE_LIMIT")?,
            max_body_bytes: l.number("LEADFLOW_MAX_BODY_BYTES")?,
            shutdown_timeout: l.duration("LEADFLOW_SHUTDOWN_TIMEOUT")?,
            lock_duration: l.duration("LEADFLOW_LOCK_DURATION")?,
            stalled_interval: l.duration("LEADFLOW_STALLED_INTERVAL")?,
            sweep_interval: l.duration("LEADFLOW_SWEEP_INTERVAL")?,
            db_max_connections: l.number("LEADFLOW_DB_MAX_CONNECTIONS")?,
            migrate_on_start: l.boolean("LEADFLOW_MIGRATE_ON_START")?,
        };
        if cfg.lock_duration < Duration::from_secs(1) {
            return Err(invalid("LEADFLOW_LOCK_DURATION", "must be at least 1s"));
        }
        if cfg.ai_max_attempts == 0 {
            return Err(invalid("LEADFLOW_AI_MAX_ATTEMPTS", "must be at least 1"));
        }
        Ok(cfg)
    }

    /// The master key, generating and storing one under the data dir in dev.
    /// Production configs always carry one (checked in [`Config::load`]).
    pub fn resolve_master_key(&mut self) -> Result<MasterKey, ConfigError> {
        if let Some(k) = &self.master_key {
            return Ok(k.clone());
        }
        let path = self.data_dir.join("master.key");
        let key = load_or_create_key(&path).map_err(|e| {
            invalid(
                "LEADFLOW_MASTER_KEY",
                format!("not set, and the dev key at {} failed: {e}", path.display()),
            )
        })?;
        self.master_key = Some(key.clone());
        Ok(key)
    }

    /// The SSRF policy for user-given URLs (postbacks, media).
    pub fn ssrf_policy(&self) -> crate::ssrf::Policy {
        crate::ssrf::Policy::new(self.allow_private_urls, &self.allow_private_addrs)
    }

    pub fn has_ai_key(&self) -> bool {
        self.ai_api_key.is_some()
    }
}

/// Defaults, then the config file, then the environment (where a secret's `_FILE` twin
/// counts as setting it).
fn layer(env: &[(String, String)]) -> Result<(Layers, BTreeMap<&'static str, Source>), ConfigError> {
    let mut layers = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for (var, default) in SETTINGS {
        if let Some(d) = default {
            layers.insert(*var, (*d).to_string());
            sources.insert(*var, Source::Default);
        }
    }
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let file = lookup("LEADFLOW_CONFIG")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("leadflow.toml")).filter(|p| p.exists()));
    if let Some(path) = file {
        for (var, value) in read_file(&path)? {
            layers.insert(var, value);
            sources.insert(var, Source::File(path.clone()));
        }
    }
    for (var, _) in SETTINGS {
        if let Some(v) = lookup(var) {
            layers.insert(*var, v);
            sources.insert(*var, Source::Env);
        }
    }
    for (var, file_var) in SECRETS {
        let Some(path) = lookup(file_var).filter(|p| !p.trim().is_empty()) else {
            continue;
        };
        if lookup(var).is_some_and(|v| !v.is_empty()) {
            return Err(invalid(file_var, format!("set either {var} or {file_var}, not both")));
        }
        let path = PathBuf::from(path.trim());
        let value = read_secret(&path).map_err(|e| invalid(file_var, format!("{}: {e}", path.display())))?;
        layers.insert(*var, value);
        sources.insert(*var, Source::SecretFile(path));
    }
    Ok((Layers(layers), sources))
}

/// A secret file's value: its text without the trailing newline editors and `echo` add.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err("the file is empty".into());
    }
    Ok(value.to_string())
}

fn is_secret(var: &str) -> bool {
    SECRETS.iter().any(|(v, _)| *v == var)
}

/// A secret as it may be shown: a URL without its password (the rest says where it
/// points, which is what an operator checks), anything else as `****`.
fn mask(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.has_host() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            } else if !u.username().is_empty() && u.scheme().starts_with("redis") {
                // `redis://:password@host` and `redis://password@host` are both spelt.
                let _ = u.set_username("****");
            }
            u.to_string()
        }
        _ => "****".into(),
    }
}

fn load_or_create_key(path: &Path) -> Result<MasterKey, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return MasterKey::from_encoded(text.trim()).map_err(|e| e.to_string());
    }
    let key = MasterKey::generate();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    // Readable by this user only: it decrypts every secret in the database.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(key.to_encoded().as_bytes()))
        .map_err(|e| e.to_string())?;
    tracing::warn!(
        path = %path.display(),
        "LEADFLOW_MASTER_KEY is not set: generated a dev master key and stored it locally; set LEADFLOW_MASTER_KEY in production"
    );
    Ok(key)
}

fn read_file(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let var = SETTINGS
            .iter()
            .map(|(v, _)| *v)
            .find(|v| v["LEADFLOW_".len()..].eq_ignore_ascii_case(&key))
            .ok_or_else(|| file_err(format!("unknown key {key:?}")))?;
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.push((var, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_generated_dev_master_key_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("leadflow-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        let key = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Read back, not regenerated.
        assert_eq!(load_or_create_key(&path).unwrap().to_encoded(), key.to_encoded());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn defaults_load() {
        let c = Config::from_sources(&[]).unwrap();
        assert_eq!(c.redis, RedisTarget::Single("redis://127.0.0.1:6379".into()));
        let c = Config::from_sources(&env(&[("LEADFLOW_REDIS_CLUSTER_NODES", "10.0.0.1:7000,10.0.0.2:7000")])).unwrap();
        assert!(c.redis.is_cluster(), "the cluster's nodes win over the default URL");
        let err = Config::from_sources(&env(&[("LEADFLOW_REDIS_CLUSTER_NODES", "10.0.0.1")])).unwrap_err();
        assert!(err.to_string().contains("LEADFLOW_REDIS_CLUSTER_NODES"), "{err}");
        assert_eq!(c.postback_retry_schedule.len(), 7);
        assert_eq!(c.postback_retry_schedule[1], Duration::from_secs(300));
        assert_eq!(c.sync_timeout, Duration::from_secs(60));
        assert!(!c.allow_private_urls);
        assert!(c.ai_api_key.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_sources(&env(&[("LEADFLOW_SYNC_TIMEOUT", "soon")])).unwrap_err();
        assert!(e.to_string().starts_with("LEADFLOW_SYNC_TIMEOUT"), "{e}");
        let e = Config::from_sources(&env(&[("LEADFLOW_ALLOW_PRIVATE_URLS", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("LEADFLOW_ALLOW_PRIVATE_URLS"), "{e}");
        let e = Config::from_sources(&env(&[("LEADFLOW_ENV", "production")])).unwrap_err();
        assert!(e.to_string().contains("LEADFLOW_MASTER_KEY"), "{e}");
    }

    #[test]
    fn file_layer_sits_between_defaults_and_env() {
        let path = std::env::temp_dir().join(format!("leadflow-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "sync_timeout = \"5s\"\nqueue_prefix = \"fromfile\"\npostback_retry_schedule = [\"1s\", \"2s\"]\n",
        )
        .unwrap();
        let file = path.display().to_string();
        let c = Config::from_sources(&env(&[
            ("LEADFLOW_CONFIG", &file),
            ("LEADFLOW_QUEUE_PREFIX", "fromenv"),
        ]))
        .unwrap();
        assert_eq!(c.sync_timeout, Duration::from_secs(5), "the file overrides the default");
        assert_eq!(c.queue_prefix, "fromenv", "the environment overrides the file");
        assert_eq!(
            c.postback_retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let e = Config::from_sources(&env(&[("LEADFLOW_CONFIG", &file)])).unwrap_err();
        assert!(e.to_string().contains("no_such_setting"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn media_settings_load_and_name_their_variable() {
        let c = Config::from_sources(&env(&[
            ("LEADFLOW_MEDIA_MAX_PDF_BYTES", "300KB"),
            ("LEADFLOW_ALLOW_PRIVATE_ADDRS", "127.0.0.1:9000, [::1]:80"),
        ]))
        .unwrap();
        assert_eq!(c.media.max_audio_bytes, 25_000_000);
        assert_eq!(c.media.max_pdf_bytes, 300_000);
        assert_eq!(c.allow_private_addrs.len(), 2);
        let e = Config::from_sources(&env(&[("LEADFLOW_MEDIA_MAX_IMAGE_BYTES", "big")])).unwrap_err();
        assert!(e.to_string().starts_with("LEADFLOW_MEDIA_MAX_IMAGE_BYTES"), "{e}");
        let e = Config::from_sources(&env(&[("LEADFLOW_ALLOW_PRIVATE_ADDRS", "localhost")])).unwrap_err();
        assert!(e.to_string().starts_with("LEADFLOW_ALLOW_PRIVATE_ADDRS"), "{e}");
    }

    #[test]
    fn a_secret_can_come_from_a_file_and_is_masked_when_shown() {
        let dir = std::env::temp_dir().join(format!("leadflow-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("master_key");
        let key = "ab".repeat(32);
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let db_file = dir.join("database_url");
        std::fs::write(&db_file, "postgres://leadflow:s3cret@db:5432/leadflow\n").unwrap();
        let (cfg, shown) = Config::check(&env(&[
            ("LEADFLOW_MASTER_KEY_FILE", &key_file.display().to_string()),
            ("LEADFLOW_DATABASE_URL_FILE", &db_file.display().to_string()),
            ("LEADFLOW_AI_API_KEY", "sk-live-123"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.master_key.unwrap().to_encoded(),
            key,
            "the trailing newline is not part of it"
        );
        let find = |var: &str| shown.iter().find(|e| e.var == var).unwrap().clone();
        let db = find("LEADFLOW_DATABASE_URL");
        assert_eq!(db.shown.as_deref(), Some("postgres://leadflow:****@db:5432/leadflow"));
        assert_eq!(db.source, Source::SecretFile(db_file.clone()));
        assert_eq!(find("LEADFLOW_MASTER_KEY").shown.as_deref(), Some("****"));
        assert_eq!(find("LEADFLOW_AI_API_KEY").shown.as_deref(), Some("****"));
        assert_eq!(find("LEADFLOW_AI_API_KEY").source, Source::Env);
        assert_eq!(find("LEADFLOW_SYNC_TIMEOUT").shown.as_deref(), Some("60s"));
        assert_eq!(find("LEADFLOW_SYNC_TIMEOUT").source, Source::Default);
        assert_eq!(find("LEADFLOW_GOOGLE_CLIENT_SECRET").source, Source::Unset);

        // Both at once is ambiguous; a missing or empty file names the _FILE variable.
        let e = Config::check(&env(&[
            ("LEADFLOW_MASTER_KEY_FILE", &key_file.display().to_string()),
            ("LEADFLOW_MASTER_KEY", &key),
        ]))
        .unwrap_err();
        assert!(e.to_string().starts_with("LEADFLOW_MASTER_KEY_FILE: set either"), "{e}");
        let e = Config::from_sources(&env(&[("LEADFLOW_AI_API_KEY_FILE", "/no/such/file")])).unwrap_err();
        assert!(
            e.to_string().starts_with("LEADFLOW_AI_API_KEY_FILE: /no/such/file"),
            "{e}"
        );
        std::fs::write(&key_file, "\n").unwrap();
        let e =
            Config::from_sources(&env(&[("LEADFLOW_MASTER_KEY_FILE", &key_file.display().to_string())])).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn masking_keeps_where_a_url_points() {
        assert_eq!(mask("redis://:pw@cache:6379/0"), "redis://:****@cache:6379/0");
        assert_eq!(mask("postgres://app@db/leadflow"), "postgres://app@db/leadflow");
        assert_eq!(mask("whsec_abc"), "****");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("x").is_err());
    }
}
