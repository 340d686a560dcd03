//! JSON bodies parsed by hand into `serde_json::Value`, so each malformed field gets a
//! 422 that names it (serde's derive would report only the first error, by line and
//! column), and an oversized body is a JSON 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;

pub struct JsonObject(pub Map<String, Value>);

/// A body that may be left out entirely (an empty body reads as `{}`), for actions whose
/// fields are all optional.
pub struct OptionalJsonObject(pub JsonObject);

async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::invalid("body", e.body_text())
        }
    })
}

impl<S: Send + Sync> FromRequest<S> for OptionalJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(JsonObject(Map::new())));
        }
        JsonObject::from_bytes(&bytes).map(Self)
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Self::from_bytes(&bytes(req, state).await?)
    }
}

impl JsonObject {
    fn from_bytes(bytes: &[u8]) -> Result<Self, ApiError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
        // PostgreSQL refuses NUL in text: the caller's to fix, named (see shared::text).
        if let Some(field) = leadflow_shared::text::find_nul(&v) {
            let message = format!("{field} contains a NUL character (\\u0000), which cannot be stored");
            return Err(ApiError::invalid(field, message));
        }
        match v {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(ApiError::invalid("body", "the body must be a JSON object")),
        }
    }
}

/// Typed accessors that fail with the field's name.
impl JsonObject {
    pub fn has(&self, f: &str) -> bool {
        !matches!(self.0.get(f), None | Some(Value::Null))
    }

    pub fn opt_str(&self, f: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(f, format!("{f} must be a string"))),
        }
    }

    pub fn req_str(&self, f: &str) -> Result<&str, ApiError> {
        self.opt_str(f)?
            .ok_or_else(|| ApiError::invalid(f, format!("{f} is required")))
    }

    pub fn opt_bool(&self, f: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(f, format!("{f} must be true or false"))),
        }
    }

    pub fn opt_f64(&self, f: &str) -> Result<Option<f64>, ApiError> {
        match self.0.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(f, format!("{f} must be a number"))),
            Some(_) => Err(ApiError::invalid(f, format!("{f} must be a number"))),
        }
    }

    pub fn opt_i32(&self, f: &str) -> Result<Option<i32>, ApiError> {
        match self.0.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(f, format!("{f} must be a whole number"))),
            Some(_) => Err(ApiError::invalid(f, format!("{f} must be a whole number"))),
        }
    }

    pub fn opt_uuid(&self, f: &str) -> Result<Option<Uuid>, ApiError> {
        self.opt_str(f)?
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::invalid(f, format!("{f} must be a UUID")))
            })
            .transpose()
    }
}

/// A path id that is not a UUID cannot name anything: 404, like an unknown id.
pub fn path_uuid(s: &str, what: &'static str) -> Result<Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound(what))
}
