//! `os-server-groups`: affinity and anti-affinity groups and their rules.
use super::request::{Caller, St, body, first, json_resp, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::ServerGroup;
use crate::ops;
use crate::state::{Rec, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferro_common::Error;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-server-groups", get(groups_list).post(group_create))
        .route(
            "/os-server-groups/{id}",
            get(group_show).delete(group_delete),
        )
}

fn group_view(c: &Caller, g: &ServerGroup) -> Value {
    let mut v = json!({"id": g.id, "name": g.name, "members": g.members});
    if c.mv.at_least(64) {
        v["policy"] = json!(g.policy);
        v["rules"] = json!(g.rules);
    } else {
        v["policies"] = json!([g.policy]);
        v["metadata"] = json!({});
    }
    if c.mv.at_least(13) {
        v["project_id"] = json!(g.project_id);
        v["user_id"] = json!(g.user_id);
    }
    v
}

async fn groups_list(AxState(svc): St, c: Caller, RawQuery(raw): RawQuery) -> NResult<Response> {
    let q = query(raw);
    let all = c.is_admin(&svc) && q.contains_key("all_projects");
    let st = svc.state.read();
    let mut list: Vec<&ServerGroup> = st
        .groups
        .values()
        .filter(|g| all || g.project_id == c.project())
        .collect();
    list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let offset = first(&q, "offset")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let (limit, _) = paging(&q)?;
    let list: Vec<Value> = list
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|g| group_view(&c, g))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"server_groups": list})))
}

async fn group_create(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    let b = body(&bytes)?;
    let o = super::request::member(
        &b,
        "server_group",
        "Invalid input for field/attribute server_group.",
    )?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.trim() == *n)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let allowed: &[&str] = if c.mv.at_least(15) {
        &[
            "affinity",
            "anti-affinity",
            "soft-affinity",
            "soft-anti-affinity",
        ]
    } else {
        &["affinity", "anti-affinity"]
    };
    let (policy, rules) = if c.mv.at_least(64) {
        if o.contains_key("policies") {
            return Err(NovaError::bad(
                "Invalid input for field/attribute server_group. Additional properties are not allowed ('policies' was unexpected)",
            ));
        }
        let p = o
            .get("policy")
            .and_then(Value::as_str)
            .ok_or_else(|| NovaError::bad("Invalid input for field/attribute policy."))?
            .to_string();
        let rules: BTreeMap<String, Value> = o
            .get("rules")
            .and_then(Value::as_object)
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (k, v) in &rules {
            if k != "max_server_per_host" || v.as_u64().is_none_or(|n| n < 1) {
                return Err(NovaError::bad(format!(
                    "Invalid input for field/attribute rules ({k})."
                )));
            }
            if p != "anti-affinity" {
                return Err(NovaError::bad("Only anti-affinity policy supports rules."));
            }
        }
        (p, rules)
    } else {
        let ps = o
            .get("policies")
            .and_then(Value::as_array)
            .ok_or_else(|| NovaError::bad("Invalid input for field/attribute policies."))?;
        if ps.len() != 1 {
            return Err(NovaError::bad(
                "Invalid input for field/attribute policies. Exactly one policy is allowed.",
            ));
        }
        (
            ps[0].as_str().unwrap_or_default().to_string(),
            BTreeMap::new(),
        )
    };
    if !allowed.contains(&policy.as_str()) {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute policy. Value: {policy}."
        )));
    }
    let (project, user) = (c.project(), c.user());
    let g = svc
        .state
        .write(|st| {
            let lim = ops::quota_limits(st, &project, Some(&user))
                .get("server_groups")
                .copied()
                .unwrap_or(-1);
            let used = st
                .groups
                .values()
                .filter(|g| g.project_id == project)
                .count() as i64;
            if lim >= 0 && used + 1 > lim {
                return Err(Error::forbidden("Quota exceeded, too many server groups."));
            }
            let g = ServerGroup {
                id: ferro_common::new_uuid(),
                name: name.clone(),
                project_id: project.clone(),
                user_id: user.clone(),
                policy: policy.clone(),
                rules: rules.clone(),
                members: vec![],
                created_at: now(),
            };
            Ok((g.clone(), vec![Rec::Group(g)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server_group": group_view(&c, &g)}),
    ))
}

async fn group_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let st = svc.state.read();
    let g = st
        .groups
        .get(&id)
        .filter(|g| g.project_id == c.project() || c.is_admin(&svc))
        .ok_or_else(|| NovaError::not_found(format!("Instance group {id} could not be found.")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server_group": group_view(&c, g)}),
    ))
}

async fn group_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let (project, admin) = (c.project(), c.is_admin(&svc));
    svc.state
        .write(|st| match st.groups.get(&id) {
            Some(g) if g.project_id == project || admin => {
                Ok(((), vec![Rec::DelGroup(id.clone())]))
            }
            _ => Err(Error::not_found_msg(format!(
                "Instance group {id} could not be found."
            ))),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
