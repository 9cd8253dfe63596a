//! Volumes on servers, the domain side: the attach and detach sagas
//! (reserve the volume, connect it for the host, plug it into the guest,
//! complete — each undone in reverse when a later step fails, so the
//! volume ends `available` with no dangling attachment), the volume block
//! device mappings of a build (boot from volume, extra volumes), and Block
//! Storage's `volume-extended` event. The API is in
//! `http/volume_attachments.rs`.
use crate::model::{Bdm, Instance};
use crate::workflow::{Ctx, inject};
use crate::{ComputeService, ops};
use ferro_auth::Acting;
use ferro_rpc::compute::{ComputeRequest, ConnectionInfo};
use ferro_saga::{Executor, SagaDef, Step, Typed, TypedStep};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

pub const ATTACH: &str = "volume_attach";

pub const DETACH: &str = "volume_detach";

/// The attach and detach sagas' progress, as the saga log keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VolumeSagaState {
    pub uuid: String,
    /// The guest's host; empty when nothing runs the guest (shelved
    /// offloaded, or the server is being deleted).
    #[serde(default)]
    pub host: String,
    pub volume: String,
    pub device: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub delete_on_termination: bool,
    #[serde(default)]
    pub deleting_server: bool,
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub attachment: Option<String>,
    /// How the host reaches the volume (Block Storage's answer to connect).
    #[serde(default)]
    pub connection_info: Option<ConnectionInfo>,
}

struct V(&'static str);

#[async_trait::async_trait]
impl TypedStep<Ctx, VolumeSagaState> for V {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn run(&self, ctx: &Ctx, state: &mut VolumeSagaState) -> Result<(), String> {
        let svc = ctx.svc()?;
        inject(&svc, self.0).await?;
        run_step(&svc, self.0, state).await
    }
    async fn undo(&self, ctx: &Ctx, state: &VolumeSagaState) -> Result<(), String> {
        undo_step(&ctx.svc()?, self.0, state).await
    }
}

pub fn register(ex: &mut Executor<Ctx>) {
    let steps = |names: &[&'static str]| -> Vec<Box<dyn Step<Ctx>>> {
        names
            .iter()
            .map(|n| Box::new(Typed::new(V(n))) as Box<dyn Step<Ctx>>)
            .collect()
    };
    ex.register(SagaDef {
        name: ATTACH,
        steps: steps(&[
            "attach_reserve",
            "attach_connect",
            "attach_plug",
            "attach_complete",
        ]),
    });
    ex.register(SagaDef {
        name: DETACH,
        steps: steps(&["detach_begin", "detach_unplug", "detach_release"]),
    });
}

fn attachment_of(state: &VolumeSagaState) -> &str {
    state.attachment.as_deref().unwrap_or_default()
}

fn plug(state: &VolumeSagaState, info: ConnectionInfo) -> ComputeRequest {
    ComputeRequest::AttachVolume {
        uuid: state.uuid.clone(),
        device: state.device.clone(),
        volume_id: state.volume.clone(),
        connection_info: info,
    }
}

fn unplug(state: &VolumeSagaState) -> ComputeRequest {
    ComputeRequest::DetachVolume {
        uuid: state.uuid.clone(),
        device: state.device.clone(),
    }
}

async fn run_step(
    svc: &Arc<ComputeService>,
    step: &str,
    state: &mut VolumeSagaState,
) -> Result<(), String> {
    let v = &svc.volumes;
    let rid = Some(state.request_id.clone()).filter(|r| !r.is_empty());
    let host = state.host.clone();
    let uuid = state.uuid.clone();
    let volume = state.volume.clone();
    let device = state.device.clone();
    match step {
        "attach_reserve" => {
            let att = v
                .reserve(&state.project, state.admin, &volume, &uuid)
                .await
                .map_err(|e| e.to_string())?;
            state.attachment = Some(att);
            Ok(())
        }
        "attach_connect" => {
            let info = v
                .connect(attachment_of(state), &host, &device)
                .await
                .map_err(|e| e.to_string())?;
            state.connection_info =
                Some(ConnectionInfo::from_json(&info).map_err(|e| e.to_string())?);
            Ok(())
        }
        "attach_plug" => {
            if host.is_empty() {
                return Ok(()); // shelved offloaded: nothing runs the guest
            }
            let info = state
                .connection_info
                .clone()
                .ok_or("the volume was not connected")?;
            ops::call_agent(svc, &host, plug(state, info), rid.as_deref())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "attach_complete" => {
            v.complete(attachment_of(state), &device, &host)
                .await
                .map_err(|e| e.to_string())?;
            let bdm = Bdm {
                source_type: "volume".into(),
                destination_type: "volume".into(),
                uuid: Some(volume.clone()),
                boot_index: None,
                volume_size: None,
                delete_on_termination: state.delete_on_termination,
                device_name: Some(device.clone()),
                tag: state.tag.clone(),
                volume_id: Some(volume.clone()),
                attachment_id: state.attachment.clone(),
                created_volume: false,
                bdm_uuid: Some(ferro_common::new_uuid()),
                connection_info: state.connection_info.clone(),
            };
            svc.state
                .update_instance(&uuid, move |i| {
                    i.bdms
                        .retain(|b| b.volume_id.as_deref() != bdm.volume_id.as_deref());
                    i.bdms.push(bdm);
                    Ok(())
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "detach_begin" => v.begin_detaching(&volume).await.map_err(|e| e.to_string()),
        "detach_unplug" => {
            if host.is_empty() {
                return Ok(());
            }
            ops::call_agent(svc, &host, unplug(state), rid.as_deref())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "detach_release" => {
            v.release(attachment_of(state))
                .await
                .map_err(|e| e.to_string())?;
            let vol = volume.clone();
            let r = svc
                .state
                .update_instance(&uuid, move |i| {
                    i.bdms
                        .retain(|b| b.volume_id.as_deref() != Some(vol.as_str()));
                    Ok(())
                })
                .await;
            if state.delete_on_termination && state.deleting_server {
                v.delete(&volume).await.map_err(|e| e.to_string())?;
            }
            match r {
                Ok(_) => Ok(()),
                Err(e) if e.status() == 404 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
        other => Err(format!("unknown step {other}")),
    }
}

async fn undo_step(
    svc: &Arc<ComputeService>,
    step: &str,
    state: &VolumeSagaState,
) -> Result<(), String> {
    let v = &svc.volumes;
    let host = state.host.as_str();
    match step {
        "attach_reserve" => v
            .release(attachment_of(state))
            .await
            .map_err(|e| e.to_string()),
        "attach_plug" if !host.is_empty() => ops::call_agent(svc, host, unplug(state), None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "detach_begin" => v
            .roll_detaching(&state.volume)
            .await
            .map_err(|e| e.to_string()),
        // Plugs the volume back in with the connection it had.
        "detach_unplug" if !host.is_empty() => match state.connection_info.clone() {
            Some(info) => ops::call_agent(svc, host, plug(state, info), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "volume {} cannot be plugged back: its connection is not recorded",
                state.volume
            )),
        },
        _ => Ok(()),
    }
}

async fn run(svc: &Arc<ComputeService>, name: &str, state: VolumeSagaState) -> Result<(), String> {
    let ex = svc.exec().map_err(|e| e.to_string())?;
    let id = format!("{name}:{}:{}", state.volume, ferro_common::new_request_id());
    ex.run_typed(name, &id, &state)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            ferro_saga::SagaError::StepFailed { message, .. } => message,
            other => other.to_string(),
        })
}

/// The next free `/dev/vdX` of the instance (`vda` is the root disk).
pub(crate) fn next_device(i: &Instance) -> String {
    let used: Vec<&str> = i
        .bdms
        .iter()
        .filter_map(|b| b.device_name.as_deref())
        .collect();
    for c in 'b'..='z' {
        let d = format!("/dev/vd{c}");
        if !used.contains(&d.as_str()) {
            return d;
        }
    }
    "/dev/vdz".into()
}

pub(crate) fn volume_bdms(i: &Instance) -> impl Iterator<Item = &Bdm> {
    i.bdms.iter().filter(|b| b.destination_type == "volume")
}

/// Nova's `is_volume_backed_instance`: no image of its own, its root disk
/// a volume.
pub(crate) fn is_volume_backed(i: &Instance) -> bool {
    i.image_ref.is_empty() && volume_bdms(i).any(|b| b.boot_index == Some(0))
}

/// Runs the detach saga for one volume mapping.
pub async fn detach_one(
    svc: &Arc<ComputeService>,
    i: &Instance,
    b: &Bdm,
    request_id: &str,
    deleting_server: bool,
) -> Result<(), String> {
    let state = VolumeSagaState {
        uuid: i.uuid.clone(),
        host: if deleting_server {
            String::new()
        } else {
            i.host.clone().unwrap_or_default()
        },
        volume: b.volume_id.clone().unwrap_or_default(),
        device: b.device_name.clone().unwrap_or_default(),
        attachment: b.attachment_id.clone(),
        delete_on_termination: b.delete_on_termination,
        deleting_server,
        request_id: request_id.to_string(),
        connection_info: b.connection_info.clone(),
        ..Default::default()
    };
    run(svc, DETACH, state).await
}

/// Server delete: every volume is released, and deleted when its mapping says so.
pub async fn release_all(
    svc: &Arc<ComputeService>,
    uuid: &str,
    request_id: &str,
) -> Result<(), String> {
    let Some(i) = svc.state.read().instances.get(uuid).cloned() else {
        return Ok(());
    };
    for b in volume_bdms(&i).filter(|b| b.volume_id.is_some()) {
        detach_one(svc, &i, b, request_id, true).await?;
    }
    Ok(())
}

/// The build's volume mappings: volumes made from images, snapshots or
/// nothing are created (as the user, through Block Storage's API), every
/// volume is reserved, connected for the host and marked in use, and the
/// mapping records its volume and attachment. A failure undoes what this
/// step did before returning.
pub async fn prepare_block_devices(
    svc: &Arc<ComputeService>,
    uuid: &str,
    host: &str,
    acting: Option<&Acting>,
) -> Result<(), String> {
    let Some(inst) = svc.state.read().instances.get(uuid).cloned() else {
        return Err("instance vanished".into());
    };
    if !inst.bdms.iter().any(|b| b.destination_type == "volume") {
        return Ok(());
    }
    let mut bdms = inst.bdms.clone();
    let r = async {
        for n in 0..bdms.len() {
            if bdms[n].destination_type != "volume" || bdms[n].attachment_id.is_some() {
                continue;
            }
            let b = bdms[n].clone();
            let vol = match (b.source_type.as_str(), b.volume_id.clone()) {
                (_, Some(v)) => v,
                ("volume", None) => b.uuid.clone().unwrap_or_default(),
                (src, None) => {
                    let mut body = json!({"size": b.volume_size,
                        "name": format!("{}-blockdevice-{n}", inst.name)});
                    match src {
                        "image" => body["imageRef"] = json!(b.uuid),
                        "snapshot" => body["snapshot_id"] = json!(b.uuid),
                        _ => {}
                    }
                    // A token for the user, made now and never stored.
                    let who = acting.ok_or("the build does not say whom it acts for")?;
                    let token = svc
                        .validator
                        .token_for(who)
                        .await
                        .map_err(|e| e.to_string())?;
                    let id = svc
                        .volumes
                        .create(&token, body)
                        .await
                        .map_err(|e| format!("creating the volume of block device {n}: {e}"))?;
                    bdms[n].created_volume = true;
                    id
                }
            };
            bdms[n].volume_id = Some(vol.clone());
            let device = match (&b.device_name, b.boot_index) {
                (Some(d), _) => d.clone(),
                (None, Some(0)) => "/dev/vda".to_string(),
                (None, _) => {
                    let probe = Instance {
                        bdms: bdms.clone(),
                        ..inst.clone()
                    };
                    next_device(&probe)
                }
            };
            let device = if device.starts_with("/dev/") {
                device
            } else {
                format!("/dev/{device}")
            };
            bdms[n].device_name = Some(device.clone());
            let att = svc
                .volumes
                .reserve(&inst.project_id, true, &vol, uuid)
                .await
                .map_err(|e| format!("reserving volume {vol}: {e}"))?;
            bdms[n].attachment_id = Some(att.clone());
            let info = svc
                .volumes
                .connect(&att, host, &device)
                .await
                .map_err(|e| format!("connecting volume {vol}: {e}"))?;
            bdms[n].connection_info =
                Some(ConnectionInfo::from_json(&info).map_err(|e| e.to_string())?);
            svc.volumes
                .complete(&att, &device, host)
                .await
                .map_err(|e| format!("attaching volume {vol}: {e}"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    let saved = bdms.clone();
    let w = svc
        .state
        .update_instance(uuid, move |i| {
            i.bdms = saved;
            Ok(())
        })
        .await;
    if let Err(e) = r {
        let _ = unprepare_block_devices(svc, uuid).await;
        return Err(e);
    }
    w.map(|_| ()).map_err(|e| e.to_string())
}

/// Nova's `_rebuild_volume_backed_instance` (2.93): the root volume is
/// re-imaged in Block Storage while the server holds it reserved, then
/// connected again for `host`. The guest must be gone from the host.
pub async fn reimage_root_volume(
    svc: &Arc<ComputeService>,
    uuid: &str,
    host: &str,
    image: &str,
    acting: &Acting,
) -> Result<(), String> {
    let inst = svc
        .state
        .read()
        .instances
        .get(uuid)
        .cloned()
        .ok_or("instance vanished")?;
    let n = inst
        .bdms
        .iter()
        .position(|b| b.destination_type == "volume" && b.boot_index == Some(0))
        .ok_or("the server has no root volume")?;
    let root = inst.bdms[n].clone();
    let vol = root
        .volume_id
        .clone()
        .or(root.uuid.clone())
        .ok_or("the root mapping names no volume")?;
    let device = root
        .device_name
        .clone()
        .unwrap_or_else(|| "/dev/vda".into());
    // The old attachment goes and a new one holds the volume reserved
    // (Block Storage re-images only a volume nobody has connected).
    if let Some(old) = &root.attachment_id {
        svc.volumes.release(old).await.map_err(|e| e.to_string())?;
    }
    let att = svc
        .volumes
        .reserve(&inst.project_id, true, &vol, uuid)
        .await
        .map_err(|e| format!("reserving volume {vol}: {e}"))?;
    let record = |att: Option<String>, info: Option<ConnectionInfo>| {
        let vol = vol.clone();
        async move {
            svc.state
                .update_instance(uuid, move |i| {
                    for b in i.bdms.iter_mut() {
                        if b.volume_id.as_deref() == Some(vol.as_str()) {
                            b.attachment_id = att.clone();
                            b.connection_info = info.clone();
                        }
                    }
                    Ok(())
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    record(Some(att.clone()), None).await?;
    let token = svc
        .validator
        .token_for(acting)
        .await
        .map_err(|e| e.to_string())?;
    svc.volumes
        .reimage(&token, &vol, image)
        .await
        .map_err(|e| format!("re-imaging volume {vol}: {e}"))?;
    // Nova waits for Block Storage's `volume-reimaged` event; here the
    // volume's status says the same thing (it leaves `downloading`).
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(svc.cfg.compute.long_rpc_timeout.max(60));
    loop {
        let status = svc
            .volumes
            .get(&inst.project_id, true, &vol)
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_default();
        match status.as_str() {
            "downloading" if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            "reserved" => break,
            other => return Err(format!("re-imaging volume {vol} ended {other}")),
        }
    }
    let info = svc
        .volumes
        .connect(&att, host, &device)
        .await
        .map_err(|e| format!("connecting volume {vol}: {e}"))?;
    let info = ConnectionInfo::from_json(&info).map_err(|e| e.to_string())?;
    svc.volumes
        .complete(&att, &device, host)
        .await
        .map_err(|e| format!("attaching volume {vol}: {e}"))?;
    record(Some(att), Some(info)).await
}

/// Undoes `prepare_block_devices`: attachments released, volumes compute
/// created deleted, the mappings back to what the request said.
pub async fn unprepare_block_devices(svc: &Arc<ComputeService>, uuid: &str) -> Result<(), String> {
    let Some(inst) = svc.state.read().instances.get(uuid).cloned() else {
        return Ok(());
    };
    let mut bdms = inst.bdms.clone();
    for b in bdms.iter_mut().filter(|b| b.destination_type == "volume") {
        if let Some(att) = b.attachment_id.take() {
            svc.volumes.release(&att).await.map_err(|e| e.to_string())?;
        }
        if b.created_volume
            && let Some(v) = b.volume_id.take()
        {
            svc.volumes.delete(&v).await.map_err(|e| e.to_string())?;
            b.created_volume = false;
        }
        if b.source_type == "volume" {
            b.volume_id = None;
        }
    }
    svc.state
        .update_instance(uuid, move |i| {
            i.bdms = bdms;
            Ok(())
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Block Storage's `volume-extended` event: the volume attached to
/// `server` grew, so the guest is told (`extend_volume` instance action,
/// `compute_extend_volume` event). Answers the event's code: 200, 404
/// (no such server) or 422 (not running anywhere).
/// Nova's `get_server_volume` for Block Storage: the attachment id by which
/// the (live) server holds the volume, None when it does not.
pub fn server_volume_attachment(
    svc: &ComputeService,
    server: &str,
    volume_id: &str,
) -> Option<String> {
    let st = svc.state.read();
    let i = st.instances.get(server).filter(|i| !i.deleted)?;
    volume_bdms(i)
        .find(|b| b.volume_id.as_deref() == Some(volume_id))
        .map(|b| b.attachment_id.clone().unwrap_or_default())
}

/// Block Storage's snapshot of a file volume attached to `server`: the
/// host's hypervisor copies it into `new_file` at a point in time (Nova's
/// assisted volume snapshot, as Cinder's file drivers ask for it); waits
/// for the copy. Errors say why, for the snapshot's `error` status.
pub async fn snapshot_attached(
    svc: &Arc<ComputeService>,
    server: &str,
    volume_id: &str,
    snapshot_id: &str,
    new_file: &std::path::Path,
    format: &str,
) -> Result<(), String> {
    let host = {
        let st = svc.state.read();
        let i = st
            .instances
            .get(server)
            .filter(|i| !i.deleted)
            .ok_or_else(|| format!("instance {server} not found"))?;
        i.host
            .clone()
            .ok_or_else(|| format!("instance {server} is not on a host"))?
    };
    let req = ferro_rpc::compute::ComputeRequest::VolumeSnapshotCreate {
        uuid: server.to_string(),
        volume_id: volume_id.to_string(),
        create_info: ferro_rpc::compute::AssistedSnapshot {
            snapshot_id: snapshot_id.to_string(),
            format: Some(format.to_string()),
            new_file: Some(new_file.to_string_lossy().into_owned()),
        },
    };
    ops::call_agent(svc, &host, req, None)
        .await
        .map(|_| ())
        .map_err(|e| format!("snapshot of volume {volume_id} on {host}: {e}"))
}

pub async fn volume_extended(
    svc: &Arc<ComputeService>,
    server: &str,
    volume_id: &str,
    request_id: &str,
) -> u16 {
    let found = {
        let st = svc.state.read();
        st.instances.get(server).filter(|i| !i.deleted).cloned()
    };
    let Some(i) = found else {
        return 404;
    };
    let Some(host) = i.host.clone() else {
        return 422;
    };
    // Not (or no longer) attached here: the event still lands, and the
    // action records the error, as Nova's compute manager does.
    let device = volume_bdms(&i)
        .find(|b| b.volume_id.as_deref() == Some(volume_id))
        .and_then(|b| b.device_name.clone());
    let rid = request_id.to_string();
    let i2 = i.clone();
    let recorded = svc
        .state
        .write(|st| {
            let a = ops::new_action(
                st,
                &[],
                &i2,
                "extend_volume",
                &rid,
                &i2.user_id,
                &i2.project_id,
            );
            Ok(((), vec![crate::state::Rec::Action(a)]))
        })
        .await;
    if let Err(e) = recorded {
        tracing::warn!(server, "recording extend_volume: {}", e.log_message());
        return 500;
    }
    // The new size, as Nova's `requested_size`: from Block Storage's record.
    let size = svc
        .volumes
        .get(&i.project_id, true, volume_id)
        .and_then(|v| v["size"].as_u64())
        .map(|gib| gib << 30);
    let svc = svc.clone();
    let (uuid, volume) = (i.uuid.clone(), volume_id.to_string());
    tokio::spawn(async move {
        const EV: &str = "compute_extend_volume";
        ops::event(&svc, &uuid, &rid, EV, Some(&host), None).await;
        let r = match device {
            Some(device) => ops::call_agent(
                &svc,
                &host,
                ComputeRequest::ExtendVolume {
                    uuid: uuid.clone(),
                    device,
                    size,
                },
                Some(&rid),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
            None => Err(format!("volume {volume} is not attached to server {uuid}")),
        };
        if let Err(e) = &r {
            tracing::warn!(server = %uuid, volume = %volume, "extending the volume in the guest: {e}");
        }
        ops::event(&svc, &uuid, &rid, EV, Some(&host), Some(r)).await;
    });
    200
}

/// Runs the attach saga (reserve, connect, plug, complete).
pub async fn attach(svc: &Arc<ComputeService>, state: VolumeSagaState) -> Result<(), String> {
    run(svc, ATTACH, state).await
}
