//! `os-volume_attachments` (attach, list, show, update, detach) and
//! `os-assisted-volume-snapshots`: parse and render; the workflows are in
//! `crate::volumes`.
use super::request::{Caller, Mv, St, body, json_resp};
use super::servers::get_instance;
use crate::error::{NResult, NovaError};
use crate::model::{Bdm, Instance};
use crate::volumes::{self, VolumeSagaState};
use crate::{ComputeService, ops};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferro_rpc::compute::{AssistedSnapshot, ComputeRequest};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<ComputeService>> {
    axum::Router::new()
        .route(
            "/servers/{id}/os-volume_attachments",
            get(list).post(attach),
        )
        .route(
            "/servers/{id}/os-volume_attachments/{volume}",
            get(show).delete(detach).put(update),
        )
}

fn attachment_view(mv: Mv, i: &Instance, b: &Bdm) -> Value {
    let vol = b.volume_id.clone().or(b.uuid.clone()).unwrap_or_default();
    let mut v = json!({"volumeId": vol, "serverId": i.uuid});
    if let Some(d) = b.device_name.as_deref().filter(|d| !d.is_empty()) {
        v["device"] = json!(d);
    }
    if !mv.at_least(89) {
        v["id"] = json!(vol);
    }
    if mv.at_least(70) {
        v["tag"] = json!(b.tag);
    }
    if mv.at_least(79) {
        v["delete_on_termination"] = json!(b.delete_on_termination);
    }
    if mv.at_least(89) {
        v["attachment_id"] = json!(b.attachment_id);
        // Mappings recorded before bdm_uuid existed answer with their
        // attachment's id, which is as unique.
        v["bdm_uuid"] = json!(b.bdm_uuid.as_ref().or(b.attachment_id.as_ref()));
    }
    v
}

async fn list(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: axum::extract::RawQuery,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let mut items: Vec<Value> = volumes::volume_bdms(&i)
        .map(|b| attachment_view(c.mv, &i, b))
        .collect();
    let params: Vec<(String, String)> =
        q.0.unwrap_or_default()
            .split('&')
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
    let get = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    if let Some(o) = get("offset") {
        let n: usize = o
            .parse()
            .map_err(|_| NovaError::bad("Invalid input for query parameters offset."))?;
        items = items.into_iter().skip(n).collect();
    }
    if let Some(l) = get("limit") {
        let n: usize = l
            .parse()
            .map_err(|_| NovaError::bad("Invalid input for query parameters limit."))?;
        items.truncate(n);
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"volumeAttachments": items}),
    ))
}

async fn show(
    AxState(svc): St,
    c: Caller,
    Path((id, volume)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let b = volumes::volume_bdms(&i)
        .find(|b| b.volume_id.as_deref() == Some(volume.as_str()))
        .ok_or_else(|| NovaError::not_found(format!("Volume {volume} is not attached to {id}")))?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"volumeAttachment": attachment_view(c.mv, &i, b)}),
    ))
}

/// Nova's check_instance_state for attach/detach.
fn settled(i: &Instance, action: &str) -> NResult<()> {
    if !matches!(
        i.vm_state.as_str(),
        "active"
            | "paused"
            | "stopped"
            | "resized"
            | "soft-delete"
            | "shelved"
            | "shelved_offloaded"
    ) {
        return Err(NovaError::invalid_state(
            action,
            "vm_state",
            &i.vm_state,
            &i.uuid,
        ));
    }
    if let Some(t) = &i.task_state {
        return Err(NovaError::invalid_state(action, "task_state", t, &i.uuid));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    super::servers::uuid_like(s)
}

async fn attach(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let o = b
        .get("volumeAttachment")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute volumeAttachment."))?;
    let mut known = vec!["volumeId", "device"];
    if c.mv.at_least(49) {
        known.push("tag");
    }
    if c.mv.at_least(79) {
        known.push("delete_on_termination");
    }
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let volume = match o.get("volumeId") {
        Some(Value::String(v)) if is_uuid(v) => v.clone(),
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute volumeId. Value: {v}. '{v}' is not a 'uuid'"
            )));
        }
        None => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property",
            ));
        }
    };
    let device = match o.get("device") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.starts_with("/dev/") && d.len() > 5 => Some(d.clone()),
        Some(d) => {
            return Err(NovaError::bad(format!(
                "The supplied device path ({d}) is invalid."
            )));
        }
    };
    let tag = o.get("tag").and_then(Value::as_str).map(str::to_string);
    let dot = o
        .get("delete_on_termination")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let i = get_instance(&svc, &c, &id)?;
    settled(&i, "attach_volume")?;
    let project = c.project();
    let admin = c.is_admin(&svc);
    let vol = svc
        .volumes
        .get(&project, admin, &volume)
        .ok_or_else(|| NovaError::not_found(format!("Volume {volume} could not be found.")))?;
    if volumes::volume_bdms(&i).any(|b| b.volume_id.as_deref() == Some(volume.as_str())) {
        return Err(NovaError::bad(format!(
            "Invalid volume: volume {volume} is already attached to instance {id}"
        )));
    }
    let status = vol["status"].as_str().unwrap_or_default();
    let multi = vol["multiattach"].as_bool().unwrap_or(false);
    if !(status == "available" || (multi && status == "in-use")) {
        return Err(NovaError::bad(format!(
            "Invalid volume: volume {volume} status must be 'available'. Currently in '{status}'"
        )));
    }
    if multi && status == "in-use" && !c.mv.at_least(60) {
        return Err(NovaError::bad(
            "Multiattach volumes are only supported starting with compute API version 2.60.",
        ));
    }
    let device = match device {
        Some(d) => {
            if i.bdms
                .iter()
                .any(|b| b.device_name.as_deref() == Some(d.as_str()))
                || (d == "/dev/vda" && !i.image_ref.is_empty())
            {
                return Err(NovaError::conflict(format!(
                    "The supplied device path ({d}) is in use."
                )));
            }
            d
        }
        None => volumes::next_device(&i),
    };
    let state = VolumeSagaState {
        uuid: i.uuid.clone(),
        host: i.host.clone().unwrap_or_default(),
        volume: volume.clone(),
        device,
        project,
        admin,
        tag,
        delete_on_termination: dot,
        request_id: c.request_id.clone(),
        ..Default::default()
    };
    crate::actions::record(&svc, &c, &i, "attach_volume").await?;
    volumes::attach(&svc, state).await.map_err(|m| {
        if m.contains("could not be found") {
            NovaError::not_found(m)
        } else if m.starts_with("Invalid") || m.contains("status must") {
            NovaError::bad(m)
        } else {
            NovaError::new(500, format!("Attaching volume {volume} failed: {m}"))
        }
    })?;
    let i = get_instance(&svc, &c, &id)?;
    let b = volumes::volume_bdms(&i)
        .find(|b| b.volume_id.as_deref() == Some(volume.as_str()))
        .cloned()
        .ok_or_else(|| NovaError::new(500, "attachment not recorded"))?;
    // Nova never gave the attach response 2.89's shape.
    let mv = Mv(2, c.mv.1.min(88));
    Ok(json_resp(
        StatusCode::OK,
        json!({"volumeAttachment": attachment_view(mv, &i, &b)}),
    ))
}

async fn detach(
    AxState(svc): St,
    c: Caller,
    Path((id, volume)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    settled(&i, "detach_volume")?;
    let b = volumes::volume_bdms(&i)
        .find(|b| b.volume_id.as_deref() == Some(volume.as_str()))
        .cloned()
        .ok_or_else(|| NovaError::not_found(format!("Volume {volume} is not attached to {id}")))?;
    if b.boot_index == Some(0) {
        return Err(NovaError::bad("Cannot detach a root device volume"));
    }
    crate::actions::record(&svc, &c, &i, "detach_volume").await?;
    volumes::detach_one(&svc, &i, &b, &c.request_id, false)
        .await
        .map_err(|m| NovaError::new(500, format!("Detaching volume {volume} failed: {m}")))?;
    Ok(json_resp(StatusCode::ACCEPTED, Value::Null).into_empty())
}

/// `PUT …/os-volume_attachments/{volume}`: before 2.85 only a swap (admin);
/// from 2.85 the owner may change `delete_on_termination`, and a different
/// `volumeId` asks for a swap as well. The other attributes may be sent as
/// they read, but never changed.
async fn update(
    AxState(svc): St,
    c: Caller,
    Path((id, volume)): Path<(String, String)>,
    raw: Bytes,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let b = body(&raw)?;
    let Some(o) = b.get("volumeAttachment").and_then(Value::as_object) else {
        return Err(NovaError::bad(
            "Invalid input for field/attribute volumeAttachment. 'volumeAttachment' is a required property",
        ));
    };
    if let Some(k) = b
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "volumeAttachment"))
    {
        return Err(NovaError::bad(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let only_swap = !c.mv.at_least(85);
    let known: &[&str] = if only_swap {
        &["volumeId"]
    } else {
        &[
            "volumeId",
            "device",
            "tag",
            "delete_on_termination",
            "serverId",
            "id",
        ]
    };
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute volumeAttachment. Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let new_volume = match o.get("volumeId") {
        Some(Value::String(v)) if is_uuid(v) => v.clone(),
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute volumeId. Value: {v}. {v} is not a 'uuid'"
            )));
        }
        None => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property",
            ));
        }
    };
    let dot = match o.get("delete_on_termination") {
        None => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| {
            NovaError::bad(format!(
                "Invalid input for field/attribute delete_on_termination. Value: {v}. {v} is not of type 'boolean', 'string'"
            ))
        })?),
    };
    let swap = only_swap || new_volume != volume;
    if swap {
        c.require_admin(&svc, "os_compute_api:os-volumes-attachments:swap")?;
    } else {
        c.require_member(
            &svc,
            &i.project_id,
            "os_compute_api:os-volumes-attachments:update",
        )?;
    }
    let Some(bdm) = volumes::volume_bdms(&i)
        .find(|b| b.volume_id.as_deref() == Some(volume.as_str()))
        .cloned()
    else {
        return Err(NovaError::not_found(if only_swap {
            format!("Volume {volume} is not attached to {id}")
        } else {
            format!("No volume Block Device Mapping with id {volume}.")
        }));
    };
    if !only_swap {
        let immutable = |k: &str, current: Value| match o.get(k) {
            Some(v) if *v != current => {
                Err(NovaError::bad(format!("The {k} property is not mutable")))
            }
            _ => Ok(()),
        };
        immutable("id", json!(volume))?;
        immutable("serverId", json!(i.uuid))?;
        immutable("device", json!(bdm.device_name))?;
        immutable("tag", json!(bdm.tag))?;
        if let Some(dot) = dot {
            let vol = volume.clone();
            svc.state
                .update_instance(&i.uuid, move |x| {
                    for b in x.bdms.iter_mut() {
                        if b.volume_id.as_deref() == Some(vol.as_str()) {
                            b.delete_on_termination = dot;
                        }
                    }
                    Ok(())
                })
                .await?;
        }
    }
    if swap {
        return Err(NovaError::bad(
            "Swapping volumes is not supported by this cloud's virt driver.",
        ));
    }
    Ok(json_resp(StatusCode::ACCEPTED, Value::Null).into_empty())
}

/// Nova's `parameter_types.boolean`: a JSON boolean or one of the strings
/// oslo's `bool_from_string` knows.
fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

trait IntoEmpty {
    fn into_empty(self) -> Response;
}

impl IntoEmpty for Response {
    /// The same status with no body (Nova's 202s are empty).
    fn into_empty(self) -> Response {
        let status = self.status();
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = status;
        r
    }
}

pub fn assisted_routes() -> axum::Router<Arc<ComputeService>> {
    axum::Router::new()
        .route(
            "/os-assisted-volume-snapshots",
            axum::routing::post(assisted_create),
        )
        .route(
            "/os-assisted-volume-snapshots/{id}",
            axum::routing::delete(assisted_delete),
        )
}

/// The instance a volume is attached to.
fn holder(svc: &ComputeService, volume: &str) -> NResult<Instance> {
    let st = svc.state.read();
    st.live()
        .find(|i| volumes::volume_bdms(i).any(|b| b.volume_id.as_deref() == Some(volume)))
        .cloned()
        .ok_or_else(|| {
            NovaError::not_found(format!("No volume Block Device Mapping with id {volume}."))
        })
}

async fn assisted_create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-assisted-volume-snapshots:create")?;
    let b = body(&raw)?;
    let s = b
        .get("snapshot")
        .and_then(Value::as_object)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute snapshot."))?;
    let volume = s
        .get("volume_id")
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad("'volume_id' is a required property"))?
        .to_string();
    let info = s
        .get("create_info")
        .filter(|v| v.is_object())
        .cloned()
        .ok_or_else(|| NovaError::bad("'create_info' is a required property"))?;
    let snap = info["snapshot_id"]
        .as_str()
        .ok_or_else(|| NovaError::bad("create_info needs a snapshot_id"))?
        .to_string();
    let i = holder(&svc, &volume)?;
    let host = i
        .host
        .clone()
        .ok_or_else(|| NovaError::conflict(format!("Instance {} is not on a host.", i.uuid)))?;
    let create_info: AssistedSnapshot = serde_json::from_value(info)
        .map_err(|e| NovaError::bad(format!("Invalid create_info: {e}")))?;
    // Nova casts this to the host and answers at once; the outcome is the
    // host's to report (a failure is logged there and here).
    let req = ComputeRequest::VolumeSnapshotCreate {
        uuid: i.uuid.clone(),
        volume_id: volume.clone(),
        create_info,
    };
    let (svc2, rid, vol) = (svc.clone(), c.request_id.clone(), volume.clone());
    tokio::spawn(async move {
        if let Err(e) = ops::call_agent(&svc2, &host, req, Some(&rid)).await {
            tracing::warn!(volume = %vol, %host, "assisted volume snapshot failed: {e}");
        }
    });
    Ok(json_resp(
        StatusCode::OK,
        json!({"snapshot": {"id": snap, "volumeId": volume}}),
    ))
}

async fn assisted_delete(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    q: axum::extract::RawQuery,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-assisted-volume-snapshots:delete")?;
    let raw = q.0.unwrap_or_default();
    let info = raw
        .split('&')
        .find_map(|p| p.strip_prefix("delete_info="))
        .ok_or_else(|| NovaError::bad("Query parameter delete_info is required."))?;
    let decoded = ferro_common::percent_decode(info);
    let info: Value = serde_json::from_str(&decoded)
        .map_err(|_| NovaError::bad("Invalid delete_info: it must be JSON."))?;
    let volume = info["volume_id"]
        .as_str()
        .ok_or_else(|| NovaError::bad("delete_info needs a volume_id"))?
        .to_string();
    let i = holder(&svc, &volume)?;
    let host = i
        .host
        .clone()
        .ok_or_else(|| NovaError::conflict(format!("Instance {} is not on a host.", i.uuid)))?;
    let req = ComputeRequest::VolumeSnapshotDelete {
        uuid: i.uuid.clone(),
        volume_id: volume.clone(),
        snapshot_id: id.clone(),
    };
    let (svc2, rid) = (svc.clone(), c.request_id.clone());
    tokio::spawn(async move {
        if let Err(e) = ops::call_agent(&svc2, &host, req, Some(&rid)).await {
            tracing::warn!(volume = %volume, %host, "assisted volume snapshot delete failed: {e}");
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}
