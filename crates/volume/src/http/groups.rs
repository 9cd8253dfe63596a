//! Generic volume groups (Cinder 3.11-3.20): group types with group specs,
//! groups of volumes (created empty, from a group snapshot or from another
//! group; volumes added and removed; deleted with their volumes), and group
//! snapshots (a snapshot of every member taken together). The per-volume
//! work runs through the volume and snapshot sagas; a group's own status
//! follows its members (`settle_*`), which start-up recovery re-evaluates.
use super::{Body, Query, St, accepted, accepted_empty, body_obj, list_params, ok, paginate};
use crate::error::{CResult, CinderError};
use crate::flows;
use crate::store::{Kind, Obj, State, b, i, new_id, now, s};
use crate::views::Mv;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_GROUP_TYPE: &str = "default_group_type";

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/group_types", get(gt_list).post(gt_create))
        .route(
            "/v3/group_types/{id}",
            get(gt_show).put(gt_update).delete(gt_delete),
        )
        .route(
            "/v3/group_types/{id}/group_specs",
            get(specs_list).post(specs_create),
        )
        .route(
            "/v3/group_types/{id}/group_specs/{key}",
            get(spec_show).put(spec_update).delete(spec_delete),
        )
        .route("/v3/groups", get(groups_list).post(group_create))
        .route("/v3/groups/detail", get(groups_detail))
        .route("/v3/groups/action", post(group_from_src))
        .route("/v3/groups/{id}", get(group_show).put(group_update))
        .route("/v3/groups/{id}/action", post(group_action))
        .route("/v3/group_snapshots", get(gs_list).post(gs_create))
        .route("/v3/group_snapshots/detail", get(gs_detail))
        .route("/v3/group_snapshots/{id}", get(gs_show).delete(gs_delete))
        .route("/v3/group_snapshots/{id}/action", post(gs_action))
}

fn need(mv: Mv, minor: u16) -> CResult<()> {
    if mv.at_least(minor) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

/// Creates the default group type at first start (as Cinder's migration does).
pub async fn ensure_default_group_type(svc: &VolumeService) -> Result<(), ferro_common::Error> {
    if svc
        .store
        .read()
        .iter(Kind::GroupType)
        .any(|t| s(t, "name") == DEFAULT_GROUP_TYPE)
    {
        return Ok(());
    }
    svc.store
        .write(|tx| {
            let mut t = Obj::new();
            t.insert("id".into(), json!(new_id()));
            t.insert("name".into(), json!(DEFAULT_GROUP_TYPE));
            t.insert("description".into(), json!("Default group type"));
            t.insert("is_public".into(), json!(true));
            t.insert("group_specs".into(), json!({}));
            t.insert("projects".into(), json!([]));
            tx.put(Kind::GroupType, t);
            Ok(())
        })
        .await
        .map_err(|e| ferro_common::Error::internal(e.message))
}

// ---------------------------------------------------------------- group types

fn gt_usable(t: &Obj, c: &Caller) -> bool {
    c.admin
        || b(t, "is_public")
        || t.get("projects")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|p| p.as_str() == Some(c.project.as_str())))
}

fn gt_find(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    let t = if id == "default" {
        st.iter(Kind::GroupType)
            .find(|t| s(t, "name") == DEFAULT_GROUP_TYPE)
            .cloned()
    } else {
        st.get(Kind::GroupType, id).cloned().or_else(|| {
            st.iter(Kind::GroupType)
                .find(|t| s(t, "name") == id)
                .cloned()
        })
    };
    t.filter(|t| gt_usable(t, c))
        .ok_or_else(|| CinderError::not_found(format!("Group type {id} could not be found.")))
}

fn gt_view(t: &Obj) -> Value {
    json!({"id": s(t, "id"), "name": s(t, "name"),
           "description": t.get("description").cloned().unwrap_or(Value::Null),
           "is_public": b(t, "is_public"),
           "group_specs": t.get("group_specs").cloned().unwrap_or_else(|| json!({}))})
}

fn bool_param(v: &Value, what: &str) -> CResult<bool> {
    match v {
        Value::Bool(x) => Ok(*x),
        Value::String(x) => match x.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "t" | "on" => Ok(true),
            "false" | "0" | "no" | "f" | "off" => Ok(false),
            _ => Err(CinderError::bad(format!("Invalid value '{x}' for {what}."))),
        },
        _ => Err(CinderError::bad(format!("Invalid value for {what}."))),
    }
}

fn specs_of(v: &Value) -> CResult<Map<String, Value>> {
    let o = v
        .as_object()
        .ok_or_else(|| CinderError::bad("Invalid input received: group_specs must be a dict"))?;
    for (k, x) in o {
        if k.is_empty() || k.len() > 255 || x.as_str().is_none_or(|s| s.len() > 255) {
            return Err(CinderError::bad(format!(
                "Invalid input received: group spec {k} must be a string of at most 255 characters"
            )));
        }
    }
    Ok(o.clone())
}

async fn gt_list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    need(mv, 11)?;
    let filter_public = match q.get("is_public") {
        None => (!c.admin).then_some(true),
        Some(x) if x.eq_ignore_ascii_case("none") || x.eq_ignore_ascii_case("all") => None,
        Some(x) => Some(bool_param(&json!(x), "is_public")?),
    };
    let st = svc.store.read();
    let mut items: Vec<Value> = st
        .iter(Kind::GroupType)
        .filter(|t| gt_usable(t, &c))
        .filter(|t| match filter_public {
            Some(p) if c.admin => b(t, "is_public") == p,
            _ => true,
        })
        .map(|t| gt_view(t))
        .collect();
    let (key, asc) = match q.get("sort") {
        Some(x) => {
            let (k, d) = x.split_once(':').unwrap_or((x, "asc"));
            (k.to_string(), d != "desc")
        }
        None => ("id".to_string(), true),
    };
    items.sort_by(|a, b2| {
        let o = a[&key].to_string().cmp(&b2[&key].to_string());
        if asc { o } else { o.reverse() }
    });
    Ok(ok(json!({"group_types": items})))
}

async fn gt_show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need(mv, 11)?;
    let st = svc.store.read();
    let t = gt_find(&st, &c, &id)?;
    Ok(ok(json!({"group_type": gt_view(&t)})))
}

async fn gt_create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    need(mv, 11)?;
    c.require_admin("group:group_types:create")?;
    let req = body_obj(&body, "group_type")?.clone();
    let name = req
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or_else(|| {
            CinderError::bad("Invalid input received: group type name can not be empty.")
        })?
        .to_string();
    let specs = match req.get("group_specs") {
        None | Some(Value::Null) => Map::new(),
        Some(v) => specs_of(v)?,
    };
    let public = match req.get("is_public") {
        None | Some(Value::Null) => true,
        Some(v) => bool_param(v, "is_public")?,
    };
    let t = svc
        .store
        .write(|tx| {
            if tx.st.iter(Kind::GroupType).any(|t| s(t, "name") == name) {
                return Err(CinderError::conflict(format!(
                    "Group Type {name} already exists."
                )));
            }
            let mut t = Obj::new();
            t.insert("id".into(), json!(new_id()));
            t.insert("name".into(), json!(name));
            t.insert(
                "description".into(),
                req.get("description").cloned().unwrap_or(Value::Null),
            );
            t.insert("is_public".into(), json!(public));
            t.insert("group_specs".into(), Value::Object(specs));
            t.insert("projects".into(), json!([]));
            tx.put(Kind::GroupType, t.clone());
            Ok(t)
        })
        .await?;
    Ok(accepted(json!({"group_type": gt_view(&t)})))
}

async fn gt_update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 11)?;
    c.require_admin("group:group_types:update")?;
    let req = body_obj(&body, "group_type")?.clone();
    let t = svc
        .store
        .write(|tx| {
            let mut t = tx.get(Kind::GroupType, &id).ok_or_else(|| {
                CinderError::not_found(format!("Group type {id} could not be found."))
            })?;
            if let Some(n) = req.get("name").filter(|n| !n.is_null()) {
                let n = n
                    .as_str()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        CinderError::bad(
                            "Invalid input received: group type name can not be empty.",
                        )
                    })?;
                if tx
                    .st
                    .iter(Kind::GroupType)
                    .any(|o| s(o, "name") == n && s(o, "id") != id)
                {
                    return Err(CinderError::conflict(format!(
                        "Group Type {n} already exists."
                    )));
                }
                t.insert("name".into(), json!(n));
            }
            if let Some(d) = req.get("description") {
                t.insert("description".into(), d.clone());
            }
            if let Some(p) = req.get("is_public").filter(|p| !p.is_null()) {
                t.insert("is_public".into(), json!(bool_param(p, "is_public")?));
            }
            tx.put(Kind::GroupType, t.clone());
            Ok(t)
        })
        .await?;
    Ok(ok(json!({"group_type": gt_view(&t)})))
}

async fn gt_delete(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
) -> CResult<Response> {
    need(mv, 11)?;
    c.require_admin("group:group_types:delete")?;
    svc.store
        .write(|tx| {
            let t = tx.get(Kind::GroupType, &id).ok_or_else(|| {
                CinderError::not_found(format!("Group type {id} could not be found."))
            })?;
            if s(&t, "name") == DEFAULT_GROUP_TYPE {
                return Err(CinderError::bad(
                    "The default group type cannot be deleted.",
                ));
            }
            if tx.st.iter(Kind::Group).any(|g| s(g, "group_type") == id) {
                return Err(CinderError::bad(format!(
                    "Group Type {id} deletion is not allowed with groups present with the type."
                )));
            }
            tx.del(Kind::GroupType, &id);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn change_specs(
    svc: &VolumeService,
    c: &Caller,
    id: &str,
    f: impl FnOnce(&mut Map<String, Value>) -> CResult<()>,
) -> CResult<()> {
    c.require_admin("group:group_types_specs")?;
    svc.store
        .write(|tx| {
            let mut t = tx.get(Kind::GroupType, id).ok_or_else(|| {
                CinderError::not_found(format!("Group type {id} could not be found."))
            })?;
            let mut m = t
                .get("group_specs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            f(&mut m)?;
            t.insert("group_specs".into(), Value::Object(m));
            tx.put(Kind::GroupType, t);
            Ok(())
        })
        .await
}

async fn specs_list(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
) -> CResult<Response> {
    need(mv, 11)?;
    c.require_admin("group:group_types_specs")?;
    let st = svc.store.read();
    let t = gt_find(&st, &c, &id)?;
    Ok(ok(
        json!({"group_specs": t.get("group_specs").cloned().unwrap_or_else(|| json!({}))}),
    ))
}

async fn specs_create(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 11)?;
    let new = specs_of(body.get("group_specs").ok_or_else(|| {
        CinderError::bad("Missing required element 'group_specs' in request body.")
    })?)?;
    let out = new.clone();
    change_specs(&svc, &c, &id, |m| {
        m.extend(new);
        Ok(())
    })
    .await?;
    Ok(accepted(json!({"group_specs": out})))
}

async fn spec_show(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    need(mv, 11)?;
    c.require_admin("group:group_types_specs")?;
    let st = svc.store.read();
    let t = gt_find(&st, &c, &id)?;
    let v = t
        .get("group_specs")
        .and_then(|m| m.get(&key))
        .cloned()
        .ok_or_else(|| {
            CinderError::not_found(format!("Group Type {id} has no specs with key {key}."))
        })?;
    Ok(ok(json!({key: v})))
}

async fn spec_update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path((id, key)): Path<(String, String)>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 11)?;
    let o = body
        .as_object()
        .filter(|o| o.len() == 1 && o.contains_key(&key))
        .ok_or_else(|| CinderError::bad("Request body and URI mismatch"))?;
    let new = specs_of(&Value::Object(o.clone()))?;
    let out = new.clone();
    change_specs(&svc, &c, &id, |m| {
        m.extend(new);
        Ok(())
    })
    .await?;
    Ok(ok(Value::Object(out)))
}

async fn spec_delete(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    need(mv, 11)?;
    let (k2, id2) = (key.clone(), id.clone());
    change_specs(&svc, &c, &id, move |m| {
        m.remove(&k2).map(|_| ()).ok_or_else(|| {
            CinderError::not_found(format!("Group Type {id2} has no specs with key {k2}."))
        })
    })
    .await?;
    Ok(accepted_empty())
}

// ---------------------------------------------------------------- groups

fn group_find(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(Kind::Group, id)
        .filter(|g| c.owns(g))
        .cloned()
        .ok_or_else(|| CinderError::not_found(format!("Group {id} could not be found.")))
}

fn members<'a>(st: &'a State, group: &'a str) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
    st.iter(Kind::Volume)
        .filter(move |v| s(v, "group_id") == group)
}

fn group_view(st: &State, c: &Caller, mv: Mv, g: &Obj, with_volumes: bool) -> Value {
    let mut o = json!({
        "id": s(g, "id"), "name": g.get("name").cloned().unwrap_or(Value::Null),
        "description": g.get("description").cloned().unwrap_or(Value::Null),
        "status": s(g, "status"), "availability_zone": s(g, "availability_zone"),
        "created_at": s(g, "created_at"), "group_type": s(g, "group_type"),
        "volume_types": g.get("volume_types").cloned().unwrap_or_else(|| json!([])),
    });
    if mv.at_least(14) {
        o["group_snapshot_id"] = g.get("group_snapshot_id").cloned().unwrap_or(Value::Null);
        o["source_group_id"] = g.get("source_group_id").cloned().unwrap_or(Value::Null);
    }
    if with_volumes && mv.at_least(25) {
        o["volumes"] = json!(
            members(st, s(g, "id"))
                .map(|v| s(v, "id"))
                .collect::<Vec<_>>()
        );
    }
    if mv.at_least(38) {
        o["replication_status"] = json!(match s(g, "replication_status") {
            "" => "disabled",
            x => x,
        });
    }
    if mv.at_least(58) && c.admin {
        o["project_id"] = json!(s(g, "project_id"));
    }
    o
}

async fn groups_impl(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    q: &Query,
    detail: bool,
) -> CResult<Response> {
    need(mv, 13)?;
    let p = list_params(q, &["id", "name", "status", "created_at"])?;
    let st = svc.store.read();
    let items: Vec<Arc<Obj>> = st
        .iter(Kind::Group)
        .filter(|g| s(g, "project_id") == c.project || (c.admin && p.all_tenants))
        .filter(|g| {
            p.filters.iter().all(|(k, v)| match k.as_str() {
                "name" | "status" | "group_type" | "availability_zone" => s(g, k) == v,
                _ => true,
            })
        })
        .cloned()
        .collect();
    let path = if detail { "groups/detail" } else { "groups" };
    let (page, links) = paginate(svc, items, &p, path, q)?;
    let list: Vec<Value> = page
        .iter()
        .map(|g| {
            if detail {
                group_view(
                    &st,
                    c,
                    mv,
                    g,
                    q.get("list_volume")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                )
            } else {
                json!({"id": s(g, "id"), "name": g.get("name").cloned().unwrap_or(Value::Null)})
            }
        })
        .collect();
    let mut body = json!({"groups": list});
    if let Some(l) = links {
        body["groups_links"] = l;
    }
    Ok(ok(body))
}

async fn groups_list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    groups_impl(&svc, &c, mv, &q, false).await
}

async fn groups_detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    groups_impl(&svc, &c, mv, &q, true).await
}

async fn group_show(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    q: Query,
) -> CResult<Response> {
    need(mv, 13)?;
    let st = svc.store.read();
    let g = group_find(&st, &c, &id)?;
    let with = q
        .get("list_volume")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(ok(json!({"group": group_view(&st, &c, mv, &g, with)})))
}

/// Resolves a list of volume type names or ids.
fn type_ids(st: &State, c: &Caller, v: &Value) -> CResult<Vec<String>> {
    let list: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(x) => x
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    if list.is_empty() {
        return Err(CinderError::bad(
            "Invalid input received: volume_types must be provided to create group.",
        ));
    }
    list.iter()
        .map(|t| {
            st.volume_type(t)
                .filter(|x| super::volumes::type_usable(x, c))
                .map(|x| s(x, "id").to_string())
                .ok_or_else(|| {
                    CinderError::not_found(format!("Volume type {t} could not be found."))
                })
        })
        .collect()
}

fn new_group(
    svc: &VolumeService,
    c: &Caller,
    req: &Map<String, Value>,
    gtype: &str,
    vtypes: Vec<String>,
    status: &str,
) -> Obj {
    let mut g = Obj::new();
    g.insert("id".into(), json!(new_id()));
    g.insert(
        "name".into(),
        req.get("name").cloned().unwrap_or(Value::Null),
    );
    g.insert(
        "description".into(),
        req.get("description").cloned().unwrap_or(Value::Null),
    );
    g.insert("status".into(), json!(status));
    g.insert(
        "availability_zone".into(),
        json!(svc.cfg.volume.default_availability_zone),
    );
    g.insert("project_id".into(), json!(c.project));
    g.insert("user_id".into(), json!(c.user()));
    g.insert("group_type".into(), json!(gtype));
    g.insert("volume_types".into(), json!(vtypes));
    g.insert("created_at".into(), json!(now()));
    g
}

fn check_group_quota(svc: &VolumeService, st: &State, project: &str) -> CResult<()> {
    let limit = svc.quota_limit(st, project, "groups");
    let used = st
        .iter(Kind::Group)
        .filter(|g| s(g, "project_id") == project)
        .count() as i64;
    if limit >= 0 && used + 1 > limit {
        return Err(CinderError::over_quota(format!(
            "Maximum number of groups allowed ({limit}) exceeded for quota 'groups'."
        )));
    }
    Ok(())
}

async fn group_create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    need(mv, 13)?;
    c.require_writer("group:create")?;
    let req = body_obj(&body, "group")?.clone();
    if let Some(z) = req.get("availability_zone").and_then(Value::as_str)
        && z != svc.cfg.volume.default_availability_zone
    {
        return Err(CinderError::bad(format!(
            "Invalid input received: Availability zone '{z}' is invalid."
        )));
    }
    let svc2 = svc.clone();
    let g = svc
        .store
        .write(|tx| {
            let gt = req
                .get("group_type")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CinderError::bad(
                        "Invalid input received: group_type must be provided to create group.",
                    )
                })?;
            let gt = gt_find(&tx.st, &c, gt)?;
            let vtypes = type_ids(&tx.st, &c, req.get("volume_types").unwrap_or(&Value::Null))?;
            check_group_quota(&svc2, &tx.st, &c.project)?;
            let g = new_group(&svc2, &c, &req, s(&gt, "id"), vtypes, "available");
            tx.put(Kind::Group, g.clone());
            Ok(g)
        })
        .await?;
    Ok(accepted(
        json!({"group": {"id": s(&g, "id"), "name": g.get("name").cloned().unwrap_or(Value::Null)}}),
    ))
}

fn id_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_str)
        .map(|x| {
            x.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

async fn group_update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 13)?;
    c.require_writer("group:update")?;
    let req = body_obj(&body, "group")?.clone();
    let add = id_list(req.get("add_volumes"));
    let remove = id_list(req.get("remove_volumes"));
    if !req.contains_key("name")
        && !req.contains_key("description")
        && add.is_empty()
        && remove.is_empty()
    {
        return Err(CinderError::bad(
            "Name, description, add_volumes, and remove_volumes can not be all empty in the request body.",
        ));
    }
    svc.store
        .write(|tx| {
            let mut g = (*group_find(&tx.st, &c, &id)?).clone();
            if (!add.is_empty() || !remove.is_empty()) && s(&g, "status") != "available" {
                return Err(CinderError::bad(format!(
                    "Invalid group: Group status must be available, but current status is: {}.",
                    s(&g, "status")
                )));
            }
            let allowed: Vec<String> = g
                .get("volume_types")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            for v in &add {
                let mut vol = tx
                    .get(Kind::Volume, v)
                    .filter(|x| c.owns(x))
                    .ok_or_else(|| CinderError::volume_not_found(v))?;
                if !matches!(s(&vol, "status"), "available" | "in-use") {
                    return Err(CinderError::bad(format!(
                        "Invalid volume: Cannot add volume {v} to group {id} because volume is in an invalid state: {}.",
                        s(&vol, "status")
                    )));
                }
                if !s(&vol, "group_id").is_empty() && s(&vol, "group_id") != id {
                    return Err(CinderError::bad(format!(
                        "Invalid volume: Volume {v} is already in a group."
                    )));
                }
                if !allowed.iter().any(|t| t == s(&vol, "volume_type_id")) {
                    return Err(CinderError::bad(format!(
                        "Invalid volume: Cannot add volume {v} to group {id} because volume type {} is not supported by the group.",
                        s(&vol, "volume_type")
                    )));
                }
                vol.insert("group_id".into(), json!(id));
                tx.put(Kind::Volume, vol);
            }
            for v in &remove {
                let mut vol = tx
                    .get(Kind::Volume, v)
                    .filter(|x| s(x, "group_id") == id)
                    .ok_or_else(|| CinderError::bad(format!(
                        "Invalid volume: Cannot remove volume {v} from group {id} because it is not in the group."
                    )))?;
                vol.insert("group_id".into(), Value::Null);
                tx.put(Kind::Volume, vol);
            }
            if let Some(n) = req.get("name") {
                g.insert("name".into(), n.clone());
            }
            if let Some(d) = req.get("description") {
                g.insert("description".into(), d.clone());
            }
            tx.put(Kind::Group, g);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

const GROUP_STATUSES: [&str; 7] = [
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "in-use",
    "updating",
];

async fn group_action(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 13)?;
    if let Some(arg) = body.get("delete") {
        c.require_writer("group:delete")?;
        let with_volumes = arg
            .get("delete-volumes")
            .map(|v| bool_param(v, "delete-volumes"))
            .transpose()?
            .unwrap_or(false);
        let vols = svc
            .store
            .write(|tx| {
                let mut g = (*group_find(&tx.st, &c, &id)?).clone();
                if !matches!(s(&g, "status"), "available" | "error") {
                    return Err(CinderError::bad(format!(
                        "Invalid group: Group status must be available or error, but current status is: {}",
                        s(&g, "status")
                    )));
                }
                if tx.st.iter(Kind::GroupSnapshot).any(|x| s(x, "group_id") == id) {
                    return Err(CinderError::bad(format!(
                        "Invalid group: Group {id} has existing group snapshots."
                    )));
                }
                let vols: Vec<Obj> = members(&tx.st, &id).map(|v| (**v).clone()).collect();
                if !vols.is_empty() && !with_volumes {
                    return Err(CinderError::bad(format!(
                        "Invalid group: Group {id} still contains volumes. The delete-volumes flag is required to delete it."
                    )));
                }
                for v in &vols {
                    let vid = s(v, "id");
                    let attached = tx.st.attachments_of(vid).next().is_some();
                    if attached || tx.st.snapshots_of(vid).next().is_some() {
                        return Err(CinderError::bad(format!(
                            "Invalid volume: Volume {vid} in the group is attached or has snapshots."
                        )));
                    }
                }
                for mut v in vols.clone() {
                    v.insert("status".into(), json!("deleting"));
                    tx.put(Kind::Volume, v);
                }
                g.insert("status".into(), json!("deleting"));
                tx.put(Kind::Group, g);
                Ok(vols)
            })
            .await?;
        for v in &vols {
            flows::spawn(&svc, flows::DELETE, json!({"id": s(v, "id")}));
        }
        watch(svc.clone(), Kind::Group, id);
        return Ok(accepted_empty());
    }
    if let Some(name) = [
        "enable_replication",
        "disable_replication",
        "failover_replication",
        "list_replication_targets",
    ]
    .into_iter()
    .find(|k| body.get(*k).is_some())
    {
        need(mv, 38)?;
        return replication_action(&svc, &c, &id, name);
    }
    if let Some(arg) = body.get("reset_status") {
        need(mv, 20)?;
        c.require_admin("group:reset_status")?;
        let status = arg
            .get("status")
            .and_then(Value::as_str)
            .filter(|x| GROUP_STATUSES.contains(x))
            .ok_or_else(|| CinderError::bad("Must specify a valid status"))?
            .to_string();
        svc.store
            .update(Kind::Group, &id, |g| {
                g.insert("status".into(), json!(status));
                Ok(())
            })
            .await
            .map_err(|e| {
                if e.code == 404 {
                    CinderError::not_found(format!("Group {id} could not be found."))
                } else {
                    e
                }
            })?;
        return Ok(accepted_empty());
    }
    Err(CinderError::bad("Invalid group action"))
}

/// Group replication (3.38, Cinder's "Tiramisu"). The group type must
/// ask for it and every volume type must be `replication_enabled`; the
/// file backend has no replication target, so enabling it is refused and
/// the group's `replication_status` stays `disabled`.
fn replication_action(
    svc: &VolumeService,
    c: &Caller,
    id: &str,
    action: &str,
) -> CResult<Response> {
    c.require_writer(&format!("group:{action}"))?;
    let st = svc.store.read();
    let g = group_find(&st, c, id)?;
    let gt = st.get(Kind::GroupType, s(&g, "group_type")).cloned();
    let replicated = gt.as_ref().is_some_and(|t| {
        [
            "group_replication_enabled",
            "consistent_group_replication_enabled",
        ]
        .iter()
        .any(|k| {
            t.get("group_specs")
                .and_then(|x| x.get(*k))
                .and_then(Value::as_str)
                .is_some_and(|v| v == "<is> True")
        })
    });
    if !replicated {
        return Err(CinderError::bad(format!(
            "Invalid group type: Group {id} is not a replication group type."
        )));
    }
    if action == "list_replication_targets" {
        return Ok(ok(json!({"replication_targets": []})));
    }
    let types: Vec<String> = g
        .get("volume_types")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for tid in types {
        let ok_type = st
            .get(Kind::VolumeType, &tid)
            .is_some_and(|t| super::volumes::spec_is_true(t, "replication_enabled"));
        if !ok_type {
            return Err(CinderError::bad(format!(
                "Invalid volume type: Volume type {tid} does not have 'replication_enabled' spec key set to '<is> True'."
            )));
        }
    }
    let rep = match s(&g, "replication_status") {
        "" => "disabled",
        x => x,
    };
    if action == "enable_replication" {
        if s(&g, "status") != "available" {
            return Err(CinderError::bad(format!(
                "Invalid group: Group {id} status must be ['available'], but current status is: {}.",
                s(&g, "status")
            )));
        }
        return Err(CinderError::bad(format!(
            "Invalid group: Group {id} cannot be replicated: backend {} has no replication target.",
            svc.backend.name()
        )));
    }
    Err(CinderError::bad(format!(
        "Invalid group: Group {id} replication status must be ['enabled', 'error'], but current status is: {rep}."
    )))
}

/// `create-from-src` (3.14): a new group whose volumes are made from a
/// group snapshot's snapshots or cloned from another group's volumes.
async fn group_from_src(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 14)?;
    c.require_writer("group:create_group_from_src")?;
    let req = body_obj(&body, "create-from-src")?.clone();
    let gs_id = req
        .get("group_snapshot_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let src_id = req
        .get("source_group_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if gs_id.is_some() == src_id.is_some() {
        return Err(CinderError::bad(
            "Invalid input received: Either 'group_snapshot_id' or 'source_group_id' must be provided, but not both.",
        ));
    }
    let svc2 = svc.clone();
    let (g, vols) = svc
        .store
        .write(|tx| {
            // (source snapshot or volume, its volume for type and size)
            let (src_group, sources): (Arc<Obj>, Vec<Source>) = if let Some(gs) = &gs_id {
                let x = tx
                    .st
                    .get(Kind::GroupSnapshot, gs)
                    .filter(|x| c.owns(x))
                    .cloned()
                    .ok_or_else(|| {
                        CinderError::not_found(format!("GroupSnapshot {gs} could not be found."))
                    })?;
                if s(&x, "status") != "available" {
                    return Err(CinderError::bad(
                        "Invalid group snapshot: status must be available.",
                    ));
                }
                let grp = group_find(&tx.st, &c, s(&x, "group_id"))?;
                let mut srcs = Vec::new();
                for sn in tx
                    .st
                    .iter(Kind::Snapshot)
                    .filter(|sn| s(sn, "group_snapshot_id") == gs)
                {
                    let v = tx
                        .st
                        .get(Kind::Volume, s(sn, "volume_id"))
                        .map(|v| (**v).clone())
                        .unwrap_or_default();
                    let mut v2 = v.clone();
                    v2.insert("size".into(), json!(i(sn, "size")));
                    srcs.push((Some(s(sn, "id").to_string()), None, v2));
                }
                (grp, srcs)
            } else {
                let sg = src_id.clone().unwrap_or_default();
                let grp = group_find(&tx.st, &c, &sg)?;
                if s(&grp, "status") != "available" {
                    return Err(CinderError::bad(
                        "Invalid group: source group status must be available.",
                    ));
                }
                let srcs = members(&tx.st, &sg)
                    .map(|v| (None, Some(s(v, "id").to_string()), (**v).clone()))
                    .collect();
                (grp, srcs)
            };
            check_group_quota(&svc2, &tx.st, &c.project)?;
            let vtypes: Vec<String> = src_group
                .get("volume_types")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            let mut g = new_group(
                &svc2,
                &c,
                &req,
                s(&src_group, "group_type"),
                vtypes,
                "creating",
            );
            g.insert("group_snapshot_id".into(), json!(gs_id));
            g.insert("source_group_id".into(), json!(src_id));
            let gid = s(&g, "id").to_string();
            let mut made = Vec::new();
            for (snap, srcvol, v) in sources {
                let size = i(&v, "size");
                svc2.check_quota(&tx.st, &c.project, s(&v, "volume_type"), 1, 0, size)?;
                let mut nv = Obj::new();
                let vid = new_id();
                nv.insert("id".into(), json!(vid));
                nv.insert("name".into(), v.get("name").cloned().unwrap_or(Value::Null));
                nv.insert("description".into(), Value::Null);
                nv.insert("size".into(), json!(size));
                nv.insert("status".into(), json!("creating"));
                nv.insert(
                    "availability_zone".into(),
                    json!(s(&g, "availability_zone")),
                );
                nv.insert("project_id".into(), json!(c.project));
                nv.insert("user_id".into(), json!(c.user()));
                nv.insert("metadata".into(), json!({}));
                nv.insert("admin_metadata".into(), json!({}));
                nv.insert("bootable".into(), json!(b(&v, "bootable")));
                nv.insert("multiattach".into(), json!(false));
                nv.insert("snapshot_id".into(), json!(snap));
                nv.insert("source_volid".into(), json!(srcvol));
                nv.insert("volume_type".into(), json!(s(&v, "volume_type")));
                nv.insert("volume_type_id".into(), json!(s(&v, "volume_type_id")));
                nv.insert("group_id".into(), json!(gid));
                nv.insert("created_at".into(), json!(now()));
                nv.insert("updated_at".into(), Value::Null);
                nv.insert("replication_status".into(), json!("disabled"));
                tx.put(Kind::Volume, nv.clone());
                made.push(nv);
            }
            tx.put(Kind::Group, g.clone());
            Ok((g, made))
        })
        .await?;
    for v in &vols {
        let mut state = json!({"id": s(v, "id"), "size": i(v, "size")});
        if let Some(x) = v.get("snapshot_id").and_then(Value::as_str) {
            state["snapshot_id"] = json!(x);
        }
        if let Some(x) = v.get("source_volid").and_then(Value::as_str) {
            state["source_volid"] = json!(x);
        }
        flows::spawn(&svc, flows::CREATE, state);
    }
    watch(svc.clone(), Kind::Group, s(&g, "id").to_string());
    Ok(accepted(
        json!({"group": {"id": s(&g, "id"), "name": g.get("name").cloned().unwrap_or(Value::Null)}}),
    ))
}

// ---------------------------------------------------------------- group snapshots

/// What a new group's volume is made from: (snapshot, source volume, the
/// source's volume record with the size to make).
type Source = (Option<String>, Option<String>, Obj);

fn gs_find(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(Kind::GroupSnapshot, id)
        .filter(|x| c.owns(x))
        .cloned()
        .ok_or_else(|| CinderError::not_found(format!("GroupSnapshot {id} could not be found.")))
}

fn gs_view(c: &Caller, mv: Mv, x: &Obj) -> Value {
    let mut o = json!({"id": s(x, "id"), "group_id": s(x, "group_id"),
           "name": x.get("name").cloned().unwrap_or(Value::Null),
           "description": x.get("description").cloned().unwrap_or(Value::Null),
           "status": s(x, "status"), "created_at": s(x, "created_at"),
           "group_type_id": s(x, "group_type_id")});
    if mv.at_least(58) && c.admin {
        o["project_id"] = json!(s(x, "project_id"));
    }
    o
}

async fn gs_impl(
    svc: &VolumeService,
    c: &Caller,
    mv: Mv,
    q: &Query,
    detail: bool,
) -> CResult<Response> {
    need(mv, 14)?;
    let p = list_params(q, &["id", "name", "status", "created_at"])?;
    let st = svc.store.read();
    let items: Vec<Arc<Obj>> = st
        .iter(Kind::GroupSnapshot)
        .filter(|x| s(x, "project_id") == c.project || (c.admin && p.all_tenants))
        .filter(|x| {
            p.filters.iter().all(|(k, v)| match k.as_str() {
                "name" | "status" | "group_id" => s(x, k) == v,
                _ => true,
            })
        })
        .cloned()
        .collect();
    let path = if detail {
        "group_snapshots/detail"
    } else {
        "group_snapshots"
    };
    let (page, links) = paginate(svc, items, &p, path, q)?;
    let list: Vec<Value> = page
        .iter()
        .map(|x| {
            if detail {
                gs_view(c, mv, x)
            } else {
                json!({"id": s(x, "id"), "name": x.get("name").cloned().unwrap_or(Value::Null)})
            }
        })
        .collect();
    let mut body = json!({"group_snapshots": list});
    if let Some(l) = links {
        body["group_snapshots_links"] = l;
    }
    Ok(ok(body))
}

async fn gs_list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    gs_impl(&svc, &c, mv, &q, false).await
}

async fn gs_detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    gs_impl(&svc, &c, mv, &q, true).await
}

async fn gs_show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need(mv, 14)?;
    let st = svc.store.read();
    let x = gs_find(&st, &c, &id)?;
    Ok(ok(json!({"group_snapshot": gs_view(&c, mv, &x)})))
}

async fn gs_create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    need(mv, 14)?;
    c.require_writer("group:create_group_snapshot")?;
    let req = body_obj(&body, "group_snapshot")?.clone();
    let gid = req
        .get("group_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Invalid input received: group_id must be provided."))?
        .to_string();
    let svc2 = svc.clone();
    let (x, snaps) = svc
        .store
        .write(|tx| {
            let g = group_find(&tx.st, &c, &gid)?;
            if s(&g, "status") != "available" {
                return Err(CinderError::bad(format!(
                    "Invalid group: Group status must be available, but current status is: {}.",
                    s(&g, "status")
                )));
            }
            let vols: Vec<Obj> = members(&tx.st, &gid).map(|v| (**v).clone()).collect();
            if vols.is_empty() {
                return Err(CinderError::bad(format!(
                    "Invalid group: Group {gid} has no volumes."
                )));
            }
            let gsid = new_id();
            let mut snaps = Vec::new();
            for v in &vols {
                if !matches!(s(v, "status"), "available" | "in-use") {
                    return Err(CinderError::bad(format!(
                        "Invalid volume: Volume {} is {}.",
                        s(v, "id"),
                        s(v, "status")
                    )));
                }
                svc2.check_quota(&tx.st, &c.project, s(v, "volume_type"), 0, 1, i(v, "size"))?;
                let mut sn = Obj::new();
                sn.insert("id".into(), json!(new_id()));
                sn.insert("volume_id".into(), json!(s(v, "id")));
                sn.insert(
                    "name".into(),
                    req.get("name").cloned().unwrap_or(Value::Null),
                );
                sn.insert("description".into(), Value::Null);
                sn.insert("status".into(), json!("creating"));
                sn.insert("progress".into(), json!("0%"));
                sn.insert("size".into(), json!(i(v, "size")));
                sn.insert("metadata".into(), json!({}));
                sn.insert("project_id".into(), json!(c.project));
                sn.insert("user_id".into(), json!(c.user()));
                sn.insert("group_snapshot_id".into(), json!(gsid));
                sn.insert("created_at".into(), json!(now()));
                sn.insert("updated_at".into(), Value::Null);
                tx.put(Kind::Snapshot, sn.clone());
                snaps.push(sn);
            }
            let mut x = Obj::new();
            x.insert("id".into(), json!(gsid));
            x.insert("group_id".into(), json!(gid));
            x.insert(
                "name".into(),
                req.get("name").cloned().unwrap_or(Value::Null),
            );
            x.insert(
                "description".into(),
                req.get("description").cloned().unwrap_or(Value::Null),
            );
            x.insert("status".into(), json!("creating"));
            x.insert("group_type_id".into(), json!(s(&g, "group_type")));
            x.insert("project_id".into(), json!(c.project));
            x.insert("created_at".into(), json!(now()));
            tx.put(Kind::GroupSnapshot, x.clone());
            Ok((x, snaps))
        })
        .await?;
    for sn in &snaps {
        flows::spawn(
            &svc,
            flows::SNAP_CREATE,
            json!({"id": s(sn, "id"), "volume_id": s(sn, "volume_id")}),
        );
    }
    watch(svc.clone(), Kind::GroupSnapshot, s(&x, "id").to_string());
    Ok(accepted(json!({"group_snapshot": {"id": s(&x, "id"),
        "name": x.get("name").cloned().unwrap_or(Value::Null), "group_type_id": s(&x, "group_type_id")}})))
}

async fn gs_delete(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
) -> CResult<Response> {
    need(mv, 14)?;
    c.require_writer("group:delete_group_snapshot")?;
    let snaps = svc
        .store
        .write(|tx| {
            let mut x = (*gs_find(&tx.st, &c, &id)?).clone();
            if !matches!(s(&x, "status"), "available" | "error") {
                return Err(CinderError::bad(format!(
                    "Invalid group snapshot: status must be available or error, but is {}.",
                    s(&x, "status")
                )));
            }
            let snaps: Vec<Obj> = tx
                .st
                .iter(Kind::Snapshot)
                .filter(|sn| s(sn, "group_snapshot_id") == id)
                .map(|sn| (**sn).clone())
                .collect();
            for mut sn in snaps.clone() {
                sn.insert("status".into(), json!("deleting"));
                tx.put(Kind::Snapshot, sn);
            }
            x.insert("status".into(), json!("deleting"));
            tx.put(Kind::GroupSnapshot, x);
            Ok(snaps)
        })
        .await?;
    for sn in &snaps {
        flows::spawn(&svc, flows::SNAP_DELETE, json!({"id": s(sn, "id")}));
    }
    watch(svc.clone(), Kind::GroupSnapshot, id);
    Ok(accepted_empty())
}

async fn gs_action(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need(mv, 19)?;
    c.require_admin("group:reset_group_snapshot_status")?;
    let status = body
        .get("reset_status")
        .and_then(|a| a.get("status"))
        .and_then(Value::as_str)
        .filter(|x| {
            matches!(
                *x,
                "creating" | "available" | "deleting" | "error" | "error_deleting"
            )
        })
        .ok_or_else(|| CinderError::bad("Must specify a valid status"))?
        .to_string();
    svc.store
        .update(Kind::GroupSnapshot, &id, |x| {
            x.insert("status".into(), json!(status));
            Ok(())
        })
        .await
        .map_err(|e| {
            if e.code == 404 {
                CinderError::not_found(format!("GroupSnapshot {id} could not be found."))
            } else {
                e
            }
        })?;
    Ok(accepted_empty())
}

// ---------------------------------------------------------------- settling

/// Moves a group or group snapshot in `creating`/`deleting` on from its
/// members' states. Returns whether it is still in transition.
pub async fn settle(svc: &VolumeService, k: Kind, id: &str) -> bool {
    let st = svc.store.read();
    let Some(o) = st.get(k, id).cloned() else {
        return false;
    };
    let status = s(&o, "status").to_string();
    let member_states: Vec<String> = match k {
        Kind::Group => members(&st, id)
            .map(|v| s(v, "status").to_string())
            .collect(),
        _ => st
            .iter(Kind::Snapshot)
            .filter(|sn| s(sn, "group_snapshot_id") == id)
            .map(|sn| s(sn, "status").to_string())
            .collect(),
    };
    drop(st);
    let next: Option<Option<&str>> = match status.as_str() {
        "creating" => {
            if member_states.iter().any(|m| m.starts_with("error")) {
                Some(Some("error"))
            } else if member_states.iter().all(|m| m == "available") {
                Some(Some("available"))
            } else {
                None
            }
        }
        "deleting" => {
            if member_states.is_empty() {
                Some(None)
            } else if member_states.iter().any(|m| m.starts_with("error")) {
                Some(Some("error_deleting"))
            } else {
                None
            }
        }
        _ => return false,
    };
    let Some(next) = next else {
        return true;
    };
    let r = svc
        .store
        .write(|tx| {
            match next {
                Some(to) => {
                    if let Some(mut o) = tx.get(k, id) {
                        o.insert("status".into(), json!(to));
                        tx.put(k, o);
                    }
                }
                None => tx.del(k, id),
            }
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(id, "settling a group: {}", e.message);
    }
    false
}

/// Settles `id` in the background until it leaves its transition.
fn watch(svc: Arc<VolumeService>, k: Kind, id: String) {
    tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        while settle(&svc, k, &id).await && t0.elapsed() < Duration::from_secs(3600) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Start-up: groups and group snapshots left in transition are watched again.
pub fn recover(svc: &Arc<VolumeService>) {
    let st = svc.store.read();
    for k in [Kind::Group, Kind::GroupSnapshot] {
        for o in st.iter(k) {
            if matches!(s(o, "status"), "creating" | "deleting") {
                watch(svc.clone(), k, s(o, "id").to_string());
            }
        }
    }
}
