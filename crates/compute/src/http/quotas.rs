//! `limits`, `os-quota-sets` and `os-quota-class-sets`: the limits and the counted usage of a project (and user).
use super::request::{Caller, St, body, first, json_resp, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::ProjectQuota;
use crate::ops;
use crate::state::Rec;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferro_common::Error;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/limits", get(limits))
        .route(
            "/os-quota-sets/{project}",
            get(quota_show).put(quota_update).delete(quota_delete),
        )
        .route("/os-quota-sets/{project}/detail", get(quota_detail))
        .route("/os-quota-sets/{project}/defaults", get(quota_defaults))
        .route(
            "/os-quota-class-sets/{class}",
            get(quota_class_show).put(quota_class_update),
        )
}

fn quota_keys(c: &Caller) -> Vec<&'static str> {
    let mut k = vec![
        "instances",
        "cores",
        "ram",
        "metadata_items",
        "key_pairs",
        "server_groups",
        "server_group_members",
    ];
    if !c.mv.at_least(57) {
        k.extend([
            "injected_files",
            "injected_file_content_bytes",
            "injected_file_path_bytes",
        ]);
    }
    if !c.mv.at_least(36) {
        k.extend([
            "floating_ips",
            "fixed_ips",
            "security_groups",
            "security_group_rules",
        ]);
    }
    k
}

pub(super) async fn limits(
    AxState(svc): St,
    c: Caller,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    let q = query(raw);
    let project = match first(&q, "tenant_id") {
        Some(p) if c.is_admin(&svc) => p.to_string(),
        _ => c.project(),
    };
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, None);
    let u = ops::quota_usage(&st, &project, None);
    let g = |k: &str| l.get(k).copied().unwrap_or(-1);
    let mut abs = json!({
        "maxTotalCores": g("cores"), "maxTotalInstances": g("instances"), "maxTotalRAMSize": g("ram"),
        "maxServerMeta": g("metadata_items"), "maxTotalKeypairs": g("key_pairs"),
        "maxServerGroups": g("server_groups"), "maxServerGroupMembers": g("server_group_members"),
        "totalCoresUsed": u["cores"], "totalInstancesUsed": u["instances"], "totalRAMUsed": u["ram"],
        "totalServerGroupsUsed": u["server_groups"],
    });
    if !c.mv.at_least(57) {
        abs["maxPersonality"] = json!(g("injected_files"));
        abs["maxPersonalitySize"] = json!(g("injected_file_content_bytes"));
    }
    if !c.mv.at_least(39) {
        abs["maxImageMeta"] = json!(128);
    }
    if !c.mv.at_least(36) {
        for (k, v) in [
            ("maxSecurityGroupRules", -1),
            ("maxSecurityGroups", -1),
            ("maxTotalFloatingIps", -1),
            ("totalFloatingIpsUsed", 0),
            ("totalSecurityGroupsUsed", 0),
        ] {
            abs[k] = json!(v);
        }
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"limits": {"rate": [], "absolute": abs}}),
    ))
}

fn quota_set(c: &Caller, limits: &BTreeMap<String, i64>, id: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(i) = id {
        m.insert("id".into(), json!(i));
    }
    for k in quota_keys(c) {
        m.insert(k.into(), json!(limits.get(k).copied().unwrap_or(-1)));
    }
    Value::Object(m)
}

fn quota_target(svc: &ComputeService, c: &Caller, project: &str) -> NResult<()> {
    if project != c.project() {
        c.require_admin(svc, "os_compute_api:os-quota-sets:show")?;
    }
    Ok(())
}

async fn quota_show(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    quota_target(&svc, &c, &project)?;
    let q = query(raw);
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, first(&q, "user_id"));
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &l, Some(&project))}),
    ))
}

async fn quota_detail(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> NResult<Response> {
    quota_target(&svc, &c, &project)?;
    let q = query(raw);
    let user = first(&q, "user_id");
    let st = svc.state.read();
    let l = ops::quota_limits(&st, &project, user);
    let u = ops::quota_usage(&st, &project, user);
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for k in quota_keys(&c) {
        m.insert(k.into(), json!({"limit": l.get(k).copied().unwrap_or(-1), "in_use": u.get(k).copied().unwrap_or(0), "reserved": 0}));
    }
    Ok(json_resp(StatusCode::OK, json!({"quota_set": m})))
}

async fn quota_defaults(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    let st = svc.state.read();
    let l = ops::quota_limits(&st, "", None);
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &l, Some(&project))}),
    ))
}

fn parse_quota_body(
    c: &Caller,
    o: &Map<String, Value>,
    allow_force: bool,
) -> NResult<BTreeMap<String, i64>> {
    let keys = quota_keys(c);
    let mut out = BTreeMap::new();
    for (k, v) in o {
        if allow_force && k == "force" {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute quota_set. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| NovaError::bad(format!("Invalid input for field/attribute {k}. Value: {v}. {v} is not of type 'integer', 'string'")))?;
        if n < -1 {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute {k}. Value: {n}. {n} is less than the minimum of -1"
            )));
        }
        out.insert(k.clone(), n);
    }
    Ok(out)
}

async fn quota_update(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-sets:update")?;
    let b = body(&bytes)?;
    let o = b
        .get("quota_set")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            NovaError::bad(
                "Invalid input for field/attribute quota_set. 'quota_set' is a required property",
            )
        })?;
    let force = o.get("force").is_some_and(|f| {
        f.as_bool().unwrap_or(false) || f.as_str().is_some_and(|s| s == "true" || s == "True")
    });
    let new = parse_quota_body(&c, o, true)?;
    let q = query(raw);
    let user = first(&q, "user_id").map(str::to_string);
    let limits = svc
        .state
        .write(|st| {
            let usage = ops::quota_usage(st, &project, user.as_deref());
            if !force {
                for (k, v) in &new {
                    let used = usage.get(k).copied().unwrap_or(0);
                    if *v >= 0 && *v < used {
                        return Err(Error::validation(format!(
                            "Quota value {v} for {k} is less than already used and reserved {used}"
                        )));
                    }
                }
            }
            let mut pq = st.quotas.get(&project).cloned().unwrap_or(ProjectQuota {
                project_id: project.clone(),
                ..Default::default()
            });
            match &user {
                Some(u) => pq.users.entry(u.clone()).or_default().extend(new.clone()),
                None => pq.limits.extend(new.clone()),
            }
            let mut tmp = st.clone();
            tmp.quotas.insert(project.clone(), pq.clone());
            let l = ops::quota_limits(&tmp, &project, user.as_deref());
            Ok((l, vec![Rec::Quota(pq)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_set": quota_set(&c, &limits, None)}),
    ))
}

async fn quota_delete(
    AxState(svc): St,
    c: Caller,
    Path(project): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-sets:delete")?;
    svc.state
        .write(|st| {
            Ok((
                (),
                if st.quotas.contains_key(&project) {
                    vec![Rec::DelQuota(project.clone())]
                } else {
                    vec![]
                },
            ))
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn quota_class_show(
    AxState(svc): St,
    c: Caller,
    Path(class): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-class-sets:show")?;
    let st = svc.state.read();
    let l = ops::quota_limits(&st, "", None);
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_class_set": quota_set(&c, &l, Some(&class))}),
    ))
}

async fn quota_class_update(
    AxState(svc): St,
    c: Caller,
    Path(class): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-quota-class-sets:update")?;
    let b = body(&bytes)?;
    let o = super::request::member(
        &b,
        "quota_class_set",
        "Invalid input for field/attribute quota_class_set.",
    )?;
    let new = parse_quota_body(&c, o, false)?;
    let l = svc
        .state
        .write(|st| {
            if class != "default" {
                // Only the default class is honoured by Nova's counting quotas.
                return Ok((ops::quota_limits(st, "", None), vec![]));
            }
            let mut pq = st
                .quotas
                .get("__defaults__")
                .cloned()
                .unwrap_or(ProjectQuota {
                    project_id: "__defaults__".into(),
                    ..Default::default()
                });
            pq.limits.extend(new.clone());
            let mut tmp = st.clone();
            tmp.quotas.insert("__defaults__".into(), pq.clone());
            Ok((ops::quota_limits(&tmp, "", None), vec![Rec::Quota(pq)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"quota_class_set": quota_set(&c, &l, None)}),
    ))
}
