//! Clusters (3.7): `/v3/clusters`.
//!
//! Cinder groups active-active volume services into clusters; this one's
//! services are not clustered, so the list is empty and names are unknown.
use super::{Body, ok};
use crate::error::{CResult, CinderError};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/clusters", get(clusters))
        .route("/v3/clusters/detail", get(clusters))
        .route("/v3/clusters/{name}", get(cluster_show).put(cluster_action))
}

fn need_7(mv: Mv) -> CResult<()> {
    if mv.at_least(7) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

async fn clusters(c: Caller, mv: Mv) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:get_all")?;
    Ok(ok(json!({"clusters": []})))
}

async fn cluster_show(c: Caller, mv: Mv, Path(name): Path<String>) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:get")?;
    Err(CinderError::not_found(format!(
        "Cluster {name} could not be found."
    )))
}

async fn cluster_action(
    c: Caller,
    mv: Mv,
    Path(action): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need_7(mv)?;
    c.require_admin("clusters:update")?;
    if !matches!(action.as_str(), "enable" | "disable") {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    Err(CinderError::not_found(format!(
        "Cluster {name} could not be found."
    )))
}
