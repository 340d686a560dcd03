//! Leadflow's HTTP layer: validates, authenticates, writes the message to PostgreSQL and
//! enqueues — nothing slower. Generation, delivery and retries happen in workers.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod cache;
pub mod error;
pub mod rate_limit;
pub mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use leadflow_shared::queue::Queues;
use leadflow_shared::reply_wake::ReplyWaiters;
use leadflow_shared::Config;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub pool: PgPool,
    pub queues: Queues,
    pub waiters: Arc<ReplyWaiters>,
    /// Synchronous callers waiting, per tenant (`LEADFLOW_SYNC_MAX_WAITS_PER_TENANT`).
    pub sync_waits: Arc<leadflow_shared::reply_wake::SyncWaits>,
    pub auth: Arc<auth::AuthCache>,
    /// Assistants by (tenant, id); `None` is the tenant's default.
    pub assistants: Arc<cache::TtlCache<(uuid::Uuid, Option<uuid::Uuid>), leadflow_shared::domain::Assistant>>,
    pub limiter: Arc<rate_limit::RateLimiter>,
    /// One tenant's concurrent accepts hold at most half the PostgreSQL pool.
    pub ingest_share: Arc<rate_limit::IngestShare>,
    /// Which user-given URLs are accepted (built once from the config).
    pub ssrf: leadflow_shared::ssrf::Policy,
    /// For the one outbound call the API makes: Google's token endpoint at consent.
    pub http: reqwest::Client,
    /// What `/readyz` checks.
    pub probe: leadflow_shared::readiness::Probe,
}

impl AppState {
    pub fn new(cfg: Config, pool: PgPool, queues: Queues) -> Self {
        let waiters = ReplyWaiters::spawn(cfg.redis.clone(), cfg.queue_prefix.clone());
        let limiter = Arc::new(rate_limit::RateLimiter::new(&cfg.redis, &cfg.queue_prefix));
        let ingest_share = Arc::new(rate_limit::IngestShare::new(cfg.db_max_connections));
        let probe = leadflow_shared::readiness::Probe::new(pool.clone(), &cfg.redis);
        Self {
            probe,
            ssrf: cfg.ssrf_policy(),
            cfg: Arc::new(cfg),
            pool,
            queues,
            waiters,
            sync_waits: Arc::default(),
            auth: Arc::default(),
            assistants: Arc::new(cache::TtlCache::new(std::time::Duration::from_secs(5), 100_000)),
            limiter,
            ingest_share,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .expect("an HTTP client with a timeout builds"),
        }
    }
}

impl AppState {
    /// The master key (resolved at start by every role, so always there once serving).
    pub fn master_key(&self) -> Result<&leadflow_shared::crypto::MasterKey, error::ApiError> {
        self.cfg
            .master_key
            .as_ref()
            .ok_or_else(|| error::ApiError::Internal(anyhow::anyhow!("the master key was not resolved at start")))
    }
}

pub fn router(state: AppState) -> Router {
    let probes = routes::health::probes(state.probe.clone(), state.cfg.metrics);
    edge(routes::router().merge(probes), state)
}

/// The edge every route sits behind: a panic answered as a JSON 500 (innermost, so the
/// access line and the metrics see the 500), request ids, access lines and metrics, the
/// body limit, the NUL check.
pub fn edge(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.cfg.max_body_bytes;
    routes
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .route_layer(axum::middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(reject_nul_in_uri))
        .with_state(state)
}

/// A handler panicked (a bug): the client gets the 500 of the error contract and the
/// process keeps serving; the panic hook (`leadflow`'s main) has logged where.
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    error::ApiError::Internal(anyhow::anyhow!("a handler panicked: {what}")).into_response()
}

/// Every request: its `x-request-id` (the caller's, when it is a sane token, else a new
/// one) echoed in the response, one access log line at `info` (method, route, status,
/// latency, request id, the authenticated tenant when there is one), and `leadflow_http_requests_total` / `…_duration_seconds`. All by
/// the matched route template (`/backend/channels/{id}`), never the raw path: ids are
/// personal data in logs and a series per request in metrics.
async fn track(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned);
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let tenant = CallerTenant::default();
    req.extensions_mut().insert(tenant.clone());
    let started = std::time::Instant::now();
    // Everything the request does — the jobs it enqueues and theirs — carries its id.
    let mut resp = leadflow_shared::request_id::scope(request_id.clone(), next.run(req)).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    tracing::info!(
        target: "leadflow::access",
        method = %method,
        route = %route,
        status,
        latency_ms = took.as_millis() as u64,
        request_id = %request_id,
        tenant_id = %tenant.0.get().map(ToString::to_string).unwrap_or_default(),
        "request"
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    leadflow_shared::metrics::http_request(&route, &method, status, took);
    resp
}

/// The tenant whose API key authenticated the request, once the `Caller` extractor knows
/// it: the access line names it.
#[derive(Clone, Default)]
pub struct CallerTenant(Arc<std::sync::OnceLock<uuid::Uuid>>);

/// The request id header, taken from the caller or made, and echoed.
pub const REQUEST_ID: &str = "x-request-id";

/// A `%00` in a path id or a query value would reach PostgreSQL, which refuses NUL in
/// text (see `leadflow_shared::text`): the caller's to fix, named.
async fn reject_nul_in_uri(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let decoded_has_nul =
        |s: &str| url::form_urlencoded::parse(s.as_bytes()).any(|(k, v)| k.contains('\0') || v.contains('\0'));
    let path_nul = uri.path().contains("%00");
    let query_nul = uri.query().is_some_and(decoded_has_nul);
    if path_nul || query_nul {
        let field = if path_nul { "path" } else { "query" };
        return error::ApiError::invalid(field, format!("the {field} contains a NUL character (%00)")).into_response();
    }
    next.run(req).await
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
