//! Workers cleanup (3.24): `/v3/workers/cleanup`.
//!
//! Cinder's cleanup of a dead service's half-done work. Here every
//! workflow is a saga that start-up recovery finishes or unwinds, so there
//! is never anything left for a cleanup request to claim.
use super::{Body, accepted};
use crate::error::{CResult, CinderError};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new().route("/v3/workers/cleanup", axum::routing::post(workers_cleanup))
}

async fn workers_cleanup(c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    if !mv.at_least(24) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    c.require_admin("workers:cleanup")?;
    if !body.is_null() && !body.is_object() {
        return Err(CinderError::bad("Malformed request body"));
    }
    Ok(accepted(json!({"cleaning": [], "unavailable": []})))
}
