//! `createImage` and `createBackup`: the image record, then the host streams the disk to the Image service; backups rotate.
use super::Outcome;
use super::guard::begin;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::ops;
use crate::servers::get_instance;
use ferro_rpc::compute::ComputeRequest;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `createImage`, or `createBackup` when `backup` is set.
#[derive(Clone, Debug, Default)]
pub struct NewImage {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub backup: Option<Backup>,
}

/// A backup's type and how many of that type to keep.
#[derive(Clone, Debug)]
pub struct Backup {
    pub backup_type: String,
    pub rotation: usize,
}

pub(super) async fn create_image(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    req: NewImage,
) -> NResult<Outcome> {
    let NewImage {
        name,
        metadata: meta,
        backup,
    } = req;
    let action = if backup.is_some() {
        c.require_member(svc, &c.project(), "os_compute_api:os-create-backup")?;
        "createBackup"
    } else {
        "createImage"
    };
    let backup = backup.map(|b| (b.backup_type, b.rotation));
    let i0 = get_instance(svc, c, id)?;
    if crate::volumes::is_volume_backed(&i0) {
        if backup.is_some() {
            return Err(NovaError::bad(
                "Backup is not supported for volume-backed instances.",
            ));
        }
        return volume_backed(svc, c, id, name, meta).await;
    }
    let base = if i0.image_ref.is_empty() {
        None
    } else {
        svc.image.get(c.token(), &i0.image_ref).await?
    };
    let i = begin(
        svc,
        c,
        id,
        "createImage",
        action,
        &["active", "stopped", "paused", "suspended"],
        Some("image_snapshot"),
        false,
    )
    .await?;
    let mut props = json!({
        "name": name,
        "instance_uuid": i.uuid,
        "image_type": if action == "createBackup" { "backup" } else { "snapshot" },
        "user_id": i.user_id,
        "owner_specified.openstack.object": "images/snapshot",
        "visibility": "private",
    });
    if let Some(b) = &base {
        props["disk_format"] = b["disk_format"].clone();
        props["container_format"] = b["container_format"].clone();
        props["base_image_ref"] = json!(i.image_ref);
        props["min_disk"] = json!(i.flavor.disk.max(b["min_disk"].as_u64().unwrap_or(0)));
        props["min_ram"] = b["min_ram"].clone();
    } else {
        props["disk_format"] = json!("qcow2");
        props["container_format"] = json!("bare");
    }
    for (k, v) in &meta {
        props[k] = json!(v);
    }
    if let Some((bt, _)) = &backup {
        props["backup_type"] = json!(bt);
    }
    let created = match svc.image.create(c.token(), props).await {
        Ok(v) => v,
        Err(e) => {
            let _ = svc
                .state
                .update_instance(id, |i| {
                    i.task_state = None;
                    Ok(())
                })
                .await;
            return Err(e.into());
        }
    };
    let image_id = created["id"].as_str().unwrap_or_default().to_string();
    let (svc2, tok, rid, iid) = (
        svc.clone(),
        c.token().to_string(),
        c.request_id.clone(),
        image_id.clone(),
    );
    let acting = c.acting();
    tokio::spawn(async move {
        let host = i.host.clone().unwrap_or_default();
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_snapshot_instance",
            Some(&host),
            None,
        )
        .await;
        let _ = svc2
            .state
            .update_instance(&i.uuid, |x| {
                if x.task_state.is_some() {
                    x.task_state = Some("image_uploading".into());
                }
                Ok(())
            })
            .await;
        let r = async {
            // The host streams the disk to the Image service itself.
            let dest = ops::image_destination(&svc2, &iid, &acting).await?;
            ops::call_agent(
                &svc2,
                &host,
                ComputeRequest::Snapshot {
                    uuid: i.uuid.clone(),
                    dest,
                },
                Some(&rid),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = &r {
            tracing::warn!(instance = %i.uuid, "snapshot failed: {e}");
            let _ = svc2.image.delete(&tok, &iid).await;
        } else if let Some((bt, rotation)) = &backup {
            // Keep the newest `rotation` backups of this type (Nova's rotate).
            let q = format!(
                "instance_uuid={}&image_type=backup&backup_type={bt}",
                i.uuid
            );
            if let Ok(mut list) = svc2.image.list(&tok, &q).await {
                list.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
                for old in list.iter().skip(*rotation) {
                    if let Some(oid) = old["id"].as_str() {
                        let _ = svc2.image.delete(&tok, oid).await;
                    }
                }
            }
        }
        let _ = svc2
            .state
            .update_instance(&i.uuid, |x| {
                x.task_state = None;
                Ok(())
            })
            .await;
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_snapshot_instance",
            Some(&host),
            Some(r),
        )
        .await;
    });
    Ok(Outcome::Image(image_id))
}

/// Nova's `snapshot_volume_backed`: a snapshot of each of the server's
/// volumes (forced: they are in use; the host copies a file volume at a
/// point in time), and an image that holds no data, only the block device
/// mapping that boots a new server from those snapshots (size 0, active).
async fn volume_backed(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    name: String,
    meta: BTreeMap<String, String>,
) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "createImage",
        "createImage",
        &["active", "stopped", "paused", "suspended"],
        None,
        false,
    )
    .await?;
    let cinder = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let svc = svc.clone();
        let tok = c.token().to_string();
        async move {
            svc.volumes
                .cinder(&tok, method, &path, body)
                .await
                .ok_or_else(|| NovaError::bad("Block Storage is not available."))
        }
    };
    let mut mapping = Vec::new();
    let mut bdms: Vec<_> = crate::volumes::volume_bdms(&i).cloned().collect();
    bdms.sort_by_key(|b| b.boot_index.unwrap_or(i64::MAX));
    for b in &bdms {
        let Some(vol) = b.volume_id.clone() else {
            continue;
        };
        let size = match b.volume_size {
            Some(n) => n,
            None => {
                let (st, v) = cinder("GET", format!("/v3/volumes/{vol}"), None).await?;
                if st != 200 {
                    return Err(NovaError::bad(format!("Volume {vol} could not be found.")));
                }
                v["volume"]["size"].as_u64().unwrap_or(1)
            }
        };
        let body = json!({"snapshot": {"volume_id": vol, "force": true,
            "name": format!("snapshot for {name}"), "description": ""}});
        let (st, v) = cinder("POST", "/v3/snapshots".into(), Some(body)).await?;
        if st != 202 {
            let why = v
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|e| e["message"].as_str())
                .unwrap_or("the volume snapshot was refused")
                .to_string();
            return Err(NovaError::bad(why));
        }
        mapping.push(json!({
            "source_type": "snapshot",
            "destination_type": "volume",
            "snapshot_id": v["snapshot"]["id"],
            "boot_index": b.boot_index,
            "delete_on_termination": b.delete_on_termination,
            "volume_size": size,
            "device_name": b.device_name,
            "disk_bus": null,
            "device_type": null,
            "guest_format": null,
            "no_device": null,
            "image_id": null,
            "volume_id": null,
            "tag": null,
        }));
    }
    let mut props = json!({
        "name": name,
        "visibility": "private",
        // What Nova's Glance client sets for an image it activates empty.
        "disk_format": "qcow2",
        "container_format": "bare",
        "root_device_name": "/dev/vda",
        "block_device_mapping": serde_json::to_string(&mapping).unwrap_or_default(),
        "bdm_v2": "True",
    });
    // The properties the server booted with that describe its hardware.
    for (k, v) in i
        .image_properties
        .iter()
        .filter(|(k, _)| k.starts_with("hw_"))
    {
        props[k] = json!(v);
    }
    for (k, v) in &meta {
        props[k] = json!(v);
    }
    let created = svc.image.create(c.token(), props).await?;
    let image_id = created["id"].as_str().unwrap_or_default().to_string();
    // No data: an empty upload makes it active, as Nova's Glance client does.
    svc.image.upload(c.token(), &image_id, Vec::new()).await?;
    Ok(Outcome::Image(image_id))
}
