//! Manageable resources (3.8): `/v3/manageable_volumes` and
//! `/v3/manageable_snapshots`.
//!
//! What the backend holds that no record owns (a file left by another
//! installation, say), listed so an operator can see it. Managing it in
//! (`os-volume-manage`) is not offered yet, so none is `safe_to_manage`.
use super::{St, ok};
use crate::error::{CResult, CinderError};
use crate::store::Kind;
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::State as AxState;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/manageable_volumes", get(manageable_volumes))
        .route(
            "/v3/manageable_volumes/detail",
            get(manageable_volumes_detail),
        )
        .route("/v3/manageable_snapshots", get(manageable_snapshots))
        .route(
            "/v3/manageable_snapshots/detail",
            get(manageable_snapshots_detail),
        )
}

async fn manageable(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    snapshots: bool,
    detail: bool,
) -> CResult<Response> {
    if !mv.at_least(8) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    c.require_admin("volume_extension:list_manageable")?;
    let (vols, snaps) = svc
        .backend
        .inventory()
        .await
        .map_err(CinderError::internal)?;
    let st = svc.store.read();
    let (ids, kind, prefix, key) = if snapshots {
        (snaps, Kind::Snapshot, "snapshot-", "manageable-snapshots")
    } else {
        (vols, Kind::Volume, "volume-", "manageable-volumes")
    };
    let list: Vec<Value> = ids
        .into_iter()
        .filter(|id| st.get(kind, id).is_none())
        .map(|id| {
            let mut o = json!({"reference": {"source-name": format!("{prefix}{id}")},
                               "safe_to_manage": false, "size": 0});
            if detail {
                o["reason_not_safe"] =
                    json!("managing existing backend objects is not supported yet");
                o["cinder_id"] = Value::Null;
                o["extra_info"] = Value::Null;
            }
            o
        })
        .collect();
    Ok(ok(json!({ key: list })))
}

async fn manageable_volumes(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, false, false).await
}
async fn manageable_volumes_detail(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, false, true).await
}
async fn manageable_snapshots(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, true, false).await
}
async fn manageable_snapshots_detail(AxState(svc): St, c: Caller, mv: Mv) -> CResult<Response> {
    manageable(&svc, &c, mv, true, true).await
}
