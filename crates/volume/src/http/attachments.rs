//! Attaching: the attachments API (`/v3/attachments`, 3.27+) Nova uses,
//! the legacy `os-reserve`/`os-attach`/`os-detach` actions, and every
//! other `POST /v3/volumes/{id}/action` verb (extend, bootable, readonly,
//! reset status, force delete, upload to image, retype, revert, image
//! metadata).
use super::volumes::{find, start_delete, type_usable};
use super::{
    Body, Query, St, accepted, accepted_empty, check_metadata, ok, paginate, truthy, uuid_like,
};
use crate::error::{CResult, CinderError};
use crate::flows;
use crate::store::{Kind, Obj, State, Tx, b, i, new_id, now, s};
use crate::views::{self, Mv};
use crate::{Caller, VolumeService};
use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub fn routes() -> axum::Router<Arc<VolumeService>> {
    axum::Router::new()
        .route("/v3/attachments", get(list).post(create))
        .route("/v3/attachments/detail", get(list_detail))
        .route("/v3/attachments/{id}", get(show).put(update).delete(delete))
        .route("/v3/attachments/{id}/action", post(att_action))
}

fn need_27(mv: Mv) -> CResult<()> {
    if mv.at_least(27) {
        Ok(())
    } else {
        Err(CinderError::not_found("The resource could not be found."))
    }
}

fn find_att(st: &State, c: &Caller, id: &str) -> CResult<Arc<Obj>> {
    st.get(Kind::Attachment, id)
        .filter(|a| c.owns(a))
        .cloned()
        .ok_or_else(|| {
            CinderError::not_found(format!("Volume attachment {id} could not be found."))
        })
}

/// The volume's attachments: all of them, or the one `att` names.
fn attachment_ids(st: &State, vol: &str, att: Option<&str>) -> Vec<String> {
    st.attachments_of(vol)
        .filter(|a| att.is_none_or(|x| x == s(a, "id")))
        .map(|a| s(a, "id").to_string())
        .collect()
}

/// Recomputes a volume's status and attach status from its attachments.
fn settle_volume(tx: &mut Tx, vol: &str) {
    let Some(mut v) = tx.get(Kind::Volume, vol) else {
        return;
    };
    let live: Vec<String> = tx
        .st
        .attachments_of(vol)
        .map(|a| s(a, "attach_status").to_string())
        .collect();
    let status = if live.iter().any(|x| x == "attached") {
        "in-use"
    } else if live.iter().any(|x| x == "attaching") {
        "attaching"
    } else if live.iter().any(|x| x == "reserved") {
        "reserved"
    } else {
        "available"
    };
    v.insert("status".into(), json!(status));
    v.insert(
        "attach_status".into(),
        json!(if status == "in-use" {
            "attached"
        } else {
            "detached"
        }),
    );
    if status == "available"
        && let Some(am) = v.get_mut("admin_metadata").and_then(Value::as_object_mut)
    {
        am.remove("attached_mode");
    }
    v.insert("updated_at".into(), json!(now()));
    tx.put(Kind::Volume, v);
}

/// Creates an attachment of `vol` for `instance` (reserving the volume).
/// (The caller has checked the volume is visible to it.)
pub fn reserve(tx: &mut Tx, vol: &str, instance: Option<&str>, mode: &str) -> CResult<Obj> {
    let v = tx
        .st
        .get(Kind::Volume, vol)
        .cloned()
        .ok_or_else(|| CinderError::volume_not_found(vol))?;
    let status = s(&v, "status");
    let multi = b(&v, "multiattach");
    let ok_status = status == "available" || (multi && matches!(status, "in-use" | "reserved"));
    if !ok_status {
        return Err(CinderError::invalid(
            "volume",
            format!(
                "Volume {vol} status must be available or downloading to reserve, but the current status is {status}."
            ),
        ));
    }
    if let Some(inst) = instance
        && tx
            .st
            .attachments_of(vol)
            .any(|a| s(a, "instance_uuid") == inst && s(a, "attach_status") != "detached")
    {
        return Err(CinderError::invalid(
            "volume",
            format!("Volume {vol} is already attached to instance {inst}."),
        ));
    }
    let readonly = v
        .get("admin_metadata")
        .and_then(|m| m.get("readonly"))
        .and_then(Value::as_str)
        == Some("True");
    let mut a = Obj::new();
    a.insert("id".into(), json!(new_id()));
    a.insert("volume_id".into(), json!(vol));
    a.insert("instance_uuid".into(), json!(instance));
    a.insert("attach_status".into(), json!("reserved"));
    a.insert(
        "attach_mode".into(),
        json!(if readonly { "ro" } else { mode }),
    );
    a.insert("project_id".into(), json!(s(&v, "project_id")));
    a.insert("created_at".into(), json!(now()));
    a.insert("attach_time".into(), Value::Null);
    a.insert("detach_time".into(), Value::Null);
    tx.put(Kind::Attachment, a.clone());
    settle_volume(tx, vol);
    Ok(a)
}

/// Records the connector and hands out connection info (status `attaching`).
pub async fn connect(
    svc: &VolumeService,
    att: &str,
    connector: &Map<String, Value>,
) -> CResult<Obj> {
    let vol = {
        let st = svc.store.read();
        let a = st.get(Kind::Attachment, att).cloned().ok_or_else(|| {
            CinderError::not_found(format!("Volume attachment {att} could not be found."))
        })?;
        s(&a, "volume_id").to_string()
    };
    let mut info = svc
        .backend
        .export(&vol, &Value::Object(connector.clone()))
        .await
        .map_err(CinderError::internal)?;
    info["data"]["access_mode"] = json!("rw");
    info["data"]["attachment_id"] = json!(att);
    let host = connector
        .get("host")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mount = connector
        .get("mountpoint")
        .and_then(Value::as_str)
        .map(str::to_string);
    svc.store
        .write(|tx| {
            let mut a = tx.get(Kind::Attachment, att).ok_or_else(|| {
                CinderError::not_found(format!("Volume attachment {att} could not be found."))
            })?;
            let mode = s(&a, "attach_mode").to_string();
            info["data"]["access_mode"] = json!(if mode.is_empty() { "rw" } else { &mode });
            a.insert("connector".into(), Value::Object(connector.clone()));
            a.insert("connection_info".into(), info.clone());
            a.insert("attached_host".into(), json!(host));
            if mount.is_some() {
                a.insert("mountpoint".into(), json!(mount));
            }
            if s(&a, "attach_status") == "reserved" {
                a.insert("attach_status".into(), json!("attaching"));
            }
            tx.put(Kind::Attachment, a.clone());
            settle_volume(tx, &vol);
            Ok(a)
        })
        .await
}

/// Marks the attachment attached (volume `in-use`).
pub fn complete(
    tx: &mut Tx,
    att: &str,
    mountpoint: Option<&str>,
    host: Option<&str>,
) -> CResult<()> {
    let mut a = tx.get(Kind::Attachment, att).ok_or_else(|| {
        CinderError::not_found(format!("Volume attachment {att} could not be found."))
    })?;
    a.insert("attach_status".into(), json!("attached"));
    a.insert("attach_time".into(), json!(now()));
    if let Some(m) = mountpoint {
        a.insert("mountpoint".into(), json!(m));
    }
    if let Some(h) = host {
        a.insert("attached_host".into(), json!(h));
    }
    let vol = s(&a, "volume_id").to_string();
    let mode = s(&a, "attach_mode").to_string();
    tx.put(Kind::Attachment, a);
    if let Some(mut v) = tx.get(Kind::Volume, &vol) {
        let am = v.entry("admin_metadata").or_insert_with(|| json!({}));
        if let Some(am) = am.as_object_mut() {
            am.insert(
                "attached_mode".into(),
                json!(if mode.is_empty() { "rw" } else { &mode }),
            );
        }
        tx.put(Kind::Volume, v);
    }
    settle_volume(tx, &vol);
    Ok(())
}

/// Removes the attachment; the volume is `available` when none is left.
/// Returns it, for `release` once the removal is written.
pub fn detach(tx: &mut Tx, att: &str) -> CResult<Obj> {
    let a = tx.get(Kind::Attachment, att).ok_or_else(|| {
        CinderError::not_found(format!("Volume attachment {att} could not be found."))
    })?;
    tx.del(Kind::Attachment, att);
    settle_volume(tx, s(&a, "volume_id"));
    Ok(a)
}

/// Closes the backend's exports of attachments that are gone (Cinder's
/// `terminate_connection` when an attachment is deleted): each one with a
/// connector. A failure is logged; the attachment is gone either way.
pub async fn release(svc: &VolumeService, gone: &[Obj]) {
    for a in gone {
        let Some(conn) = a.get("connector").filter(|c| c.is_object()) else {
            continue;
        };
        if let Err(e) = svc.backend.unexport(s(a, "volume_id"), conn).await {
            tracing::warn!(attachment = s(a, "id"), "closing the volume's export: {e}");
        }
    }
}

// ------------------------------------------------------ /v3/attachments

async fn list_impl(svc: &VolumeService, c: &Caller, q: &Query, detail: bool) -> CResult<Response> {
    let p = super::list_params(
        q,
        &["id", "created_at", "status", "volume_id", "instance_id"],
    )?;
    let st = svc.store.read();
    let mut items = Vec::new();
    for a in st.iter(Kind::Attachment) {
        if !(s(a, "project_id") == c.project || (c.admin && p.all_tenants)) {
            continue;
        }
        let pass = p.filters.iter().all(|(k, v)| match k.as_str() {
            "volume_id" => s(a, "volume_id") == v,
            "instance_id" | "instance_uuid" => s(a, "instance_uuid") == v,
            "status" | "attach_status" => s(a, "attach_status") == v,
            _ => true,
        });
        if pass {
            items.push(a.clone());
        }
    }
    let path = if detail {
        "attachments/detail"
    } else {
        "attachments"
    };
    let (page, links) = paginate(svc, items, &p, path, q)?;
    let mut body = json!({"attachments": page.iter().map(|a| views::attachment(a, detail)).collect::<Vec<_>>()});
    if let Some(l) = links {
        body["attachments_links"] = l;
    }
    Ok(ok(body))
}

async fn list(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    need_27(mv)?;
    list_impl(&svc, &c, &q, false).await
}

async fn list_detail(AxState(svc): St, c: Caller, mv: Mv, q: Query) -> CResult<Response> {
    need_27(mv)?;
    list_impl(&svc, &c, &q, true).await
}

async fn show(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need_27(mv)?;
    let st = svc.store.read();
    let a = find_att(&st, &c, &id)?;
    Ok(ok(json!({"attachment": views::attachment(&a, true)})))
}

async fn create(AxState(svc): St, c: Caller, mv: Mv, Body(body): Body) -> CResult<Response> {
    need_27(mv)?;
    c.require_writer("volume:attachment_create")?;
    let req = super::body_obj(&body, "attachment")?.clone();
    let vol = req
        .get("volume_uuid")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Invalid input received: volume_uuid is required"))?
        .to_string();
    let inst = req
        .get("instance_uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(x) = &inst
        && !uuid_like(x)
    {
        return Err(CinderError::bad(format!(
            "Invalid input for field/attribute instance_uuid. Value: {x}."
        )));
    }
    let mode = match req.get("mode").and_then(Value::as_str) {
        None => "rw".to_string(),
        Some(m @ ("rw" | "ro")) if mv.at_least(54) => m.to_string(),
        Some(m) => {
            return Err(CinderError::bad(format!(
                "Invalid input received: Invalid attach mode {m}"
            )));
        }
    };
    let a = svc
        .store
        .write(|tx| {
            find(&tx.st, &c, &vol)?;
            reserve(tx, &vol, inst.as_deref(), &mode)
        })
        .await?;
    let id = s(&a, "id").to_string();
    let a = match req.get("connector").and_then(Value::as_object) {
        Some(conn) if !conn.is_empty() => match connect(&svc, &id, conn).await {
            Ok(a) => a,
            Err(e) => {
                if let Ok(gone) = svc.store.write(|tx| detach(tx, &id)).await {
                    release(&svc, &[gone]).await;
                }
                return Err(e);
            }
        },
        _ => a,
    };
    Ok(ok(json!({"attachment": views::attachment(&a, true)})))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    need_27(mv)?;
    c.require_writer("volume:attachment_update")?;
    let req = super::body_obj(&body, "attachment")?;
    let conn = req
        .get("connector")
        .and_then(Value::as_object)
        .ok_or_else(|| CinderError::bad("Invalid input received: connector is required"))?
        .clone();
    {
        let st = svc.store.read();
        find_att(&st, &c, &id)?;
    }
    let a = connect(&svc, &id, &conn).await?;
    Ok(ok(json!({"attachment": views::attachment(&a, true)})))
}

/// Cinder's `attachment_deletion_allowed` (bug #2004555, OSSA-2023-003):
/// an attachment that a server on Compute holds (it has the volume
/// connected, under this attachment) is removed only through Compute,
/// never by a user's call here, or the host keeps a device the volume no
/// longer backs. Compute's own detach reaches Block Storage in process, not
/// through these routes. Without an `attachment`, the volume's only one is
/// meant; several and no id: refused.
pub(crate) async fn deletion_allowed(
    svc: &VolumeService,
    attachment: Option<&str>,
    volume: Option<&str>,
) -> CResult<()> {
    let att = {
        let st = svc.store.read();
        match (attachment, volume) {
            (Some(a), _) => match st.get(Kind::Attachment, a) {
                Some(a) => Some(a.clone()),
                // Not found: the caller says so in its own words.
                None => return Ok(()),
            },
            (None, Some(v)) => {
                let all: Vec<_> = st.attachments_of(v).cloned().collect();
                match all.len() {
                    0 => return Ok(()),
                    1 => all.into_iter().next(),
                    _ => None,
                }
            }
            (None, None) => return Ok(()),
        }
    };
    let server = match att {
        None => String::new(),
        Some(a) => {
            if let Some(v) = volume
                && s(&a, "volume_id") != v
            {
                return Err(CinderError::bad(
                    "Invalid input received: Mismatched volume and attachment",
                ));
            }
            let server = s(&a, "instance_uuid");
            if server.is_empty() || a.get("connection_info").is_none_or(Value::is_null) {
                return Ok(());
            }
            let Some(compute) = svc.compute() else {
                return Ok(());
            };
            match compute
                .server_volume_attachment(server, s(&a, "volume_id"))
                .await
                .map_err(|e| CinderError::new(503, e.log_message()))?
            {
                // Not on Compute (or under another attachment): only here.
                None => return Ok(()),
                Some(held) if held != s(&a, "id") => return Ok(()),
                Some(_) => server.to_string(),
            }
        }
    };
    Err(CinderError::conflict(format!(
        "Detach volume from instance {server} using the Compute API"
    )))
}

async fn delete(AxState(svc): St, c: Caller, mv: Mv, Path(id): Path<String>) -> CResult<Response> {
    need_27(mv)?;
    c.require_writer("volume:attachment_delete")?;
    {
        let st = svc.store.read();
        find_att(&st, &c, &id)?;
    }
    deletion_allowed(&svc, Some(&id), None).await?;
    let gone = svc.store.write(|tx| detach(tx, &id)).await?;
    release(&svc, &[gone]).await;
    Ok(ok(json!({"attachments": []})))
}

async fn att_action(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    if !mv.at_least(44) {
        return Err(CinderError::not_found("The resource could not be found."));
    }
    c.require_writer("volume:attachment_complete")?;
    if body.get("os-complete").is_none() {
        return Err(CinderError::bad("Invalid input received: unknown action"));
    }
    {
        let st = svc.store.read();
        find_att(&st, &c, &id)?;
    }
    svc.store.write(|tx| complete(tx, &id, None, None)).await?;
    Ok(accepted_empty())
}

// ------------------------------------------------------ volume actions

const VOLUME_STATUSES: [&str; 18] = [
    "creating",
    "available",
    "reserved",
    "attaching",
    "detaching",
    "in-use",
    "maintenance",
    "deleting",
    "awaiting-transfer",
    "error",
    "error_deleting",
    "backing-up",
    "restoring-backup",
    "error_backing-up",
    "error_restoring",
    "error_extending",
    "downloading",
    "uploading",
];

pub async fn action(
    AxState(svc): St,
    c: Caller,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> CResult<Response> {
    let Some((verb, arg)) = body.as_object().and_then(|o| o.iter().next()) else {
        return Err(CinderError::bad("Malformed request body"));
    };
    let (verb, arg) = (verb.clone(), arg.clone());
    {
        let st = svc.store.read();
        find(&st, &c, &id)?;
    }
    match verb.as_str() {
        "os-extend" => extend(&svc, &c, mv, &id, &arg).await,
        "os-extend_volume_completion" => extend_completion(&svc, &c, &id, &arg).await,
        "os-reimage" if mv.at_least(68) => reimage(&svc, &c, &id, &arg).await,
        "os-reimage" => Err(CinderError::not_found(
            "The resource could not be found: os-reimage needs microversion 3.68.",
        )),
        "os-set_bootable" => {
            c.require_writer("volume:update")?;
            let v = truthy(arg.get("bootable").unwrap_or(&Value::Null)).ok_or_else(|| {
                CinderError::bad("Invalid input received: bootable must be a boolean")
            })?;
            svc.store
                .update(Kind::Volume, &id, |o| {
                    o.insert("bootable".into(), json!(v));
                    Ok(())
                })
                .await?;
            Ok(super::ok_empty())
        }
        "os-update_readonly_flag" => {
            c.require_writer("volume:update_readonly_flag")?;
            let v = truthy(arg.get("readonly").unwrap_or(&Value::Null)).ok_or_else(|| {
                CinderError::bad("Invalid input received: readonly must be a boolean")
            })?;
            svc.store
                .update(Kind::Volume, &id, |o| {
                    if !matches!(s(o, "status"), "available" | "in-use") {
                        return Err(CinderError::invalid(
                            "volume",
                            format!(
                                "Volume status must be available/in-use, but is {}.",
                                s(o, "status")
                            ),
                        ));
                    }
                    let am = o.entry("admin_metadata").or_insert_with(|| json!({}));
                    if let Some(am) = am.as_object_mut() {
                        am.insert("readonly".into(), json!(if v { "True" } else { "False" }));
                    }
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-reset_status" => {
            c.require_admin("volume_extension:volume_admin_actions:reset_status")?;
            let status = arg
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string);
            let attach = arg
                .get("attach_status")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mig = arg.get("migration_status").cloned();
            if status.is_none() && attach.is_none() && mig.is_none() {
                return Err(CinderError::bad(
                    "Must specify 'status', 'attach_status' or 'migration_status' for update.",
                ));
            }
            if let Some(x) = &status
                && !VOLUME_STATUSES.contains(&x.as_str())
            {
                return Err(CinderError::bad(format!(
                    "Must specify a valid status: {x}"
                )));
            }
            if let Some(x) = &attach
                && !matches!(x.as_str(), "attached" | "detached")
            {
                return Err(CinderError::bad(format!(
                    "Must specify a valid attach status: {x}"
                )));
            }
            svc.store
                .write(|tx| {
                    let mut v = tx
                        .get(Kind::Volume, &id)
                        .ok_or_else(|| CinderError::volume_not_found(&id))?;
                    if let Some(x) = &status {
                        v.insert("status".into(), json!(x));
                    }
                    if let Some(x) = &attach {
                        v.insert("attach_status".into(), json!(x));
                        if x == "detached" {
                            let atts: Vec<String> = tx
                                .st
                                .attachments_of(&id)
                                .map(|a| s(a, "id").to_string())
                                .collect();
                            for a in atts {
                                tx.del(Kind::Attachment, &a);
                            }
                        }
                    }
                    if let Some(m) = &mig {
                        v.insert("migration_status".into(), m.clone());
                    }
                    v.insert("updated_at".into(), json!(now()));
                    tx.put(Kind::Volume, v);
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-force_delete" => {
            c.require_admin("volume_extension:volume_admin_actions:force_delete")?;
            start_delete(&svc, &c, &id, false, true).await?;
            Ok(accepted_empty())
        }
        "os-reserve" => {
            c.require_writer("volume:reserve_volume")?;
            svc.store
                .write(|tx| {
                    let a = reserve(tx, &id, None, "rw")?;
                    // The legacy flow shows `attaching` once reserved.
                    let mut a = a;
                    a.insert("attach_status".into(), json!("attaching"));
                    tx.put(Kind::Attachment, a);
                    settle_volume(tx, &id);
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-unreserve" => {
            c.require_writer("volume:unreserve_volume")?;
            svc.store
                .write(|tx| {
                    let pending: Vec<String> = tx
                        .st
                        .attachments_of(&id)
                        .filter(|a| matches!(s(a, "attach_status"), "reserved" | "attaching"))
                        .map(|a| s(a, "id").to_string())
                        .collect();
                    for a in pending {
                        tx.del(Kind::Attachment, &a);
                    }
                    settle_volume(tx, &id);
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-attach" => {
            c.require_writer("volume:attach")?;
            let inst = arg
                .get("instance_uuid")
                .and_then(Value::as_str)
                .map(str::to_string);
            let host = arg
                .get("host_name")
                .and_then(Value::as_str)
                .map(str::to_string);
            if inst.is_none() && host.is_none() {
                return Err(CinderError::bad(
                    "Invalid request to attach volume to an invalid target",
                ));
            }
            if let Some(x) = &inst
                && !uuid_like(x)
            {
                return Err(CinderError::bad(
                    "Invalid request to attach volume to an invalid target",
                ));
            }
            let mount = arg
                .get("mountpoint")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mode = arg
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("rw")
                .to_string();
            if !matches!(mode.as_str(), "rw" | "ro") {
                return Err(CinderError::bad(
                    "Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' or 'ro'",
                ));
            }
            svc.store
                .write(|tx| {
                    // Reuse the reservation `os-reserve` made, if any.
                    let pending = tx
                        .st
                        .attachments_of(&id)
                        .find(|a| matches!(s(a, "attach_status"), "reserved" | "attaching"))
                        .map(|a| s(a, "id").to_string());
                    let att = match pending {
                        Some(a) => {
                            let mut o = tx.get(Kind::Attachment, &a).unwrap_or_default();
                            o.insert("instance_uuid".into(), json!(inst));
                            o.insert("attach_mode".into(), json!(mode));
                            tx.put(Kind::Attachment, o);
                            a
                        }
                        None => s(&reserve(tx, &id, inst.as_deref(), &mode)?, "id").to_string(),
                    };
                    complete(tx, &att, mount.as_deref(), host.as_deref())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-begin_detaching" => {
            c.require_writer("volume:begin_detaching")?;
            svc.store
                .update(Kind::Volume, &id, |v| {
                    if s(v, "status") != "in-use" {
                        return Err(CinderError::invalid("volume", "Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach."));
                    }
                    v.insert("status".into(), json!("detaching"));
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-roll_detaching" => {
            c.require_writer("volume:roll_detaching")?;
            svc.store
                .update(Kind::Volume, &id, |v| {
                    if s(v, "status") == "detaching" {
                        v.insert("status".into(), json!("in-use"));
                    }
                    Ok(())
                })
                .await?;
            Ok(accepted_empty())
        }
        "os-detach" => {
            c.require_writer("volume:detach")?;
            let att = arg
                .get("attachment_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            deletion_allowed(&svc, att.as_deref(), Some(&id)).await?;
            let gone = svc
                .store
                .write(|tx| {
                    let ids = attachment_ids(&tx.st, &id, att.as_deref());
                    // Detaching what is not attached changes nothing (Cinder's
                    // manager does the same after its asynchronous call).
                    if att.is_none() && ids.len() > 1 {
                        return Err(CinderError::invalid("volume", "Detach volume failed: More than one attachment, but no attachment_id provided."));
                    }
                    let mut gone = Vec::new();
                    for a in &ids {
                        gone.push(detach(tx, a)?);
                    }
                    if ids.is_empty() && tx.st.attachments_of(&id).next().is_none() {
                        settle_volume(tx, &id);
                    }
                    Ok(gone)
                })
                .await?;
            release(&svc, &gone).await;
            Ok(accepted_empty())
        }
        "os-force_detach" => {
            c.require_admin("volume_extension:volume_admin_actions:force_detach")?;
            let att = arg
                .get("attachment_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            deletion_allowed(&svc, att.as_deref(), Some(&id)).await?;
            let gone = svc
                .store
                .write(|tx| {
                    let ids = attachment_ids(&tx.st, &id, att.as_deref());
                    if let Some(a) = &att
                        && ids.is_empty()
                    {
                        return Err(CinderError::not_found(format!(
                            "Volume attachment {a} could not be found."
                        )));
                    }
                    let mut gone = Vec::new();
                    for a in &ids {
                        gone.extend(tx.get(Kind::Attachment, a));
                        tx.del(Kind::Attachment, a);
                    }
                    settle_volume(tx, &id);
                    Ok(gone)
                })
                .await?;
            release(&svc, &gone).await;
            Ok(accepted_empty())
        }
        "os-initialize_connection" => {
            c.require_writer("volume:initialize_connection")?;
            let conn = arg
                .get("connector")
                .and_then(Value::as_object)
                .ok_or_else(|| CinderError::bad("Must specify 'connector'"))?;
            let mut info = svc
                .backend
                .export(&id, &Value::Object(conn.clone()))
                .await
                .map_err(CinderError::internal)?;
            info["data"]["access_mode"] = json!("rw");
            Ok(ok(json!({"connection_info": info})))
        }
        "os-terminate_connection" => {
            c.require_writer("volume:terminate_connection")?;
            let Some(conn) = arg.get("connector").filter(|c| c.is_object()) else {
                return Err(CinderError::bad("Must specify 'connector'"));
            };
            deletion_allowed(&svc, None, Some(&id)).await?;
            svc.backend
                .unexport(&id, conn)
                .await
                .map_err(CinderError::internal)?;
            Ok(accepted_empty())
        }
        "os-volume_upload_image" => upload_image(&svc, &c, &id, &arg).await,
        "os-retype" => retype(&svc, &c, &id, &arg).await,
        "revert" => revert(&svc, &c, mv, &id, &arg).await,
        "os-set_image_metadata" => {
            c.require_writer("volume_extension:volume_image_metadata:set")?;
            let m = check_metadata(arg.get("metadata").unwrap_or(&Value::Null))?;
            let v = svc
                .store
                .update(Kind::Volume, &id, |v| {
                    let cur = v
                        .entry("volume_image_metadata")
                        .or_insert_with(|| json!({}));
                    if !cur.is_object() {
                        *cur = json!({});
                    }
                    if let Some(o) = cur.as_object_mut() {
                        o.extend(m);
                    }
                    Ok(())
                })
                .await?;
            Ok(ok(
                json!({"metadata": v.get("volume_image_metadata").cloned().unwrap_or_else(|| json!({}))}),
            ))
        }
        "os-unset_image_metadata" => {
            c.require_writer("volume_extension:volume_image_metadata:remove")?;
            let key = arg
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| CinderError::bad("Malformed request body: key"))?
                .to_string();
            let id2 = id.clone();
            svc.store
                .update(Kind::Volume, &id, |v| {
                    let removed = v
                        .get_mut("volume_image_metadata")
                        .and_then(Value::as_object_mut)
                        .and_then(|o| o.remove(&key));
                    if removed.is_none() {
                        return Err(CinderError::not_found(format!(
                            "Glance metadata for volume/snapshot {id2} cannot be found."
                        )));
                    }
                    Ok(())
                })
                .await?;
            Ok(super::ok_empty())
        }
        "os-show_image_metadata" => {
            let st = svc.store.read();
            let v = find(&st, &c, &id)?;
            Ok(ok(
                json!({"metadata": v.get("volume_image_metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({}))}),
            ))
        }
        "os-migrate_volume" | "os-migrate_volume_completion" => {
            c.require_admin("volume_extension:volume_admin_actions:migrate_volume")?;
            Err(CinderError::bad(
                "Invalid input received: this cloud has a single volume backend; there is nowhere to migrate to.",
            ))
        }
        other => Err(CinderError::bad(format!(
            "There is no such action: {other}"
        ))),
    }
}

async fn extend(
    svc: &Arc<VolumeService>,
    c: &Caller,
    mv: Mv,
    id: &str,
    arg: &Value,
) -> CResult<Response> {
    c.require_writer("volume:extend")?;
    let new = arg
        .get("new_size")
        .and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(x) => x.parse().ok(),
            _ => None,
        })
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            CinderError::bad("Invalid input for field/attribute new_size. new_size must be an integer and greater than 0")
        })?;
    let svc2 = svc.clone();
    let prev = svc
        .store
        .write(|tx| {
            let mut v = tx
                .get(Kind::Volume, id)
                .ok_or_else(|| CinderError::volume_not_found(id))?;
            let status = s(&v, "status").to_string();
            let allowed = status == "available" || (status == "in-use" && mv.at_least(42));
            if !allowed {
                return Err(CinderError::invalid(
                    "volume",
                    format!("Volume status must be 'available' or 'in-use' (from 3.42) to extend, currently {status}."),
                ));
            }
            let size = i(&v, "size");
            if new <= size {
                return Err(CinderError::bad(format!(
                    "Invalid input received: New size for extend must be greater than current size. (current: {size}, extended: {new})."
                )));
            }
            svc2.check_quota(
                &tx.st,
                s(&v, "project_id"),
                s(&v, "volume_type"),
                0,
                0,
                new - size,
            )?;
            v.insert("status".into(), json!("extending"));
            v.insert("previous_status".into(), json!(status));
            v.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Volume, v);
            Ok(status)
        })
        .await?;
    flows::spawn(
        svc,
        flows::EXTEND,
        json!({"id": id, "size": new, "previous_status": prev}),
    );
    Ok(accepted_empty())
}

/// `os-extend_volume_completion` (3.71): Compute reports how the guest
/// took an in-use extend that waits for it (`extend_reservations` in the
/// admin metadata). Extends here finish on the backend alone, so a volume
/// is only ever waiting while an extend saga of that kind runs.
async fn extend_completion(
    svc: &Arc<VolumeService>,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> CResult<Response> {
    c.require_admin("volume:extend_volume_completion")?;
    let error = match arg.get("error") {
        None | Some(Value::Null) => false,
        Some(v) => truthy(v).ok_or_else(|| {
            CinderError::bad("Invalid input for field/attribute error. Value must be a boolean.")
        })?,
    };
    svc.store
        .update(Kind::Volume, id, |v| {
            if s(v, "status") != "extending" {
                return Err(CinderError::invalid(
                    "volume",
                    format!(
                        "Volume status must be 'extending', but is {}.",
                        s(v, "status")
                    ),
                ));
            }
            let pending = v
                .get("admin_metadata")
                .and_then(|m| m.get("extend_reservations"))
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| CinderError::invalid("volume", "Volume is not being extended."))?;
            if let Some(am) = v.get_mut("admin_metadata").and_then(Value::as_object_mut) {
                am.remove("extend_reservations");
            }
            let prev = pending
                .get("previous_status")
                .and_then(Value::as_str)
                .unwrap_or("in-use")
                .to_string();
            if !error && let Some(n) = pending.get("new_size").and_then(Value::as_i64) {
                v.insert("size".into(), json!(n));
            }
            v.insert("status".into(), json!(prev));
            v.insert("updated_at".into(), json!(now()));
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

/// `os-reimage` (3.68): the image's data replaces the volume's. The
/// volume must be available or in error, or `reserved` when the caller
/// (Compute rebuilding a volume-backed server) says `reimage_reserved`.
async fn reimage(svc: &Arc<VolumeService>, c: &Caller, id: &str, arg: &Value) -> CResult<Response> {
    c.require_writer("volume:reimage")?;
    let image_id = arg
        .get("image_id")
        .and_then(Value::as_str)
        .filter(|x| uuid_like(x))
        .ok_or_else(|| CinderError::bad("Invalid input for field/attribute image_id."))?
        .to_string();
    let reserved_ok = match arg.get("reimage_reserved") {
        None | Some(Value::Null) => false,
        Some(v) => truthy(v).ok_or_else(|| {
            CinderError::bad("Invalid input for field/attribute reimage_reserved.")
        })?,
    };
    if reserved_ok {
        c.require_writer("volume:reimage_reserved")?;
    }
    let img = svc
        .images
        .get(c.token(), &image_id)
        .await
        .map_err(CinderError::from)?
        .ok_or_else(|| CinderError::not_found(format!("Image {image_id} could not be found.")))?;
    if img["status"] != "active" {
        return Err(CinderError::bad(format!(
            "Invalid image: image {image_id} is not active."
        )));
    }
    if img.get("block_device_mapping").is_some() {
        return Err(CinderError::bad(format!(
            "Invalid image: image {image_id} is a Compute snapshot of a volume-backed server; re-image from a data image."
        )));
    }
    let (prev, size) = svc
        .store
        .write(|tx| {
            let mut v = tx
                .get(Kind::Volume, id)
                .ok_or_else(|| CinderError::volume_not_found(id))?;
            let status = s(&v, "status").to_string();
            if tx.st.attachments_of(id).count() > 1 {
                return Err(CinderError::new(
                    409,
                    format!("Volume {id} has more than one attachment and cannot be re-imaged."),
                ));
            }
            let ok_status =
                matches!(status.as_str(), "available" | "error") || (reserved_ok && status == "reserved");
            if !ok_status {
                return Err(CinderError::invalid(
                    "volume",
                    format!("Volume status must be available or error{}, but is {status}.",
                        if reserved_ok { " or reserved" } else { "" }),
                ));
            }
            let size = i(&v, "size");
            let need = super::volumes::image_needs_gb(&img);
            if need > size {
                return Err(CinderError::bad(format!(
                    "Invalid input received: Image {image_id} needs {need} GB, more than the volume's {size} GB."
                )));
            }
            let prev = if status == "error" { "available".to_string() } else { status };
            v.insert("status".into(), json!("downloading"));
            v.insert("previous_status".into(), json!(prev));
            v.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Volume, v);
            Ok((prev, size))
        })
        .await?;
    flows::spawn(
        svc,
        flows::REIMAGE,
        json!({"id": id, "size": size, "image_id": image_id, "acting": c.acting(),
               "previous_status": prev,
               "image_metadata": super::volumes::image_metadata(&img)}),
    );
    Ok(accepted_empty())
}

async fn upload_image(
    svc: &Arc<VolumeService>,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> CResult<Response> {
    c.require_writer("volume_extension:volume_actions:upload_image")?;
    let name = arg
        .get("image_name")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("No image_name was specified in request."))?
        .to_string();
    let force = arg
        .get("force")
        .map(|v| truthy(v).unwrap_or(false))
        .unwrap_or(false);
    let disk_format = arg
        .get("disk_format")
        .and_then(Value::as_str)
        .unwrap_or("raw")
        .to_string();
    if !matches!(
        disk_format.as_str(),
        "raw" | "qcow2" | "vmdk" | "vdi" | "vhd" | "vhdx" | "ploop"
    ) {
        return Err(CinderError::bad(format!(
            "Invalid disk-format '{disk_format}' is specified. Allowed disk-formats are raw, vmdk, vdi, qcow2, vhd, vhdx, ploop."
        )));
    }
    let container_format = arg
        .get("container_format")
        .and_then(Value::as_str)
        .unwrap_or("bare")
        .to_string();
    let visibility = arg
        .get("visibility")
        .and_then(Value::as_str)
        .unwrap_or("private")
        .to_string();
    let protected = arg.get("protected").and_then(truthy).unwrap_or(false);
    let (vol, prev) = {
        let st = svc.store.read();
        let v = find(&st, c, id)?;
        let status = s(&v, "status").to_string();
        if !(status == "available" || (status == "in-use" && force)) {
            return Err(CinderError::invalid(
                "volume",
                format!(
                    "Volume {id} status must be available or in-use with force, but current status is: {status}."
                ),
            ));
        }
        ((*v).clone(), status)
    };
    let mut img = json!({"name": name, "disk_format": disk_format,
        "container_format": container_format, "visibility": visibility, "protected": protected});
    if let Some(m) = vol.get("volume_image_metadata").and_then(Value::as_object) {
        for k in ["min_ram", "min_disk"] {
            if let Some(n) = m
                .get(k)
                .and_then(Value::as_str)
                .and_then(|x| x.parse::<i64>().ok())
            {
                img[k] = json!(n);
            }
        }
    }
    let image = svc
        .images
        .create(c.token(), img)
        .await
        .map_err(CinderError::from)?;
    let image_id = image["id"].as_str().unwrap_or_default().to_string();
    let r = svc
        .store
        .update(Kind::Volume, id, |v| {
            if s(v, "status") != prev {
                return Err(CinderError::invalid(
                    "volume",
                    "Volume changed status meanwhile.",
                ));
            }
            v.insert("status".into(), json!("uploading"));
            v.insert("previous_status".into(), json!(prev));
            Ok(())
        })
        .await;
    if let Err(e) = r {
        let _ = svc.images.delete(c.token(), &image_id).await;
        return Err(e);
    }
    flows::spawn(
        svc,
        flows::UPLOAD,
        json!({"id": id, "image_id": image_id, "disk_format": disk_format,
               "acting": c.acting(), "previous_status": prev}),
    );
    let st = svc.store.read();
    let vt = st
        .volume_type(s(&vol, "volume_type"))
        .map(|t| views::volume_type(c, t))
        .unwrap_or(Value::Null);
    Ok(accepted(json!({"os-volume_upload_image": {
        "id": id,
        "updated_at": now(),
        "status": "uploading",
        "display_description": vol.get("description").cloned().unwrap_or(Value::Null),
        "size": i(&vol, "size"),
        "volume_type": vt,
        "image_id": image_id,
        "container_format": container_format,
        "disk_format": disk_format,
        "image_name": name,
        "visibility": visibility,
        "protected": protected,
    }})))
}

async fn retype(svc: &Arc<VolumeService>, c: &Caller, id: &str, arg: &Value) -> CResult<Response> {
    c.require_writer("volume:retype")?;
    let new = arg
        .get("new_type")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("New volume type must be specified."))?
        .to_string();
    let policy = arg
        .get("migration_policy")
        .and_then(Value::as_str)
        .unwrap_or("never");
    if !matches!(policy, "never" | "on-demand") {
        return Err(CinderError::bad(format!(
            "Invalid migration_policy: {policy}"
        )));
    }
    let svc2 = svc.clone();
    svc.store
        .write(|tx| {
            let t = tx
                .st
                .volume_type(&new)
                .filter(|t| type_usable(t, c))
                .cloned()
                .ok_or_else(|| CinderError::not_found(format!("Volume type {new} could not be found.")))?;
            let mut v = tx
                .get(Kind::Volume, id)
                .ok_or_else(|| CinderError::volume_not_found(id))?;
            if !matches!(s(&v, "status"), "available" | "in-use") {
                return Err(CinderError::invalid(
                    "volume",
                    format!("Volume status must be available or in-use, but is {}.", s(&v, "status")),
                ));
            }
            if s(&v, "volume_type_id") == s(&t, "id") {
                return Err(CinderError::bad(
                    "Invalid input received: New volume type must be different from the original volume type.",
                ));
            }
            let multi = super::volumes::spec_is_true(&t, "multiattach");
            if multi != b(&v, "multiattach") && s(&v, "status") != "available" {
                return Err(CinderError::bad(
                    "Invalid input received: Retype requested both multiattach and non-multiattach volume types: retypes affecting multiattach are only allowed on available volumes.",
                ));
            }
            // One backend serves every type: a retype is a relabel, which
            // needs the quota of the new type.
            let size = i(&v, "size");
            let snaps = tx.st.snapshots_of(id).count() as i64;
            svc2.check_quota(&tx.st, s(&v, "project_id"), s(&t, "name"), 1, snaps, size)?;
            v.insert("volume_type".into(), json!(s(&t, "name")));
            v.insert("volume_type_id".into(), json!(s(&t, "id")));
            v.insert("multiattach".into(), json!(multi));
            v.insert("updated_at".into(), json!(now()));
            tx.put(Kind::Volume, v);
            Ok(())
        })
        .await?;
    Ok(accepted_empty())
}

async fn revert(
    svc: &Arc<VolumeService>,
    c: &Caller,
    mv: Mv,
    id: &str,
    arg: &Value,
) -> CResult<Response> {
    if !mv.at_least(40) {
        return Err(CinderError::not_found("There is no such action: revert"));
    }
    c.require_writer("volume:revert_to_snapshot")?;
    let snap = arg
        .get("snapshot_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CinderError::bad("Must specify snapshot_id"))?
        .to_string();
    svc.store
        .write(|tx| {
            let sn = tx
                .get(Kind::Snapshot, &snap)
                .filter(|x| c.owns(x))
                .ok_or_else(|| CinderError::snapshot_not_found(&snap))?;
            let mut v = tx
                .get(Kind::Volume, id)
                .ok_or_else(|| CinderError::volume_not_found(id))?;
            if s(&sn, "volume_id") != id {
                return Err(CinderError::bad(format!(
                    "Invalid input received: Snapshot {snap} is not a snapshot of volume {id}."
                )));
            }
            let latest = tx
                .st
                .snapshots_of(id)
                .max_by(|a, b| s(a, "created_at").cmp(s(b, "created_at")))
                .map(|x| s(x, "id").to_string());
            if latest.as_deref() != Some(snap.as_str()) {
                return Err(CinderError::bad(format!(
                    "Invalid snapshot: Volume {id} can only be reverted to its latest snapshot."
                )));
            }
            if s(&v, "status") != "available" || s(&sn, "status") != "available" {
                return Err(CinderError::conflict(format!(
                    "Invalid volume: Volume {id} and snapshot {snap} must be available to revert."
                )));
            }
            if i(&v, "size") != i(&sn, "size") {
                return Err(CinderError::bad(
                    "Invalid input received: Volume and snapshot sizes differ.",
                ));
            }
            v.insert("status".into(), json!("reverting"));
            tx.put(Kind::Volume, v);
            let mut sn = sn;
            sn.insert("status".into(), json!("restoring"));
            tx.put(Kind::Snapshot, sn);
            Ok(())
        })
        .await?;
    flows::spawn(svc, flows::REVERT, json!({"id": id, "snapshot_id": snap}));
    Ok(accepted_empty())
}
