//! Agents (`/v2.0/agents`) and availability zones (`/v2.0/availability_zones`).
use super::{Body, St, coll_url, no_content, ok};
use crate::error::{NResult, NeutronError};
use crate::query::{ListParams, matches, render};
use crate::store::{Kind, Obj, s};
use crate::{Caller, NetworkService, body_obj, check, only_known};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<NetworkService>> {
    Router::new()
        .route("/v2.0/agents", get(agent_list))
        .route(
            "/v2.0/agents/{id}",
            get(agent_show).put(agent_update).delete(agent_delete),
        )
        .route("/v2.0/availability_zones", get(az_list))
}

const AGENT_ATTRS: &[&str] = &[
    "id",
    "agent_type",
    "binary",
    "topic",
    "host",
    "admin_state_up",
    "alive",
    "description",
    "availability_zone",
    "created_at",
    "started_at",
    "heartbeat_timestamp",
    "configurations",
    "resources_synced",
    "resource_versions",
];

pub(super) fn agent_view(svc: &NetworkService, a: &Obj) -> Obj {
    let mut v = a.clone();
    let alive = chrono::DateTime::parse_from_rfc3339(s(a, "heartbeat_timestamp"))
        .map(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
                <= svc.cfg.network.agent_down_time as i64
        })
        .unwrap_or(false);
    v.insert("alive".into(), json!(alive));
    // Neutron's `_make_agent_dict` shows the object versions an agent
    // reported over RPC; ours report none (what crosses our bus is typed).
    v.entry("resource_versions").or_insert_with(|| json!({}));
    for k in ["created_at", "started_at", "heartbeat_timestamp"] {
        if let Some(t) = a.get(k).and_then(Value::as_str) {
            v.insert(k.into(), json!(t.trim_end_matches('Z').replace('T', " ")));
        }
    }
    v
}

async fn agent_list(State(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), AGENT_ATTRS)?;
    if !c.admin {
        return Ok(ok(json!({"agents": []})));
    }
    let st = svc.store.read();
    let items = st
        .iter(Kind::Agent)
        .map(|a| Arc::new(agent_view(&svc, a)))
        .filter(|a| {
            // agent_type matches case-insensitively (as MySQL does upstream).
            p.filter_value("agent_type")
                .is_none_or(|v| v.iter().any(|x| x.eq_ignore_ascii_case(s(a, "agent_type"))))
                && matches(a, &p, &["agent_type"])
        })
        .collect();
    Ok(ok(render(items, &p, "agents", &coll_url(&svc, "agents"))?))
}

pub(super) fn get_agent(svc: &NetworkService, c: &Caller, id: &str) -> NResult<Obj> {
    if !c.admin {
        return Err(NeutronError::new(
            404,
            "AgentNotFound",
            format!("Agent {id} could not be found."),
        ));
    }
    svc.store
        .read()
        .get(Kind::Agent, id)
        .map(|a| agent_view(svc, a))
        .ok_or_else(|| {
            NeutronError::new(
                404,
                "AgentNotFound",
                format!("Agent {id} could not be found."),
            )
        })
}

async fn agent_show(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    Ok(ok(json!({"agent": get_agent(&svc, &c, &id)?})))
}

async fn agent_update(
    State(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> NResult<Response> {
    get_agent(&svc, &c, &id)?;
    let mut u = body_obj(&body, "agent")?;
    only_known(&u, &["admin_state_up", "description"])?;
    check::boolean(&mut u, "admin_state_up")?;
    check::string(&u, "description", 255)?;
    let out = svc
        .store
        .write(|tx| {
            let a = tx.get(Kind::Agent, &id).ok_or_else(|| {
                NeutronError::new(
                    404,
                    "AgentNotFound",
                    format!("Agent {id} could not be found."),
                )
            })?;
            let mut o = (*a).clone();
            for (k, v) in &u {
                o.insert(k.clone(), v.clone());
            }
            tx.put(Kind::Agent, o.clone());
            Ok(o)
        })
        .await?;
    Ok(ok(json!({"agent": agent_view(&svc, &out)})))
}

async fn agent_delete(State(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    get_agent(&svc, &c, &id)?;
    svc.store
        .write(|tx| {
            tx.del(Kind::Agent, &id);
            Ok(())
        })
        .await?;
    Ok(no_content())
}

async fn az_list(State(svc): St, _c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    let p = ListParams::parse(q.as_deref(), &["name", "resource", "state"])?;
    let az = &svc.cfg.network.default_availability_zone;
    let items: Vec<Arc<Obj>> = ["network", "router"]
        .iter()
        .filter_map(|r| {
            json!({"name": az, "resource": r, "state": "available"})
                .as_object()
                .cloned()
                .map(Arc::new)
        })
        .filter(|o| matches(o, &p, &[]))
        .collect();
    Ok(ok(render(
        items,
        &p,
        "availability_zones",
        &coll_url(&svc, "availability_zones"),
    )?))
}
