//! Availability zones: `/v3/os-availability-zone`.
use super::{St, ok};
use crate::error::CResult;
use crate::{Caller, VolumeService};
use axum::extract::State as AxState;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new().route("/v3/os-availability-zone", get(azs))
}

async fn azs(AxState(svc): St, _c: Caller) -> CResult<Response> {
    Ok(ok(json!({"availabilityZoneInfo": [
        {"zoneName": svc.cfg.volume.default_availability_zone, "zoneState": {"available": true}}
    ]})))
}
