//! `os-aggregates`: host aggregates, their metadata and availability zones, mirrored into Placement aggregates.
use super::availability_zones::computes;
use super::request::{Caller, St, body, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::Aggregate;
use crate::state::{Rec, State, iso_z, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferro_common::Error;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/os-aggregates", get(aggs_list).post(agg_create))
        .route(
            "/os-aggregates/{id}",
            get(agg_show).put(agg_update).delete(agg_delete),
        )
        .route("/os-aggregates/{id}/action", post(agg_action))
        .route("/os-aggregates/{id}/images", post(agg_images))
}

/// `POST /os-aggregates/{id}/images` (2.81): the aggregate's hosts
/// pre-cache these images; 202 before they do.
async fn agg_images(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    if !c.mv.at_least(81) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    c.require_admin(&svc, "compute:aggregates:images")?;
    let b = body(&bytes)?;
    let invalid = |why: String| NovaError::bad(format!("Invalid input for field/attribute {why}"));
    let o = b.as_object().ok_or_else(|| {
        invalid(format!(
            "request body. Value: {b}. {b} is not of type 'object'"
        ))
    })?;
    if let Some(k) = o.keys().find(|k| *k != "cache") {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let list = match o.get("cache") {
        None => return Err(NovaError::bad("'cache' is a required property")),
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(invalid("cache. Value: []. [] should be non-empty".into()));
        }
        Some(v) => {
            return Err(invalid(format!(
                "cache. Value: {v}. {v} is not of type 'array'"
            )));
        }
    };
    let mut ids: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let Some(m) = item.as_object() else {
            return Err(invalid(format!(
                "cache. Value: {item}. {item} is not of type 'object'"
            )));
        };
        if let Some(k) = m.keys().find(|k| *k != "id") {
            return Err(invalid(format!(
                "cache. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        match m.get("id") {
            Some(Value::String(s)) if super::servers::uuid_like(s) => ids.push(s.clone()),
            Some(v) => return Err(invalid(format!("id. Value: {v}. {v} is not a 'uuid'"))),
            None => return Err(invalid("cache. 'id' is a required property".into())),
        }
    }
    if id.parse::<i64>().is_err() {
        return Err(NovaError::bad(
            "Invalid input received: id must be an integer",
        ));
    }
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    if uniq.len() != ids.len() {
        return Err(NovaError::bad("Duplicate images in request"));
    }
    let agg = find_agg(&svc.state.read(), &id)?;
    for image in &ids {
        if svc.image.get(c.token(), image).await?.is_none() {
            return Err(NovaError::bad(format!("Image {image} could not be found.")));
        }
    }
    crate::image_cache::cache_on_hosts(
        &svc,
        c.acting(),
        agg.hosts.clone(),
        ids,
        c.request_id.clone(),
    );
    Ok(StatusCode::ACCEPTED.into_response())
}

fn agg_view(c: &Caller, a: &Aggregate) -> Value {
    let mut meta = a.metadata.clone();
    if let Some(z) = &a.availability_zone {
        meta.insert("availability_zone".into(), z.clone());
    }
    let mut v = json!({
        "id": a.id, "name": a.name, "availability_zone": a.availability_zone, "hosts": a.hosts,
        "metadata": meta, "created_at": iso_z(&a.created_at), "updated_at": a.updated_at.as_deref().map(iso_z),
        "deleted": false, "deleted_at": Value::Null,
    });
    if c.mv.at_least(41) {
        v["uuid"] = json!(a.uuid);
    }
    v
}

fn find_agg(st: &State, id: &str) -> Result<Aggregate, Error> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| st.aggregates.get(&n))
        .or_else(|| st.aggregates.values().find(|a| a.uuid == id))
        .cloned()
        .ok_or_else(|| Error::not_found_msg(format!("Aggregate {id} could not be found.")))
}

async fn aggs_list(AxState(svc): St, c: Caller) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:index")?;
    let st = svc.state.read();
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregates": st.aggregates.values().map(|a| agg_view(&c, a)).collect::<Vec<_>>()}),
    ))
}

fn agg_name(v: Option<&Value>) -> NResult<String> {
    v.and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255 && n.trim() == *n)
        .map(str::to_string)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))
}

fn agg_az(v: Option<&Value>) -> NResult<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(z)) if !z.is_empty() && z.len() <= 255 && !z.contains(':') => {
            Ok(Some(z.clone()))
        }
        Some(_) => Err(NovaError::bad(
            "Invalid input for field/attribute availability_zone.",
        )),
    }
}

async fn agg_create(AxState(svc): St, c: Caller, bytes: Bytes) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:create")?;
    let b = body(&bytes)?;
    let o = super::request::member(
        &b,
        "aggregate",
        "Invalid input for field/attribute aggregate.",
    )?;
    let name = agg_name(o.get("name"))?;
    let az = agg_az(o.get("availability_zone"))?;
    let a = svc
        .state
        .write(|st| {
            if st.aggregates.values().any(|a| a.name == name) {
                return Err(Error::conflict(format!("Aggregate {name} already exists.")));
            }
            let a = Aggregate {
                id: st.aggregates.keys().max().copied().unwrap_or(0) + 1,
                uuid: ferro_common::new_uuid(),
                name: name.clone(),
                availability_zone: az.clone(),
                hosts: vec![],
                metadata: BTreeMap::new(),
                created_at: now(),
                updated_at: None,
            };
            Ok((a.clone(), vec![Rec::Aggregate(a)]))
        })
        .await?;
    let mut v = agg_view(&c, &a);
    if let Some(o) = v.as_object_mut() {
        o.remove("hosts");
        o.remove("metadata");
    }
    Ok(json_resp(StatusCode::OK, json!({"aggregate": v})))
}

async fn agg_show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:show")?;
    let a = find_agg(&svc.state.read(), &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}

async fn agg_update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:update")?;
    let b = body(&bytes)?;
    let o = super::request::member(
        &b,
        "aggregate",
        "Invalid input for field/attribute aggregate.",
    )?;
    if o.is_empty() {
        return Err(NovaError::bad(
            "Invalid input for field/attribute aggregate. {} does not have enough properties",
        ));
    }
    let name = o.get("name").map(|n| agg_name(Some(n))).transpose()?;
    let az = if o.contains_key("availability_zone") {
        Some(agg_az(o.get("availability_zone"))?)
    } else {
        None
    };
    let a = svc
        .state
        .write(|st| {
            let mut a = find_agg(st, &id)?;
            if let Some(n) = &name {
                if st.aggregates.values().any(|x| &x.name == n && x.id != a.id) {
                    return Err(Error::conflict(format!("Aggregate {n} already exists.")));
                }
                a.name = n.clone();
            }
            if let Some(z) = &az {
                a.availability_zone = z.clone();
            }
            a.updated_at = Some(now());
            Ok((a.clone(), vec![Rec::Aggregate(a)]))
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}

async fn agg_delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:delete")?;
    svc.state
        .write(|st| {
            let a = find_agg(st, &id)?;
            if !a.hosts.is_empty() {
                return Err(Error::validation(format!(
                    "Cannot remove aggregate {id}: it still has hosts."
                )));
            }
            Ok(((), vec![Rec::DelAggregate(a.id)]))
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn sync_host_aggregates(svc: &ComputeService, host: &str) {
    let (node, aggs) = {
        let st = svc.state.read();
        let node = computes(&st)
            .into_iter()
            .find(|s| s.host == host)
            .and_then(|s| s.node_uuid.clone());
        let aggs: Vec<String> = st
            .aggregates
            .values()
            .filter(|a| a.hosts.iter().any(|h| h == host))
            .map(|a| a.uuid.clone())
            .collect();
        (node, aggs)
    };
    if let Some(n) = node
        && let Err(e) = svc.placement.set_provider_aggregates(&n, aggs).await
    {
        tracing::warn!(%host, "placement aggregates not updated: {}", e.log_message());
    }
}

async fn agg_action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-aggregates:add_host")?;
    let b = body(&bytes)?;
    let o = b
        .as_object()
        .ok_or_else(|| NovaError::bad("Malformed request body"))?;
    let (act, arg) = o
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| NovaError::bad("Malformed request body"))?;
    let mut touched_host = None;
    let a = match act.as_str() {
        "add_host" | "remove_host" => {
            let host = arg
                .get("host")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute host."))?
                .to_string();
            touched_host = Some(host.clone());
            let add = act == "add_host";
            svc.state
                .write(|st| {
                    let mut a = find_agg(st, &id)?;
                    if !computes(st).iter().any(|s| s.host == host) {
                        return Err(Error::not_found_msg(format!("Compute host {host} could not be found.")));
                    }
                    if add {
                        if a.hosts.contains(&host) {
                            return Err(Error::conflict(format!("Aggregate {id} already has host {host}.")));
                        }
                        if let Some(z) = &a.availability_zone
                            && st.aggregates.values().any(|x| x.id != a.id && x.hosts.contains(&host) && x.availability_zone.as_ref().is_some_and(|y| y != z))
                        {
                            return Err(Error::validation(format!("Cannot add host {host} to aggregate {id}: it is in another availability zone.")));
                        }
                        a.hosts.push(host.clone());
                    } else {
                        if !a.hosts.contains(&host) {
                            return Err(Error::not_found_msg(format!("Cannot remove host {host} in aggregate {id}: not found.")));
                        }
                        a.hosts.retain(|h| h != &host);
                    }
                    a.updated_at = Some(now());
                    Ok((a.clone(), vec![Rec::Aggregate(a)]))
                })
                .await?
        }
        "set_metadata" => {
            let meta = super::request::member(
                &arg,
                "metadata",
                "Invalid input for field/attribute metadata.",
            )?
            .clone();
            svc.state
                .write(|st| {
                    let mut a = find_agg(st, &id)?;
                    for (k, v) in &meta {
                        if k.is_empty() || k.len() > 255 {
                            return Err(Error::validation(
                                "Invalid input for field/attribute metadata.",
                            ));
                        }
                        match v {
                            Value::Null => {
                                if k == "availability_zone" {
                                    a.availability_zone = None;
                                }
                                a.metadata.remove(k);
                            }
                            Value::String(s) if k == "availability_zone" => {
                                a.availability_zone = Some(s.clone())
                            }
                            Value::String(s) => {
                                a.metadata.insert(k.clone(), s.clone());
                            }
                            Value::Number(n) => {
                                a.metadata.insert(k.clone(), n.to_string());
                            }
                            _ => {
                                return Err(Error::validation(
                                    "Invalid input for field/attribute metadata.",
                                ));
                            }
                        }
                    }
                    a.updated_at = Some(now());
                    Ok((a.clone(), vec![Rec::Aggregate(a)]))
                })
                .await?
        }
        other => return Err(NovaError::bad(format!("Invalid aggregate action {other}"))),
    };
    if let Some(h) = touched_host {
        sync_host_aggregates(&svc, &h).await;
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"aggregate": agg_view(&c, &a)}),
    ))
}
