//! `os-migrations`: resize and migration records, filtered and paged as
//! Nova's `MigrationsController.index` at each microversion.
use super::request::{Caller, St, first, json_resp, next_link, paging, query};
use super::server_list::parse_time;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Migration;
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

/// The query parameters Nova's schema knows at microversion `minor`
/// (from 2.59 nothing else is accepted).
fn known_params(minor: u16) -> Vec<&'static str> {
    let mut k = vec![
        "hidden",
        "host",
        "instance_uuid",
        "source_compute",
        "status",
        "migration_type",
    ];
    if minor >= 59 {
        k.extend(["limit", "marker", "changes-since"]);
    }
    if minor >= 66 {
        k.push("changes-before");
    }
    if minor >= 80 {
        k.extend(["user_id", "project_id"]);
    }
    k
}

async fn migrations_list(
    AxState(svc): St,
    c: Caller,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-migrations:index")?;
    let q = query(raw);
    let known = known_params(c.mv.1);
    if c.mv.at_least(59)
        && let Some(k) = q.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(NovaError::bad(format!(
            "Invalid input for query parameters {k}. Value: {:?}. Additional properties are not allowed ('{k}' was unexpected)",
            q[k]
        )));
    }
    let (limit, marker) = if c.mv.at_least(59) {
        paging(&q)?
    } else {
        (None, None)
    };
    let since = match first(&q, "changes-since") {
        Some(s) if c.mv.at_least(59) => Some(parse_time(s)?),
        _ => None,
    };
    let before = match first(&q, "changes-before") {
        Some(s) if c.mv.at_least(66) => Some(parse_time(s)?),
        _ => None,
    };
    if let (Some(a), Some(b)) = (&since, &before)
        && b < a
    {
        return Err(NovaError::bad(
            "The value of changes-since must be less than or equal to changes-before.",
        ));
    }
    // Below 2.80 these are not filters (the schema lets them through).
    let by_user = first(&q, "user_id").filter(|_| c.mv.at_least(80));
    let by_project = first(&q, "project_id").filter(|_| c.mv.at_least(80));
    let keep = |m: &Migration| {
        first(&q, "instance_uuid").is_none_or(|u| m.instance_uuid == u)
            && first(&q, "status").is_none_or(|s| m.status == s)
            && first(&q, "migration_type").is_none_or(|s| m.migration_type == s)
            && first(&q, "source_compute").is_none_or(|s| m.source_compute == s)
            && first(&q, "host").is_none_or(|h| m.source_compute == h || m.dest_compute == h)
            && by_user.is_none_or(|u| m.user_id == u)
            && by_project.is_none_or(|p| m.project_id == p)
            && since.as_ref().is_none_or(|t| &m.updated_at >= t)
            && before.as_ref().is_none_or(|t| &m.updated_at <= t)
    };
    let st = svc.state.read();
    // Newest first (created_at, then id, both descending), as Nova sorts.
    let mut items: Vec<&Migration> = st.migrations.values().filter(|m| keep(m)).collect();
    items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    if let Some(m) = &marker {
        let pos = items
            .iter()
            .position(|x| &x.uuid == m)
            .ok_or_else(|| NovaError::bad(format!("Marker {m} could not be found.")))?;
        items.drain(..=pos);
    }
    if let Some(l) = limit {
        items.truncate(l);
    }
    let list: Vec<Value> = items.iter().map(|m| view(&c, m)).collect();
    let mut out = json!({"migrations": list});
    if let (Some(l), Some(last)) = (limit, items.last())
        && items.len() == l
    {
        out["migrations_links"] = next_link(&svc.base_url, "os-migrations", &q, l, &last.uuid);
    }
    Ok(json_resp(StatusCode::OK, out))
}

fn view(c: &Caller, m: &Migration) -> Value {
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
}
