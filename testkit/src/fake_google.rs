//! A fake Google on one local server, speaking the documented wire formats: the OAuth
//! token endpoint `POST /token` (form; `authorization_code` and `refresh_token` grants;
//! `400 {"error": "invalid_grant"}`), Calendar `POST /calendar/v3/calendars/{id}/events/watch`
//! (→ `{"kind": "api#channel", "id", "resourceId", "expiration": "<ms>"}`),
//! `POST /calendar/v3/channels/stop` (→ 204) and `GET /calendar/v3/calendars/{id}/events`
//! (pages with `nextSyncToken`; `410 Gone` for a sync token it was told to expire).
//! Calls are recorded; lifetimes and failures are scripted by the tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The code the fake accepts at consent.
pub const GOOD_CODE: &str = "4/0AeanS0b-good-code";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    /// JSON body, or a form as a JSON object of strings.
    pub body: Value,
}

#[derive(Debug)]
struct Inner {
    calls: Vec<Call>,
    issued: usize,
    expires_in: i64,
    refresh_fails: bool,
    /// Lifetimes (ms) given to the next watches; after them, `watch_ttl_ms`.
    next_ttls: VecDeque<i64>,
    watch_ttl_ms: i64,
    /// (n, status): the n-th watch call (1-based) answers `status`.
    failing_watch_calls: Vec<(usize, u16)>,
    watch_calls: usize,
    /// Statuses the next token requests answer with instead of success.
    token_failures: VecDeque<u16>,
    /// Sync tokens that answer 410.
    expired_sync_tokens: Vec<String>,
    syncs: usize,
}

#[derive(Clone)]
pub struct FakeGoogle {
    pub base_url: String,
    state: Arc<Mutex<Inner>>,
}

impl FakeGoogle {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Inner {
            calls: Vec::new(),
            issued: 0,
            expires_in: 3599,
            refresh_fails: false,
            next_ttls: VecDeque::new(),
            watch_ttl_ms: 7 * 24 * 3600 * 1000,
            failing_watch_calls: Vec::new(),
            watch_calls: 0,
            token_failures: VecDeque::new(),
            expired_sync_tokens: Vec::new(),
            syncs: 0,
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let base_url = crate::serve(app).await;
        Self { base_url, state }
    }

    /// The settings that point Leadflow at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "LEADFLOW_GOOGLE_CLIENT_ID",
                "123456789012-test.apps.googleusercontent.com".into(),
            ),
            ("LEADFLOW_GOOGLE_CLIENT_SECRET", "GOCSPX-test-secret".into()),
            ("LEADFLOW_GOOGLE_TOKEN_URL", format!("{}/token", self.base_url)),
            ("LEADFLOW_GOOGLE_CALENDAR_API", format!("{}/calendar/v3", self.base_url)),
            ("LEADFLOW_PUBLIC_URL", "https://leadflow.example.com".into()),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self, path_contains: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.path.contains(path_contains))
            .cloned()
            .collect()
    }

    /// Access tokens issued from now on last this long.
    pub fn set_expires_in(&self, secs: i64) {
        self.lock().expires_in = secs;
    }

    pub fn set_refresh_fails(&self, fails: bool) {
        self.lock().refresh_fails = fails;
    }

    pub fn push_watch_ttl(&self, ms: i64) {
        self.lock().next_ttls.push_back(ms);
    }

    /// The `n`-th watch call (1-based, counting from the start) answers `status`: set
    /// before the calls happen, so a test does not race the scheduler's renewals.
    pub fn fail_watch_call(&self, n: usize, status: u16) {
        self.lock().failing_watch_calls.push((n, status));
    }

    pub fn push_token_failure(&self, status: u16) {
        self.lock().token_failures.push_back(status);
    }

    pub fn expire_sync_token(&self, token: &str) {
        self.lock().expired_sync_tokens.push(token.to_string());
    }
}

fn form(bytes: &[u8]) -> Value {
    Value::Object(
        url::form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    )
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body = if path == "/token" {
        form(&bytes)
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.calls.push(Call {
        method,
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    if path == "/token" {
        return token(&mut s, &body);
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ya29."));
    if !bearer {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    if path.ends_with("/events/watch") {
        s.watch_calls += 1;
        let n = s.watch_calls;
        let scripted = s.failing_watch_calls.iter().find(|(at, _)| *at == n).map(|(_, st)| *st);
        if let Some(status) = scripted {
            return (
                StatusCode::from_u16(status).unwrap(),
                Json(json!({"error": {"code": status}})),
            )
                .into_response();
        }
        let ttl = s.next_ttls.pop_front().unwrap_or(s.watch_ttl_ms);
        let n = s.calls.len();
        let expiration = chrono::Utc::now().timestamp_millis() + ttl;
        return Json(json!({
            "kind": "api#channel", "id": body["id"], "resourceId": format!("o3hgv{n}sdjfh"),
            "resourceUri": format!("https://www.googleapis.com/calendar/v3{}?alt=json", path.trim_end_matches("/watch")
                .trim_start_matches("/calendar/v3")),
            "token": body["token"], "expiration": expiration.to_string(),
        }))
        .into_response();
    }
    if path.ends_with("/channels/stop") {
        return StatusCode::NO_CONTENT.into_response();
    }
    if path.ends_with("/events") {
        let sync_token = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "syncToken")
            .map(|(_, v)| v.into_owned());
        if sync_token.as_ref().is_some_and(|t| s.expired_sync_tokens.contains(t)) {
            return (StatusCode::GONE, Json(json!({"error": {"code": 410, "message": "Sync token is no longer valid, a full sync is required."}})))
                .into_response();
        }
        s.syncs += 1;
        let n = s.syncs;
        let items = if sync_token.is_some() {
            vec![
                json!({"kind": "calendar#event", "id": format!("evchg{n}"), "status": "confirmed",
                        "summary": format!("Visita {n}"), "updated": "2026-11-22T10:00:00.000Z",
                        "start": {"dateTime": "2026-11-25T14:00:00-03:00"}, "end": {"dateTime": "2026-11-25T15:00:00-03:00"}}),
            ]
        } else {
            vec![
                json!({"kind": "calendar#event", "id": "evfull1", "status": "confirmed", "summary": "Visita Vila Mariana",
                       "start": {"dateTime": "2026-11-24T10:00:00-03:00"}, "end": {"dateTime": "2026-11-24T11:00:00-03:00"}}),
                json!({"kind": "calendar#event", "id": "evfull2", "status": "cancelled"}),
            ]
        };
        return Json(json!({"kind": "calendar#events", "items": items, "nextSyncToken": format!("sync-{n}")}))
            .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

fn token(s: &mut Inner, body: &Value) -> Response {
    let invalid = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})),
        )
            .into_response()
    };
    if let Some(status) = s.token_failures.pop_front() {
        return (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": "backend_error"})),
        )
            .into_response();
    }
    if body["client_secret"] != "GOCSPX-test-secret" {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    s.issued += 1;
    let access = format!("ya29.a0AfB_access-{}", s.issued);
    match body["grant_type"].as_str() {
        Some("authorization_code") if body["code"] == GOOD_CODE => Json(json!({
            "access_token": access, "expires_in": s.expires_in, "refresh_token": "1//0gRefresh-abcdef",
            "scope": "https://www.googleapis.com/auth/calendar.events", "token_type": "Bearer"})),
        Some("refresh_token") if !s.refresh_fails && body["refresh_token"] == "1//0gRefresh-abcdef" => Json(json!({
            "access_token": access, "expires_in": s.expires_in,
            "scope": "https://www.googleapis.com/auth/calendar.events", "token_type": "Bearer"})),
        _ => return invalid(),
    }
    .into_response()
}
