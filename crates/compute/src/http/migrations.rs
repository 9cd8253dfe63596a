//! `os-migrations`: resize and migration records.
use super::request::{Caller, St, first, json_resp, query};
use crate::ComputeService;
use crate::error::NResult;
use crate::state::iso_z;
use axum::Router;
use axum::extract::{RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new().route("/os-migrations", get(migrations_list))
}

async fn migrations_list(
    AxState(svc): St,
    c: Caller,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-migrations:index")?;
    let q = query(raw);
    let st = svc.state.read();
    let list: Vec<Value> = st
        .migrations
        .values()
        .rev()
        .filter(|m| first(&q, "instance_uuid").is_none_or(|u| m.instance_uuid == u))
        .filter(|m| first(&q, "status").is_none_or(|s| m.status == s))
        .filter(|m| first(&q, "migration_type").is_none_or(|s| m.migration_type == s))
        .filter(|m| first(&q, "source_compute").is_none_or(|s| m.source_compute == s))
        .map(|m| {
            let mut v = json!({
                "id": m.id, "source_node": m.source_node, "dest_node": m.dest_node,
                "source_compute": m.source_compute, "dest_compute": m.dest_compute, "dest_host": "127.0.0.1",
                "status": m.status, "instance_uuid": m.instance_uuid,
                "old_instance_type_id": m.old_flavor_id.parse::<i64>().unwrap_or(0),
                "new_instance_type_id": m.new_flavor_id.parse::<i64>().unwrap_or(0),
                "created_at": iso_z(&m.created_at), "updated_at": iso_z(&m.updated_at),
            });
            if c.mv.at_least(23) {
                v["migration_type"] = json!(m.migration_type);
            }
            if c.mv.at_least(59) {
                v["uuid"] = json!(m.uuid);
            }
            if c.mv.at_least(80) {
                v["user_id"] = json!(m.user_id);
                v["project_id"] = json!(m.project_id);
            }
            v
        })
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"migrations": list})))
}
