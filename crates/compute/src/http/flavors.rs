//! `/flavors`, extra specs and flavor access.
use super::request::{Caller, Mv, St, body, first, json_resp, link, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Flavor;
use crate::state::{Rec, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/flavors", get(list).post(create))
        .route("/flavors/detail", get(detail))
        .route("/flavors/{id}", get(show).put(update).delete(delete))
        .route(
            "/flavors/{id}/os-extra_specs",
            get(specs_list).post(specs_set),
        )
        .route(
            "/flavors/{id}/os-extra_specs/{key}",
            get(spec_get).put(spec_put).delete(spec_delete),
        )
        .route("/flavors/{id}/os-flavor-access", get(access_list))
        .route("/flavors/{id}/action", post(access_action))
}

pub fn flavor_view(svc: &ComputeService, f: &Flavor, mv: Mv, detail: bool) -> Value {
    let links = link(&svc.base_url, &format!("flavors/{}", f.id));
    let mut v = if detail {
        json!({
            "id": f.id, "name": f.name, "ram": f.ram, "disk": f.disk, "vcpus": f.vcpus,
            "OS-FLV-EXT-DATA:ephemeral": f.ephemeral,
            "swap": if f.swap == 0 && !mv.at_least(75) { json!("") } else { json!(f.swap) },
            "rxtx_factor": f.rxtx_factor,
            "os-flavor-access:is_public": f.is_public,
            "OS-FLV-DISABLED:disabled": f.disabled,
            "links": links,
        })
    } else {
        json!({"id": f.id, "name": f.name, "links": links})
    };
    if mv.at_least(55) {
        v["description"] = json!(f.description);
    }
    if detail && mv.at_least(61) {
        v["extra_specs"] = json!(f.extra_specs);
    }
    v
}

fn can_see(svc: &ComputeService, c: &Caller, f: &Flavor) -> bool {
    f.is_public || c.is_admin(svc) || f.access.contains(&c.project())
}

fn find(svc: &ComputeService, c: &Caller, id: &str) -> NResult<Flavor> {
    svc.state
        .read()
        .flavors
        .get(id)
        .filter(|f| can_see(svc, c, f))
        .cloned()
        .ok_or_else(|| NovaError::not_found(format!("Flavor {id} could not be found.")))
}

fn listing(svc: &ComputeService, c: &Caller, raw: Option<String>, detail: bool) -> NResult<Value> {
    let q = query(raw);
    let admin = c.is_admin(svc);
    let (limit, marker) = paging(&q)?;
    let num = |k: &str| -> NResult<Option<u64>> {
        first(&q, k)
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| NovaError::bad(format!("Invalid {k} filter [{s}]")))
            })
            .transpose()
    };
    let min_ram = num("minRam")?;
    let min_disk = num("minDisk")?;
    let is_public = match first(&q, "is_public").map(str::to_lowercase).as_deref() {
        None => Some(true),
        Some("none") => None,
        Some("true" | "t" | "1" | "yes" | "y" | "on") => Some(true),
        Some("false" | "f" | "0" | "no" | "n" | "off") => Some(false),
        Some(other) => {
            return Err(NovaError::bad(format!(
                "Invalid is_public filter [{other}]"
            )));
        }
    };
    let sort_key = first(&q, "sort_key").unwrap_or("flavorid").to_string();
    let sort_dir = first(&q, "sort_dir").unwrap_or("asc").to_string();
    if !matches!(
        sort_key.as_str(),
        "id" | "flavorid"
            | "name"
            | "memory_mb"
            | "ram"
            | "vcpus"
            | "root_gb"
            | "disk"
            | "ephemeral_gb"
            | "swap"
            | "rxtx_factor"
            | "created_at"
            | "description"
            | "is_public"
            | "disabled"
    ) {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute sort_key. Value: {sort_key}."
        )));
    }
    if sort_dir != "asc" && sort_dir != "desc" {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute sort_dir. Value: {sort_dir}."
        )));
    }
    let st = svc.state.read();
    let mut items: Vec<&Flavor> = st
        .flavors
        .values()
        .filter(|f| !f.disabled || admin)
        .filter(|f| match (admin, is_public) {
            (true, None) => true,
            (true, Some(p)) => f.is_public == p,
            (false, Some(true)) | (false, None) => f.is_public || f.access.contains(&c.project()),
            (false, Some(false)) => !f.is_public && f.access.contains(&c.project()),
        })
        .filter(|f| min_ram.is_none_or(|m| f.ram >= m))
        .filter(|f| min_disk.is_none_or(|m| f.disk >= m))
        .collect();
    items.sort_by(|a, b| {
        let o = match sort_key.as_str() {
            "name" => a.name.cmp(&b.name),
            "memory_mb" | "ram" => a.ram.cmp(&b.ram),
            "vcpus" => a.vcpus.cmp(&b.vcpus),
            "root_gb" | "disk" => a.disk.cmp(&b.disk),
            "id" | "created_at" => a.seq.cmp(&b.seq),
            _ => a.id.cmp(&b.id),
        };
        if sort_dir == "desc" { o.reverse() } else { o }
    });
    if let Some(m) = &marker {
        let pos = items
            .iter()
            .position(|f| &f.id == m)
            .ok_or_else(|| NovaError::bad(format!("marker [{m}] not found")))?;
        items.drain(..=pos);
    }
    let total = items.len();
    if let Some(l) = limit {
        items.truncate(l);
    }
    let mut out = json!({"flavors": items.iter().map(|f| flavor_view(svc, f, c.mv, detail)).collect::<Vec<_>>()});
    if let (Some(l), Some(last)) = (limit, items.last())
        && total > l
    {
        let path = if detail { "flavors/detail" } else { "flavors" };
        out["flavors_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/{path}?limit={l}&marker={}", svc.base_url, last.id)}]);
    }
    Ok(out)
}

async fn list(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, false)?))
}

async fn detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, true)?))
}

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let f = find(&svc, &c, &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"flavor": flavor_view(&svc, &f, c.mv, true)}),
    ))
}

fn int_field(
    o: &serde_json::Map<String, Value>,
    k: &str,
    min: i64,
    required: bool,
) -> NResult<Option<u64>> {
    match o.get(k) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(NovaError::bad(format!(
            "Invalid input for field/attribute flavor. '{k}' is a required property"
        ))),
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|_| !v.is_f64())
                .ok_or_else(|| NovaError::bad(format!("Invalid input for field/attribute {k}. Value: {v}. {v} is not of type 'integer', 'string'")))?;
            if n < min {
                return Err(NovaError::bad(format!(
                    "Invalid input for field/attribute {k}. Value: {n}. {n} is less than the minimum of {min}"
                )));
            }
            if n > 2147483647 {
                return Err(NovaError::bad(format!(
                    "Invalid input for field/attribute {k}. Value: {n}. {n} is greater than the maximum of 2147483647"
                )));
            }
            Ok(Some(n as u64))
        }
    }
}

async fn create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-manage:create")?;
    let b = body(&raw)?;
    let o = b
        .get("flavor")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            NovaError::bad(
                "Invalid input for field/attribute flavor. 'flavor' is a required property",
            )
        })?;
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.trim() == *n)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let ram = int_field(&o, "ram", 1, true)?.unwrap_or(1);
    let vcpus = int_field(&o, "vcpus", 1, true)?.unwrap_or(1);
    let disk = int_field(&o, "disk", 0, true)?.unwrap_or(0);
    let ephemeral = int_field(&o, "OS-FLV-EXT-DATA:ephemeral", 0, false)?.unwrap_or(0);
    let swap = int_field(&o, "swap", 0, false)?.unwrap_or(0);
    let rxtx = match o.get("rxtx_factor") {
        None | Some(Value::Null) => 1.0,
        Some(v) => {
            let f = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute rxtx_factor."))?;
            if f <= 0.0 {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute rxtx_factor.",
                ));
            }
            f
        }
    };
    let is_public = match o.get("os-flavor-access:is_public") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_lowercase().as_str(), "true" | "1" | "t" | "yes" | "on")
        }
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute os-flavor-access:is_public.",
            ));
        }
    };
    let description = if c.mv.at_least(55) {
        match o.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.len() <= 65535 => Some(d.clone()),
            Some(_) => {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute description.",
                ));
            }
        }
    } else {
        if o.contains_key("description") {
            return Err(NovaError::bad(
                "Invalid input for field/attribute flavor. Additional properties are not allowed ('description' was unexpected)",
            ));
        }
        None
    };
    let id = match o.get("id") {
        None | Some(Value::Null) => ferro_common::new_uuid(),
        Some(Value::String(s)) if s == "auto" => ferro_common::new_uuid(),
        Some(Value::String(s)) => {
            if s.is_empty()
                || s.len() > 255
                || s.trim() != s
                || !s
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._- ".contains(ch))
            {
                return Err(NovaError::bad(format!(
                    "Invalid input for field/attribute id. Value: {s}."
                )));
            }
            s.clone()
        }
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(NovaError::bad("Invalid input for field/attribute id.")),
    };
    let f = svc
        .state
        .write(|st| {
            if st.flavors.values().any(|f| f.name == name) {
                return Err(ferro_common::Error::conflict(format!(
                    "Flavor with name {name} already exists."
                )));
            }
            if st.flavors.contains_key(&id) {
                return Err(ferro_common::Error::conflict(format!(
                    "Flavor with ID {id} already exists."
                )));
            }
            let f = Flavor {
                id: id.clone(),
                name: name.clone(),
                vcpus: vcpus as u32,
                ram,
                disk,
                ephemeral,
                swap,
                rxtx_factor: rxtx,
                is_public,
                disabled: false,
                description,
                extra_specs: Default::default(),
                access: vec![],
                created_at: now(),
                seq: st.next_seq(&[]),
            };
            Ok((f.clone(), vec![Rec::Flavor(f)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"flavor": flavor_view(&svc, &f, c.mv, true)}),
    ))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    if !c.mv.at_least(55) {
        return Err(NovaError::new(405, "Method not allowed"));
    }
    c.require_admin(&svc, "os_compute_api:os-flavor-manage:update")?;
    let b = body(&raw)?;
    let o = super::request::member(&b, "flavor", "Invalid input for field/attribute flavor.")?;
    if o.len() != 1 || !o.contains_key("description") {
        return Err(NovaError::bad(
            "Invalid input for field/attribute flavor. Only 'description' can be updated.",
        ));
    }
    let desc = match &o["description"] {
        Value::Null => None,
        Value::String(s) if s.len() <= 65535 => Some(s.clone()),
        _ => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute description.",
            ));
        }
    };
    let _ = find(&svc, &c, &id)?;
    let f = svc
        .state
        .write(|st| {
            let mut f = st.flavors.get(&id).cloned().ok_or_else(|| {
                ferro_common::Error::not_found_msg(format!("Flavor {id} could not be found."))
            })?;
            f.description = desc;
            Ok((f.clone(), vec![Rec::Flavor(f)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"flavor": flavor_view(&svc, &f, c.mv, true)}),
    ))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-manage:delete")?;
    svc.state
        .write(|st| {
            if !st.flavors.contains_key(&id) {
                return Err(ferro_common::Error::not_found_msg(format!(
                    "Flavor {id} could not be found."
                )));
            }
            Ok(((), vec![Rec::DelFlavor(id.clone())]))
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn specs_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let f = find(&svc, &c, &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"extra_specs": f.extra_specs}),
    ))
}

/// From 2.86 each spec of a namespace Nova knows is validated (unknown
/// namespaces pass), as Nova's `validators.validate`.
fn validate_specs(c: &Caller, specs: &std::collections::BTreeMap<String, String>) -> NResult<()> {
    if c.mv.at_least(86) {
        for (k, v) in specs {
            crate::extra_specs::validate(k, v).map_err(NovaError::bad)?;
        }
    }
    Ok(())
}

fn check_specs(v: &Value) -> NResult<std::collections::BTreeMap<String, String>> {
    let o = v
        .as_object()
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute extra_specs."))?;
    let mut out = std::collections::BTreeMap::new();
    for (k, val) in o {
        if k.is_empty()
            || k.len() > 255
            || !k
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_:. ".contains(ch))
        {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute extra_specs. Key '{k}' is not valid."
            )));
        }
        let s = match val {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(NovaError::bad(format!(
                    "Invalid input for field/attribute {k}."
                )));
            }
        };
        if s.len() > 255 {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute {k}. Value is too long."
            )));
        }
        out.insert(k.clone(), s);
    }
    Ok(out)
}

async fn write_specs(
    svc: &ComputeService,
    id: &str,
    f: impl FnOnce(&mut Flavor) -> Result<(), ferro_common::Error>,
) -> NResult<Flavor> {
    Ok(svc
        .state
        .write(|st| {
            let mut fl = st.flavors.get(id).cloned().ok_or_else(|| {
                ferro_common::Error::not_found_msg(format!("Flavor {id} could not be found."))
            })?;
            f(&mut fl)?;
            Ok((fl.clone(), vec![Rec::Flavor(fl)]))
        })
        .await?)
}

async fn specs_set(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-extra-specs:create")?;
    let b = body(&raw)?;
    let specs = check_specs(b.get("extra_specs").ok_or_else(|| {
        NovaError::bad(
            "Invalid input for field/attribute extra_specs. 'extra_specs' is a required property",
        )
    })?)?;
    validate_specs(&c, &specs)?;
    let s2 = specs.clone();
    write_specs(&svc, &id, move |f| {
        f.extra_specs.extend(s2);
        Ok(())
    })
    .await?;
    Ok(json_resp(StatusCode::OK, json!({"extra_specs": specs})))
}

async fn spec_get(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    let f = find(&svc, &c, &id)?;
    let v = f.extra_specs.get(&key).ok_or_else(|| {
        NovaError::not_found(format!("Flavor {id} has no extra specs with key {key}."))
    })?;
    Ok(json_resp(StatusCode::OK, json!({ key: v })))
}

async fn spec_put(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    raw: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-extra-specs:update")?;
    let b = body(&raw)?;
    let specs = check_specs(&b)?;
    if specs.len() != 1 {
        return Err(NovaError::bad("Request body contains too many items"));
    }
    validate_specs(&c, &specs)?;
    if !specs.contains_key(&key) {
        return Err(NovaError::bad("Request body and URI mismatch"));
    }
    let s2 = specs.clone();
    write_specs(&svc, &id, move |f| {
        f.extra_specs.extend(s2);
        Ok(())
    })
    .await?;
    Ok(json_resp(StatusCode::OK, json!(specs)))
}

async fn spec_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-extra-specs:delete")?;
    let k2 = key.clone();
    let id2 = id.clone();
    write_specs(&svc, &id, move |f| {
        f.extra_specs.remove(&k2).map(|_| ()).ok_or_else(|| {
            ferro_common::Error::not_found_msg(format!(
                "Flavor {id2} has no extra specs with key {k2}."
            ))
        })
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

fn access_body(f: &Flavor) -> Value {
    json!({"flavor_access": f.access.iter().map(|p| json!({"flavor_id": f.id, "tenant_id": p})).collect::<Vec<_>>()})
}

async fn access_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-flavor-access")?;
    let f = find(&svc, &c, &id)?;
    if f.is_public {
        return Err(NovaError::not_found(
            "Access list not available for public flavors.",
        ));
    }
    Ok(json_resp(StatusCode::OK, access_body(&f)))
}

async fn access_action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let (add, arg) = if let Some(a) = b.get("addTenantAccess") {
        (true, a)
    } else if let Some(a) = b.get("removeTenantAccess") {
        (false, a)
    } else {
        return Err(NovaError::bad("Invalid flavor action"));
    };
    c.require_admin(&svc, "os_compute_api:os-flavor-access:add_tenant_access")?;
    let tenant = arg
        .get("tenant")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute tenant."))?
        .to_string();
    let f = find(&svc, &c, &id)?;
    if f.is_public {
        return Err(NovaError::conflict(
            "Can not add access to a public flavor.",
        ));
    }
    let id2 = id.clone();
    let f = write_specs(&svc, &id, move |f| {
        if add {
            if f.access.contains(&tenant) {
                return Err(ferro_common::Error::conflict(format!("Flavor access already exists for flavor {id2} and project {tenant} combination.")));
            }
            f.access.push(tenant);
        } else {
            if !f.access.contains(&tenant) {
                return Err(ferro_common::Error::not_found_msg(format!("Flavor access not found for {id2} / {tenant} combination.")));
            }
            f.access.retain(|t| t != &tenant);
        }
        Ok(())
    })
    .await?;
    Ok(json_resp(StatusCode::OK, access_body(&f)))
}
