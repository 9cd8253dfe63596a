//! Back-end pools (`/v3/scheduler-stats/get_pools`) and capabilities
//! (`/v3/capabilities/{host}`).
use super::{Query, St, ok};
use crate::error::{CResult, CinderError};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/scheduler-stats/get_pools", get(pools))
        .route("/v3/capabilities/{host}", get(capabilities))
}

async fn caps(svc: &VolumeService) -> Value {
    let cap = svc.capacity().await;
    json!({
        "volume_backend_name": svc.backend.name(),
        "vendor_name": svc.backend.vendor(),
        "driver_version": "1.0.0",
        "storage_protocol": svc.backend.protocol(),
        "total_capacity_gb": cap.total_gb,
        "free_capacity_gb": cap.free_gb,
        "reserved_percentage": 0,
        "QoS_support": false,
        "thin_provisioning_support": true,
        "multiattach": true,
        "timestamp": crate::store::now(),
    })
}

async fn pools(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    c.require_admin("scheduler_extension:scheduler_stats:get_pools")?;
    let detail = q
        .get("detail")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    let name = svc.pool_host();
    let cap = caps(&svc).await;
    // Filters (3.28): the pool's name or any capability; `volume_type`
    // (3.35) keeps the pool when the type's backend specs fit it.
    let mut keep = true;
    if mv.at_least(28) {
        for (k, want) in &q.0 {
            keep &= match k.as_str() {
                "detail" => true,
                "name" => name == *want,
                "volume_type" if mv.at_least(35) => {
                    let st = svc.store.read();
                    let t = st.volume_type(want).cloned().ok_or_else(|| {
                        CinderError::not_found(format!("Volume type {want} could not be found."))
                    })?;
                    crate::flows::type_fits(&svc, &t).is_ok()
                }
                // Before 3.35 Cinder drops this filter.
                "volume_type" => true,
                other => match cap.get(other) {
                    Some(Value::String(x)) => x == want,
                    Some(v) => *v == serde_json::from_str::<Value>(want).unwrap_or(Value::Null),
                    None => false,
                },
            };
        }
    }
    let mut pools = Vec::new();
    if keep {
        let mut pool = json!({"name": name});
        if detail {
            pool["capabilities"] = cap;
        }
        pools.push(pool);
    }
    Ok(ok(json!({"pools": pools})))
}

async fn capabilities(AxState(svc): St, c: Caller, Path(host): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:capabilities")?;
    let host = host.split('#').next().unwrap_or_default();
    if host != svc.host {
        return Err(CinderError::not_found(format!(
            "Service cinder-volume on host {host} could not be found."
        )));
    }
    Ok(ok(json!({
        "pool_name": Value::Null,
        "description": Value::Null,
        "volume_backend_name": svc.backend.name(),
        "namespace": format!("OS::Storage::Capabilities::{host}"),
        "visibility": Value::Null,
        "driver_version": "1.0.0",
        "vendor_name": svc.backend.vendor(),
        "properties": {
            "thin_provisioning": {"title": "Thin Provisioning", "description": "Sets thin provisioning.", "type": "boolean"},
        },
        "storage_protocol": svc.backend.protocol(),
        "replication_targets": [],
        "display_name": Value::Null,
    })))
}
