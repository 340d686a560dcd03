//! The AI call: an OpenAI-compatible chat completion. Request and response bodies are
//! `async-openai`'s types; the HTTP exchange is our own `reqwest` call, because the retry
//! policy needs what async-openai's client does not expose — the response headers
//! (`retry-after`, `x-ratelimit-reset-*`) — and must not retry behind our back.

pub mod prompt;
pub mod transcribe;

use std::time::Duration;

use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AiError {
    #[error("no AI provider is configured: set LEADFLOW_AI_API_KEY (or the tenant's own key)")]
    NotConfigured,
    /// 429 `rate_limit_exceeded`, 5xx, timeouts, connection errors: worth another try.
    #[error("AI provider error (retryable){}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default())]
    Retryable {
        status: Option<u16>,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// `insufficient_quota`, 400, 401, 403, 404…: retrying cannot help.
    #[error("AI provider error {status}: {message}")]
    Fatal {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl AiError {
    /// The `outcome` label of `leadflow_ai_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Retryable { status: Some(429), .. } => "rate_limited",
            Self::Retryable { status: Some(s), .. } if *s >= 500 => "server_error",
            Self::Retryable { message, .. } if message.contains("timed out") || message.contains("timeout") => {
                "timeout"
            }
            Self::Retryable { status: None, .. } => "timeout",
            Self::Retryable { .. } | Self::Fatal { .. } | Self::NotConfigured => "client_error",
        }
    }

    /// A short machine-readable code for error postbacks and API responses.
    pub fn code(&self) -> String {
        match self {
            Self::NotConfigured => "ai_not_configured".into(),
            Self::Retryable { code, status, .. } => code.clone().unwrap_or_else(|| {
                status
                    .map(|s| format!("ai_http_{s}"))
                    .unwrap_or_else(|| "ai_unreachable".into())
            }),
            Self::Fatal { code, status, .. } => code.clone().unwrap_or_else(|| format!("ai_http_{status}")),
        }
    }
}

/// Where a tenant's AI calls go, and with which key. A tenant's own key goes to its own
/// base URL (or the default one); without its own key, calls use the operator's key and
/// base URL, under the operator's limits. The operator's key never goes to a URL the
/// tenant chose: a tenant base URL without a key of its own is called without one.
pub struct AiRoute<'a> {
    pub base_url: &'a str,
    pub key: Option<&'a SecretString>,
    /// The operator's shared key pays: `LEADFLOW_AI_ALLOWED_MODELS` and
    /// `LEADFLOW_AI_MAX_TOKENS_CAP` apply.
    pub operator_key: bool,
}

impl<'a> AiRoute<'a> {
    /// [`AiError::NotConfigured`] when neither the tenant nor the operator set anything.
    pub fn for_tenant(
        cfg: &'a leadflow_shared::Config,
        tenant: &'a leadflow_shared::db::tenants::TenantAi,
    ) -> Result<Self, AiError> {
        Ok(match (&tenant.api_key, &tenant.base_url, &cfg.ai_api_key) {
            (Some(key), base, _) => Self {
                base_url: base.as_deref().unwrap_or(&cfg.ai_base_url),
                key: Some(key),
                operator_key: false,
            },
            (None, Some(base), _) => Self {
                base_url: base,
                key: None,
                operator_key: false,
            },
            (None, None, Some(key)) => Self {
                base_url: &cfg.ai_base_url,
                key: Some(key),
                operator_key: true,
            },
            (None, None, None) => return Err(AiError::NotConfigured),
        })
    }

    /// Applies the operator's limits to a request paid by the operator's key.
    pub fn limit(
        &self,
        cfg: &leadflow_shared::Config,
        request: &mut CreateChatCompletionRequest,
    ) -> Result<(), AiError> {
        if !self.operator_key {
            return Ok(());
        }
        if !cfg.ai_allowed_models.is_empty() && !cfg.ai_allowed_models.contains(&request.model) {
            return Err(AiError::Fatal {
                status: 403,
                code: Some("ai_model_not_allowed".into()),
                message: format!(
                    "model {:?} is not allowed on the shared AI key (allowed: {}); use one of those or the tenant's own key",
                    request.model,
                    cfg.ai_allowed_models.join(", ")
                ),
            });
        }
        if let Some(cap) = cfg.ai_max_tokens_cap {
            // The prompt builder sets `max_tokens` (what every compatible server reads).
            #[allow(deprecated)]
            let asked = &mut request.max_tokens;
            *asked = Some(asked.unwrap_or(cap).min(cap));
            request.max_completion_tokens = request.max_completion_tokens.map(|n| n.min(cap));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct AiReply {
    pub content: String,
    pub model: String,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
}

#[derive(Clone)]
pub struct AiClient {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

impl AiClient {
    pub fn new(timeout: Duration) -> reqwest::Result<Self> {
        // The AI base URL is operator configuration, not user input: no SSRF guard here,
        // so a local vLLM/Ollama works; the per-request timeout bounds a hung provider.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    #[tracing::instrument(skip_all, fields(model = %body.model))]
    pub async fn chat(
        &self,
        base_url: &str,
        api_key: Option<&SecretString>,
        body: &CreateChatCompletionRequest,
    ) -> Result<AiReply, AiError> {
        let started = std::time::Instant::now();
        leadflow_shared::metrics::generations_in_flight(1.0);
        let out = self.chat_once(base_url, api_key, body).await;
        leadflow_shared::metrics::generations_in_flight(-1.0);
        let (prompt, completion) = match &out {
            Ok(r) => (r.prompt_tokens, r.completion_tokens),
            Err(_) => (None, None),
        };
        let outcome = match &out {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        leadflow_shared::metrics::ai_request(outcome, started.elapsed(), prompt, completion);
        out
    }

    async fn chat_once(
        &self,
        base_url: &str,
        api_key: Option<&SecretString>,
        body: &CreateChatCompletionRequest,
    ) -> Result<AiReply, AiError> {
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let mut req = self.http.post(url).json(body);
        if let Some(key) = api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let (status, bytes) = exchange(req).await?;
        let parsed: CreateChatCompletionResponse = serde_json::from_slice(&bytes).map_err(|e| AiError::Fatal {
            status: status.as_u16(),
            code: Some("ai_bad_response".into()),
            message: format!("the provider's response is not a chat completion: {e}"),
        })?;
        let content = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        Ok(AiReply {
            content,
            model: parsed.model,
            prompt_tokens: parsed.usage.as_ref().map(|u| u.prompt_tokens as i32),
            completion_tokens: parsed.usage.as_ref().map(|u| u.completion_tokens as i32),
        })
    }
}

/// Sends `req` and reads the whole answer. Transport failures are retryable; an
/// unsuccessful status is classified (`classify`), so `Ok` is always a 2xx.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), AiError> {
    let mut resp = req.send().await.map_err(|e| AiError::Retryable {
        status: None,
        code: None,
        message: format!("request failed: {}", error_chain(&e)),
        retry_after: None,
    })?;
    let status = resp.status();
    let headers = resp.headers().clone();
    // A chat completion is text; 8 MB is far beyond any real answer (a tenant's base URL
    // may point anywhere).
    let bytes = leadflow_shared::http_body::read_capped(&mut resp, 8 * 1024 * 1024)
        .await
        .map_err(|e| AiError::Retryable {
            status: Some(status.as_u16()),
            code: None,
            message: format!("reading the response failed: {}", error_chain(&e)),
            retry_after: None,
        })?;
    if !status.is_success() {
        return Err(classify(status.as_u16(), &headers, &bytes));
    }
    Ok((status, bytes))
}

pub(crate) use leadflow_providers::error_chain;

/// Sorts a failed response into retryable or fatal (see `reference/openai/errors-429.md`).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> AiError {
    let parsed: Option<ErrorObject> = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let (message, code, kind) = match parsed {
        Some(e) => (e.message, e.code, e.kind),
        None => (
            String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            None,
            None,
        ),
    };
    let quota = code.as_deref() == Some("insufficient_quota") || kind.as_deref() == Some("insufficient_quota");
    let retryable = match status {
        429 => !quota,
        408 | 409 => true,
        s if s >= 500 => true,
        _ => false,
    };
    if retryable {
        AiError::Retryable {
            status: Some(status),
            code,
            message,
            retry_after: retry_after(headers),
        }
    } else {
        AiError::Fatal { status, code, message }
    }
}

/// The provider's own hint: `retry-after` (seconds, an HTTP-date, or `-ms`), else the
/// longest relevant `x-ratelimit-reset-*` (Go-style durations like `1.436s`, `6m0s`).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(wait) = leadflow_shared::retry_after::from_headers(headers) {
        return Some(wait);
    }
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|n| get(n).and_then(parse_go_duration))
        .max()
}

/// Parses Go's `time.Duration` strings: `12ms`, `1s`, `1.436s`, `6m0s`, `1h2m3.4s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let value: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            'u' | 'µ' => {
                if chars.peek() == Some(&'s') {
                    chars.next();
                }
                0.000_001
            }
            'n' => {
                if chars.peek() == Some(&'s') {
                    chars.next();
                }
                0.000_000_001
            }
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_go_duration("1.436s"), Some(Duration::from_millis(1436)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("5"), None);
    }

    #[test]
    fn classifies_by_code_not_only_status() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        let rl =
            br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        match classify(429, &h, rl) {
            AiError::Retryable { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(2))),
            other => panic!("{other:?}"),
        }
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify(429, &HeaderMap::new(), quota),
            AiError::Fatal { status: 429, .. }
        ));
        assert!(matches!(
            classify(500, &HeaderMap::new(), b"oops"),
            AiError::Retryable { .. }
        ));
        assert!(matches!(classify(400, &HeaderMap::new(), b"{}"), AiError::Fatal { .. }));
        assert!(matches!(classify(401, &HeaderMap::new(), b"{}"), AiError::Fatal { .. }));
    }

    #[test]
    fn ratelimit_reset_headers_are_a_hint() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(360)));
    }
}
