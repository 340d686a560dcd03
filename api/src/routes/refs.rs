//! References a body may carry to other rows of the same tenant (an assistant, a
//! department, an operator). Each is checked to exist *in that tenant*, so one tenant can
//! never point at another's rows; a bad one is a 422 naming the field.

use leadflow_shared::db::{assistants, departments, operators};
use uuid::Uuid;

use crate::body::JsonObject;
use crate::error::ApiError;
use crate::AppState;

#[derive(Clone, Copy)]
pub enum Kind {
    Assistant,
    Department,
    User,
}

/// `Some(new value)` when the body names `field` (`Some(None)`: set to null), checked.
pub async fn optional(
    state: &AppState,
    tenant: Uuid,
    body: &JsonObject,
    field: &str,
    kind: Kind,
) -> Result<Option<Option<Uuid>>, ApiError> {
    if !body.0.contains_key(field) {
        return Ok(None);
    }
    let Some(id) = body.opt_uuid(field)? else {
        return Ok(Some(None));
    };
    let (exists, what) = match kind {
        Kind::Assistant => (assistants::find(&state.pool, tenant, id).await?.is_some(), "assistant"),
        Kind::Department => (departments::exists(&state.pool, tenant, id).await?, "department"),
        Kind::User => (operators::find(&state.pool, tenant, id).await?.is_some(), "user"),
    };
    if !exists {
        return Err(ApiError::invalid(field, format!("no such {what} for this tenant")));
    }
    Ok(Some(Some(id)))
}
