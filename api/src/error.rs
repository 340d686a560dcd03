//! The one error type at the HTTP edge. Domain and infrastructure errors are logged here
//! with their whole cause chain; the client gets
//! `{"success": false, "error": {"code", "message", "field"?}}` and never an internal
//! detail. Anything a client sent wrong is a 4xx naming the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound(&'static str),
    Invalid {
        field: String,
        message: String,
    },
    PayloadTooLarge,
    /// A webhook call carrying more messages and statuses than `LEADFLOW_WEBHOOK_MAX_ITEMS`.
    TooManyItems {
        items: usize,
        max: usize,
    },
    /// Over a rate limit: `Retry-After` says when to come back.
    RateLimited(std::time::Duration),
    /// A custom status with a code (e.g. 502 for a failed AI reply, 504 for a timeout).
    Status {
        status: StatusCode,
        code: String,
        message: String,
        extra: serde_json::Value,
    },
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self::Internal(e.into())
    }
}

fn body(status: StatusCode, code: &str, message: &str, field: Option<&str>, extra: serde_json::Value) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(f) = field {
        error["field"] = json!(f);
    }
    let mut out = json!({"success": false, "error": error});
    if let serde_json::Value::Object(map) = extra {
        for (k, v) in map {
            out[k] = v;
        }
    }
    (status, Json(out)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let none = serde_json::Value::Null;
        match self {
            Self::Unauthorized => body(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key (Authorization: Bearer <api_key>)",
                None,
                none,
            ),
            Self::Forbidden => body(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key cannot act for that tenant",
                Some("tenant_id"),
                none,
            ),
            Self::NotFound(what) => body(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{what} not found"),
                None,
                none,
            ),
            Self::Invalid { field, message } => body(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                &message,
                Some(&field),
                none,
            ),
            Self::PayloadTooLarge => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
                None,
                none,
            ),
            Self::TooManyItems { items, max } => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_items",
                &format!("the call carries {items} messages and statuses; at most {max} are taken per call"),
                Some("body"),
                none,
            ),
            Self::RateLimited(after) => {
                let mut resp = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; slow down and retry after the Retry-After seconds",
                    None,
                    none,
                );
                let secs = after.as_secs_f64().ceil().max(1.0) as u64;
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
                resp
            }
            Self::Status {
                status,
                code,
                message,
                extra,
            } => body(status, &code, &message, None, extra),
            Self::Internal(e) if backing_service_down(&e) => {
                tracing::error!(error = format!("{e:#}"), "a backing service is unavailable");
                body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backing service is unavailable; retry shortly",
                    None,
                    none,
                )
            }
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it was logged",
                    None,
                    none,
                )
            }
        }
    }
}

/// Whether an error is PostgreSQL or Redis being out of reach (a 503: retrying later
/// helps), rather than a bug or a misconfiguration (a 500: a wrong master key, a query
/// that does not fit the schema).
fn backing_service_down(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
            return match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // 08: connection exception; 57P0x: shutting down, cannot connect now;
                // 53300: too many connections.
                sqlx::Error::Database(db) => db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0") || c == "53300"),
                _ => false,
            };
        }
        if let Some(e) = cause.downcast_ref::<redis::RedisError>() {
            return e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped();
        }
        if let Some(q) = cause.downcast_ref::<leadflow_shared::queue::QueueError>() {
            return !matches!(q, leadflow_shared::queue::QueueError::Encode(_));
        }
        cause.is::<std::io::Error>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: ApiError) -> StatusCode {
        e.into_response().status()
    }

    #[test]
    fn only_an_unreachable_backing_service_is_a_503() {
        assert_eq!(
            status(ApiError::from(sqlx::Error::PoolTimedOut)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            status(ApiError::from(sqlx::Error::Io(io))),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let queue = leadflow_shared::queue::QueueError::Timeout {
            queue: "ai",
            after: std::time::Duration::from_secs(3),
        };
        assert_eq!(status(ApiError::from(queue)), StatusCode::SERVICE_UNAVAILABLE);
        // A bug or a misconfiguration is a 500, with the same JSON shape.
        assert_eq!(
            status(ApiError::from(sqlx::Error::RowNotFound)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let key = leadflow_shared::db::DbError::Crypto(leadflow_shared::crypto::CryptoError::Decrypt);
        assert_eq!(status(ApiError::from(key)), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status(ApiError::from(anyhow::anyhow!("a human message was not recorded"))),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
