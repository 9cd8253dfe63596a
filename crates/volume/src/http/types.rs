//! Volume types (`/v3/types`) with extra specs and project access lists,
//! and QoS specs (`/v3/qos-specs`) with their type associations.
use super::{Body, Query, St, accepted_empty, body_obj, ok};
use crate::error::{CResult, CinderError};
use crate::store::{Kind, Obj, State, b, new_id, now, s};
use crate::views;
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/types", get(list).post(create))
        .route("/v3/types/{id}", get(show).put(update).delete(delete))
        .route(
            "/v3/types/{id}/extra_specs",
            get(specs_get).post(specs_merge),
        )
        .route(
            "/v3/types/{id}/extra_specs/{key}",
            get(spec_get).put(spec_put).delete(spec_del),
        )
        .route("/v3/types/{id}/action", post(type_action))
        .route("/v3/types/{id}/os-volume-type-access", get(access_list))
        .route("/v3/types/{id}/encryption", get(enc_show).post(enc_create))
        .route(
            "/v3/types/{id}/encryption/{key}",
            get(enc_item).put(enc_update).delete(enc_delete),
        )
        .route("/v3/qos-specs", get(qos_list).post(qos_create))
        .route(
            "/v3/qos-specs/{id}",
            get(qos_show).put(qos_update).delete(qos_delete),
        )
        .route("/v3/qos-specs/{id}/delete_keys", put(qos_delete_keys))
        .route("/v3/qos-specs/{id}/associations", get(qos_associations))
        .route("/v3/qos-specs/{id}/associate", get(qos_associate))
        .route("/v3/qos-specs/{id}/disassociate", get(qos_disassociate))
        .route(
            "/v3/qos-specs/{id}/disassociate_all",
            get(qos_disassociate_all),
        )
}

fn type_not_found(id: &str) -> CinderError {
    CinderError::not_found(format!("Volume type {id} could not be found."))
}

/// The type if the caller may see it; `default` names the default type.
fn find_type(svc: &VolumeService, st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    let t = if id == "default" {
        svc.default_type(st, &c.project)
    } else {
        st.get(Kind::VolumeType, id).cloned()
    };
    t.filter(|t| super::volumes::type_usable(t, c))
        .ok_or_else(|| type_not_found(id))
}

fn parse_bool(v: &Value, what: &str) -> CResult<bool> {
    match v {
        Value::Bool(x) => Ok(*x),
        Value::String(x) => match x.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "t" | "on" => Ok(true),
            "false" | "0" | "no" | "f" | "off" => Ok(false),
            _ => Err(CinderError::bad(format!(
                "Invalid value '{x}' for {what}. Accepted values are True, False."
            ))),
        },
        _ => Err(CinderError::bad(format!("Invalid value for {what}."))),
    }
}

async fn list(AxState(svc): St, c: Caller, q: Query) -> CResult<Response> {
    // Admins see public types unless they ask for `is_public=None`/`all`.
    let only_public = match q.get("is_public") {
        None => !c.admin,
        Some(x) if x.eq_ignore_ascii_case("none") || x.eq_ignore_ascii_case("all") => false,
        Some(x) => parse_bool(&json!(x), "is_public")?,
    };
    let st = svc.store.read();
    let mut items: Vec<Value> = st
        .iter(Kind::VolumeType)
        .filter(|t| {
            if c.admin {
                !only_public || b(t, "is_public")
            } else {
                super::volumes::type_usable(t, &c)
            }
        })
        .filter(|t| {
            q.0.iter().all(|(k, v)| match k.as_str() {
                "extra_specs" => super::parse_metadata_filter(v).is_ok_and(|m| {
                    m.iter()
                        .all(|(mk, mv)| t.get("extra_specs").and_then(|e| e.get(mk)) == Some(mv))
                }),
                _ => true,
            })
        })
        .map(|t| views::volume_type(&c, t))
        .collect();
    let asc = q
        .get("sort_dir")
        .or_else(|| q.get("sort").and_then(|x| x.split(':').nth(1)))
        .is_none_or(|d| d == "asc");
    let key = q
        .get("sort_key")
        .or_else(|| q.get("sort").map(|x| x.split(':').next().unwrap_or("id")))
        .unwrap_or("id")
        .to_string();
    items.sort_by(|a, b2| {
        let o = a[&key].to_string().cmp(&b2[&key].to_string());
        if asc { o } else { o.reverse() }
    });
    Ok(ok(json!({"volume_types": items})))
}

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let t = find_type(&svc, &st, &c, &id)?;
    Ok(ok(json!({"volume_type": views::volume_type(&c, &t)})))
}

fn check_specs(v: &Value) -> CResult<Map<String, Value>> {
    let o = v
        .as_object()
        .ok_or_else(|| CinderError::bad("Invalid input received: extra_specs must be a dict"))?;
    let mut out = Map::new();
    for (k, x) in o {
        if k.is_empty() || k.len() > 255 {
            return Err(CinderError::bad(
                "Invalid input received: extra spec keys must be 1 to 255 characters",
            ));
        }
        let val = match x {
            Value::String(s) if s.len() <= 255 => s.clone(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(CinderError::bad(format!(
                    "Invalid input received: value of extra spec {k} must be a string of at most 255 characters"
                )));
            }
        };
        out.insert(k.clone(), json!(val));
    }
    Ok(out)
}

fn text(o: &Map<String, Value>, k: &str, max: usize) -> CResult<Option<Option<String>>> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(x)) if x.chars().count() <= max => Ok(Some(Some(x.clone()))),
        Some(_) => Err(CinderError::bad(format!(
            "Invalid input for field/attribute {k}."
        ))),
    }
}

async fn create(AxState(svc): St, c: Caller, Body(body): Body) -> CResult<Response> {
    c.require_admin("volume_extension:types_manage")?;
    let req = body_obj(&body, "volume_type")?.clone();
    let name = match text(&req, "name", 255)? {
        Some(Some(n)) if !n.trim().is_empty() => n.trim().to_string(),
        _ => {
            return Err(CinderError::bad(
                "Invalid input received: Volume type name can not be empty.",
            ));
        }
    };
    let description = text(&req, "description", 255)?.flatten();
    let is_public = match req
        .get("os-volume-type-access:is_public")
        .or(req.get("is_public"))
    {
        None | Some(Value::Null) => true,
        Some(v) => parse_bool(v, "is_public")?,
    };
    let specs = match req.get("extra_specs") {
        None | Some(Value::Null) => Map::new(),
        Some(v) => check_specs(v)?,
    };
    let t = svc
        .store
        .write(|tx| {
            if tx.st.iter(Kind::VolumeType).any(|t| s(t, "name") == name) {
                return Err(CinderError::conflict(format!(
                    "Volume Type {name} already exists."
                )));
            }
            let mut t = Obj::new();
            t.insert("id".into(), json!(new_id()));
            t.insert("name".into(), json!(name));
            t.insert("description".into(), json!(description));
            t.insert("is_public".into(), json!(is_public));
            t.insert("extra_specs".into(), Value::Object(specs));
            t.insert("qos_specs_id".into(), Value::Null);
            t.insert("projects".into(), json!([]));
            t.insert("created_at".into(), json!(now()));
            tx.put(Kind::VolumeType, t.clone());
            Ok(t)
        })
        .await?;
    Ok(ok(
        json!({"volume_type": views::volume_type_view(&c, &t, views::TypeView::Create)}),
    ))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:types_manage")?;
    let req = body_obj(&body, "volume_type")?.clone();
    let name = text(&req, "name", 255)?;
    let description = text(&req, "description", 255)?;
    let is_public = match req.get("is_public") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_bool(v, "is_public")?),
    };
    if name.is_none() && description.is_none() && is_public.is_none() {
        return Err(CinderError::bad(
            "Invalid input received: Specify volume type name, description, is_public or a combination thereof.",
        ));
    }
    match &name {
        Some(None) => {
            return Err(CinderError::bad(
                "Invalid input received: Volume type name can not be empty.",
            ));
        }
        Some(Some(n)) if n.trim().is_empty() => {
            return Err(CinderError::bad(
                "Invalid input received: Volume type name can not be empty.",
            ));
        }
        _ => {}
    }
    let default = svc.cfg.volume.default_volume_type.clone();
    let t = svc
        .store
        .write(|tx| {
            let mut t = tx
                .get(Kind::VolumeType, &id)
                .ok_or_else(|| type_not_found(&id))?;
            if let Some(Some(n)) = &name {
                if s(&t, "name") == default && n != &default {
                    return Err(CinderError::bad(
                        "Invalid input received: The default volume type cannot be renamed.",
                    ));
                }
                if tx
                    .st
                    .iter(Kind::VolumeType)
                    .any(|o| s(o, "name") == n && s(o, "id") != id)
                {
                    return Err(CinderError::conflict(format!(
                        "Volume Type {n} already exists."
                    )));
                }
                t.insert("name".into(), json!(n));
            }
            if let Some(d) = description {
                t.insert("description".into(), json!(d));
            }
            if let Some(p) = is_public {
                t.insert("is_public".into(), json!(p));
            }
            tx.put(Kind::VolumeType, t.clone());
            Ok(t)
        })
        .await?;
    Ok(ok(
        json!({"volume_type": views::volume_type_view(&c, &t, views::TypeView::Update)}),
    ))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:types_manage")?;
    let default = svc.cfg.volume.default_volume_type.clone();
    svc.store
        .write(|tx| {
            let t = tx
                .get(Kind::VolumeType, &id)
                .ok_or_else(|| type_not_found(&id))?;
            if s(&t, "name") == default {
                return Err(CinderError::bad(
                    "Invalid volume type: Default volume type can not be deleted.",
                ));
            }
            if tx
                .st
                .iter(Kind::Volume)
                .any(|v| s(v, "volume_type_id") == id)
            {
                return Err(CinderError::bad(
                    "Invalid volume type: Target volume type is still in use.",
                ));
            }
            if let Some(d) = tx.st.iter(Kind::Quota).find(|d| {
                s(d, "id").starts_with("default_type:") && s(d, "volume_type_id") == id
            }) {
                return Err(CinderError::bad(format!(
                    "Invalid volume type: Volume type {id} is the default type of project {} and cannot be deleted.",
                    s(d, "project_id")
                )));
            }
            tx.del(Kind::VolumeType, &id);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn specs_get(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    let st = svc.store.read();
    let t = find_type(&svc, &st, &c, &id)?;
    let v = views::volume_type(&c, &t);
    Ok(ok(json!({"extra_specs": v["extra_specs"]})))
}

async fn change_specs(
    svc: &VolumeService,
    c: &Caller,
    id: &str,
    f: impl FnOnce(&mut Map<String, Value>) -> CResult<()>,
) -> CResult<()> {
    c.require_admin("volume_extension:types_extra_specs:update")?;
    svc.store
        .write(|tx| {
            let mut t = tx
                .get(Kind::VolumeType, id)
                .ok_or_else(|| type_not_found(id))?;
            // Cinder refuses changes to a type volumes already use? No: it allows
            // them except for a few backend keys; we allow all.
            let mut m = t
                .get("extra_specs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            f(&mut m)?;
            t.insert("extra_specs".into(), Value::Object(m));
            tx.put(Kind::VolumeType, t);
            Ok(())
        })
        .await
}

async fn specs_merge(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    let new = check_specs(body.get("extra_specs").ok_or_else(|| {
        CinderError::bad("Missing required element 'extra_specs' in request body.")
    })?)?;
    let out = new.clone();
    change_specs(&svc, &c, &id, |m| {
        m.extend(new);
        Ok(())
    })
    .await?;
    Ok(ok(json!({"extra_specs": out})))
}

async fn spec_get(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    let st = svc.store.read();
    let t = find_type(&svc, &st, &c, &id)?;
    let v = views::volume_type(&c, &t);
    let x = v["extra_specs"].get(&key).cloned().ok_or_else(|| {
        CinderError::not_found(format!(
            "Volume Type {id} has no extra specs with key {key}."
        ))
    })?;
    Ok(ok(json!({key: x})))
}

async fn spec_put(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    Body(body): Body,
) -> CResult<Response> {
    let o = body
        .as_object()
        .ok_or_else(|| CinderError::bad("Malformed request body"))?;
    if o.len() > 1 {
        return Err(CinderError::bad("Request body contains too many items."));
    }
    if !o.contains_key(&key) {
        return Err(CinderError::bad("Request body and URI mismatch"));
    }
    let specs = check_specs(&body)?;
    let out = specs.clone();
    change_specs(&svc, &c, &id, |m| {
        m.extend(specs);
        Ok(())
    })
    .await?;
    Ok(ok(Value::Object(out)))
}

async fn spec_del(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    let (k2, id2) = (key.clone(), id.clone());
    change_specs(&svc, &c, &id, move |m| {
        m.remove(&k2).map(|_| ()).ok_or_else(|| {
            CinderError::not_found(format!(
                "Volume Type {id2} has no extra specs with key {k2}."
            ))
        })
    })
    .await?;
    Ok(accepted_empty())
}

async fn type_action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_access:addProjectAccess")?;
    let (add, arg) = if let Some(a) = body.get("addProjectAccess") {
        (true, a)
    } else if let Some(a) = body.get("removeProjectAccess") {
        (false, a)
    } else {
        return Err(CinderError::bad("Invalid action"));
    };
    let project = arg
        .get("project")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Missing required element 'project' in request body."))?
        .to_string();
    svc.store
        .write(|tx| {
            let mut t = tx
                .get(Kind::VolumeType, &id)
                .ok_or_else(|| type_not_found(&id))?;
            if b(&t, "is_public") {
                return Err(CinderError::bad(
                    "Invalid volume type: Type access modification is not applicable to public volume type.",
                ));
            }
            let mut projects: Vec<Value> = t
                .get("projects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = projects.iter().any(|p| p.as_str() == Some(project.as_str()));
            if add {
                if has {
                    return Err(CinderError::conflict(format!(
                        "Volume type access for {id} / {project} combination already exists."
                    )));
                }
                projects.push(json!(project));
            } else {
                if !has {
                    return Err(CinderError::not_found(format!(
                        "Volume type access not found for {id} / {project} combination."
                    )));
                }
                projects.retain(|p| p.as_str() != Some(project.as_str()));
            }
            t.insert("projects".into(), Value::Array(projects));
            tx.put(Kind::VolumeType, t);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn access_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_access")?;
    let st = svc.store.read();
    let t = st
        .get(Kind::VolumeType, &id)
        .ok_or_else(|| type_not_found(&id))?;
    if b(t, "is_public") {
        return Err(CinderError::not_found(format!(
            "Volume type access not found for {id}: it is public."
        )));
    }
    let list: Vec<Value> = t
        .get("projects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| json!({"volume_type_id": id, "project_id": p}))
        .collect();
    Ok(ok(json!({"volume_type_access": list})))
}

// ---------------------------------------------------------------- QoS specs

fn qos_not_found(id: &str) -> CinderError {
    CinderError::not_found(format!("QoS Specs {id} could not be found."))
}

fn qos_view(_svc: &VolumeService, q: &Obj) -> Value {
    json!({"id": s(q, "id"), "name": s(q, "name"), "consumer": s(q, "consumer"),
           "specs": q.get("specs").cloned().unwrap_or_else(|| json!({}))})
}

fn qos_links(svc: &VolumeService, id: &str) -> Value {
    json!([{"href": format!("{}/v3/qos-specs/{id}", svc.base_url), "rel": "self"},
           {"href": format!("{}/qos-specs/{id}", svc.base_url), "rel": "bookmark"}])
}

async fn qos_list(AxState(svc): St, c: Caller) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:get_all")?;
    let st = svc.store.read();
    let items: Vec<Value> = st.iter(Kind::Qos).map(|q| qos_view(&svc, q)).collect();
    Ok(ok(json!({"qos_specs": items})))
}

async fn qos_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:get")?;
    let st = svc.store.read();
    let q = st.get(Kind::Qos, &id).ok_or_else(|| qos_not_found(&id))?;
    Ok(ok(
        json!({"qos_specs": qos_view(&svc, q), "links": qos_links(&svc, &id)}),
    ))
}

async fn qos_create(AxState(svc): St, c: Caller, Body(body): Body) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:create")?;
    let mut req = body_obj(&body, "qos_specs")?.clone();
    let name = match req.remove("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= 255 => n,
        _ => return Err(CinderError::bad("Please specify a name for QoS specs.")),
    };
    let consumer = match req.remove("consumer") {
        None => "back-end".to_string(),
        Some(Value::String(x)) if matches!(x.as_str(), "front-end" | "back-end" | "both") => x,
        Some(x) => {
            return Err(CinderError::bad(format!(
                "Invalid input received: {x} is not a valid consumer (front-end, back-end, both)"
            )));
        }
    };
    let specs = check_specs(&Value::Object(req))?;
    let q = svc
        .store
        .write(|tx| {
            if tx.st.iter(Kind::Qos).any(|q| s(q, "name") == name) {
                return Err(CinderError::conflict(format!(
                    "QoS Specs {name} already exists."
                )));
            }
            let mut q = Obj::new();
            q.insert("id".into(), json!(new_id()));
            q.insert("name".into(), json!(name));
            q.insert("consumer".into(), json!(consumer));
            q.insert("specs".into(), Value::Object(specs));
            q.insert("created_at".into(), json!(now()));
            tx.put(Kind::Qos, q.clone());
            Ok(q)
        })
        .await?;
    let id = s(&q, "id").to_string();
    Ok(ok(
        json!({"qos_specs": qos_view(&svc, &q), "links": qos_links(&svc, &id)}),
    ))
}

async fn qos_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:update")?;
    let mut req = body_obj(&body, "qos_specs")?.clone();
    let consumer = req.remove("consumer");
    if let Some(x) = &consumer
        && !matches!(x.as_str(), Some("front-end" | "back-end" | "both"))
    {
        return Err(CinderError::bad(format!(
            "Invalid input received: {x} is not a valid consumer"
        )));
    }
    let specs = check_specs(&Value::Object(req))?;
    let out = specs.clone();
    svc.store
        .update(Kind::Qos, &id, |q| {
            if let Some(x) = consumer.clone() {
                q.insert("consumer".into(), x);
            }
            let mut m = q
                .get("specs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            m.extend(specs);
            q.insert("specs".into(), Value::Object(m));
            Ok(())
        })
        .await
        .map_err(|e| if e.code == 404 { qos_not_found(&id) } else { e })?;
    let mut body = Value::Object(out);
    if let Some(x) = consumer {
        body["consumer"] = x;
    }
    Ok(ok(json!({"qos_specs": body})))
}

async fn qos_delete(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: Query,
) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:delete")?;
    let force = q
        .get("force")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    svc.store
        .write(|tx| {
            if tx.get(Kind::Qos, &id).is_none() {
                return Err(qos_not_found(&id));
            }
            let users: Vec<Obj> = tx
                .st
                .iter(Kind::VolumeType)
                .filter(|t| s(t, "qos_specs_id") == id)
                .map(|t| (**t).clone())
                .collect();
            if !users.is_empty() && !force {
                return Err(CinderError::bad(format!(
                    "QoS Specs {id} is still associated with entities."
                )));
            }
            for mut t in users {
                t.insert("qos_specs_id".into(), Value::Null);
                tx.put(Kind::VolumeType, t);
            }
            tx.del(Kind::Qos, &id);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn qos_delete_keys(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:delete_keys")?;
    let keys: Vec<String> = body
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| CinderError::bad("Missing required element 'keys' in request body."))?
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let id2 = id.clone();
    svc.store
        .update(Kind::Qos, &id, |q| {
            let mut m = q
                .get("specs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for k in &keys {
                if m.remove(k).is_none() {
                    return Err(CinderError::not_found(format!(
                        "QoS spec {k} could not be found in {id2}."
                    )));
                }
            }
            q.insert("specs".into(), Value::Object(m));
            Ok(())
        })
        .await
        .map_err(|e| {
            if e.message.contains("QoS spec ") {
                e
            } else {
                qos_not_found(&id)
            }
        })?;
    Ok(accepted_empty())
}

async fn qos_associations(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
) -> CResult<Response> {
    c.require_admin("volume_extension:qos_specs_manage:get_all")?;
    let st = svc.store.read();
    st.get(Kind::Qos, &id).ok_or_else(|| qos_not_found(&id))?;
    let list: Vec<Value> = st
        .iter(Kind::VolumeType)
        .filter(|t| s(t, "qos_specs_id") == id)
        .map(|t| json!({"association_type": "volume_type", "name": s(t, "name"), "id": s(t, "id")}))
        .collect();
    Ok(ok(json!({"qos_associations": list})))
}

async fn set_assoc(
    svc: &VolumeService,
    c: &Caller,
    id: &str,
    vtype: Option<&str>,
    on: bool,
) -> CResult<()> {
    c.require_admin("volume_extension:qos_specs_manage:update")?;
    svc.store
        .write(|tx| {
            if tx.get(Kind::Qos, id).is_none() {
                return Err(qos_not_found(id));
            }
            let targets: Vec<Obj> = match vtype {
                Some(t) => {
                    let t = tx
                        .get(Kind::VolumeType, t)
                        .ok_or_else(|| type_not_found(t))?;
                    if on {
                        let cur = s(&t, "qos_specs_id");
                        if !cur.is_empty() && cur != id {
                            return Err(CinderError::bad(format!(
                                "Type {} is already associated with another qos specs: {cur}",
                                s(&t, "id")
                            )));
                        }
                    }
                    vec![t]
                }
                None => tx
                    .st
                    .iter(Kind::VolumeType)
                    .filter(|t| s(t, "qos_specs_id") == id)
                    .map(|t| (**t).clone())
                    .collect(),
            };
            for mut t in targets {
                t.insert(
                    "qos_specs_id".into(),
                    if on { json!(id) } else { Value::Null },
                );
                tx.put(Kind::VolumeType, t);
            }
            Ok(())
        })
        .await
}

fn vol_type_param(q: &Query) -> CResult<String> {
    q.get("vol_type_id")
        .map(str::to_string)
        .ok_or_else(|| CinderError::bad("Volume Type id must not be None."))
}

async fn qos_associate(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: Query,
) -> CResult<Response> {
    let t = vol_type_param(&q)?;
    set_assoc(&svc, &c, &id, Some(&t), true).await?;
    Ok(accepted_empty())
}

async fn qos_disassociate(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: Query,
) -> CResult<Response> {
    let t = vol_type_param(&q)?;
    set_assoc(&svc, &c, &id, Some(&t), false).await?;
    Ok(accepted_empty())
}

async fn qos_disassociate_all(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
) -> CResult<Response> {
    set_assoc(&svc, &c, &id, None, false).await?;
    Ok(accepted_empty())
}

// ------------------------------------------------------- type encryption
//
// Recorded as Cinder records it; volumes of an encrypted type are refused
// at create, since no key manager runs here to hold their keys.

const ENC_KEYS: [&str; 4] = ["provider", "cipher", "key_size", "control_location"];

fn enc_fields(req: &Map<String, Value>, all: bool) -> CResult<Map<String, Value>> {
    let mut out = Map::new();
    for (k, v) in req {
        if !ENC_KEYS.contains(&k.as_str()) {
            return Err(CinderError::bad(format!(
                "Invalid input received: unknown encryption field {k}"
            )));
        }
        match (k.as_str(), v) {
            ("key_size", Value::Number(_) | Value::Null) => {}
            ("control_location", Value::String(x)) if x == "front-end" || x == "back-end" => {}
            ("control_location", _) => {
                return Err(CinderError::bad(
                    "Invalid input received: control_location must be front-end or back-end",
                ));
            }
            ("provider" | "cipher", Value::String(_) | Value::Null) => {}
            _ => {
                return Err(CinderError::bad(format!(
                    "Invalid input received: invalid value for {k}"
                )));
            }
        }
        out.insert(k.clone(), v.clone());
    }
    if all && !out.get("provider").is_some_and(Value::is_string) {
        return Err(CinderError::bad(
            "Invalid input received: provider is required",
        ));
    }
    Ok(out)
}

async fn enc_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_encryption")?;
    let st = svc.store.read();
    let t = st
        .get(Kind::VolumeType, &id)
        .ok_or_else(|| type_not_found(&id))?;
    Ok(ok(t
        .get("encryption")
        .cloned()
        .unwrap_or_else(|| json!({}))))
}

async fn enc_item(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_encryption")?;
    let st = svc.store.read();
    let t = st
        .get(Kind::VolumeType, &id)
        .ok_or_else(|| type_not_found(&id))?;
    let v = t
        .get("encryption")
        .and_then(|e| e.get(&key))
        .cloned()
        .ok_or_else(|| {
            CinderError::not_found(format!(
                "Volume type encryption for type {id} has no {key}."
            ))
        })?;
    Ok(ok(json!({key: v})))
}

async fn enc_create(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_encryption")?;
    let fields = enc_fields(body_obj(&body, "encryption")?, true)?;
    let enc = svc
        .store
        .write(|tx| {
            let mut t = tx.get(Kind::VolumeType, &id).ok_or_else(|| type_not_found(&id))?;
            if t.get("encryption").is_some_and(|e| !e.is_null()) {
                return Err(CinderError::bad(format!(
                    "Volume type encryption for type {id} already exists."
                )));
            }
            if tx.st.iter(Kind::Volume).any(|v| s(v, "volume_type_id") == id) {
                return Err(CinderError::bad(
                    "Invalid volume type: Cannot create encryption specification. Volume type in use.",
                ));
            }
            let mut e = fields.clone();
            e.insert("volume_type_id".into(), json!(id));
            e.insert("encryption_id".into(), json!(new_id()));
            e.entry("control_location").or_insert_with(|| json!("front-end"));
            e.entry("key_size").or_insert(Value::Null);
            e.entry("cipher").or_insert(Value::Null);
            let mut stored = e.clone();
            stored.insert("deleted".into(), json!(false));
            stored.insert("created_at".into(), json!(now()));
            stored.insert("updated_at".into(), Value::Null);
            stored.insert("deleted_at".into(), Value::Null);
            t.insert("encryption".into(), Value::Object(stored));
            tx.put(Kind::VolumeType, t);
            Ok(e)
        })
        .await?;
    Ok(ok(json!({"encryption": enc})))
}

async fn enc_update(
    AxState(svc): St,
    c: Caller,
    Path((id, _eid)): Path<(String, String)>,
    Body(body): Body,
) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_encryption")?;
    let fields = enc_fields(body_obj(&body, "encryption")?, false)?;
    let out = fields.clone();
    svc.store
        .write(|tx| {
            let mut t = tx.get(Kind::VolumeType, &id).ok_or_else(|| type_not_found(&id))?;
            let Some(Value::Object(mut e)) = t.get("encryption").cloned() else {
                return Err(CinderError::not_found(format!(
                    "Volume type encryption for type {id} does not exist."
                )));
            };
            if tx.st.iter(Kind::Volume).any(|v| s(v, "volume_type_id") == id) {
                return Err(CinderError::bad(
                    "Invalid volume type: Cannot update encryption specification. Volume type in use.",
                ));
            }
            e.extend(fields);
            e.insert("updated_at".into(), json!(now()));
            t.insert("encryption".into(), Value::Object(e));
            tx.put(Kind::VolumeType, t);
            Ok(())
        })
        .await?;
    Ok(ok(json!({"encryption": out})))
}

async fn enc_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, _eid)): Path<(String, String)>,
) -> CResult<Response> {
    c.require_admin("volume_extension:volume_type_encryption")?;
    svc.store
        .write(|tx| {
            let mut t = tx.get(Kind::VolumeType, &id).ok_or_else(|| type_not_found(&id))?;
            if t.remove("encryption").is_none() {
                return Err(CinderError::not_found(format!(
                    "Volume type encryption for type {id} does not exist."
                )));
            }
            if tx.st.iter(Kind::Volume).any(|v| s(v, "volume_type_id") == id) {
                return Err(CinderError::bad(
                    "Invalid volume type: Cannot delete encryption specification. Volume type in use.",
                ));
            }
            tx.put(Kind::VolumeType, t);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}
