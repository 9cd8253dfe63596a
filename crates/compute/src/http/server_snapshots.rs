//! `createImage` and `createBackup`: the image record, then the host streams the disk to the Image service; backups rotate.
use super::action_support::begin;
use super::request::{Caller, json_resp};
use super::servers::get_instance;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::ops;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferro_rpc::compute::ComputeRequest;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) async fn create_image(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    action: &str,
    arg: &Value,
) -> NResult<Response> {
    let name = arg
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let meta = match arg.get("metadata") {
        Some(m) => super::servers::check_metadata(m)?,
        None => BTreeMap::new(),
    };
    let mut backup: Option<(String, usize)> = None;
    if action == "createBackup" {
        c.require_member(svc, &c.project(), "os_compute_api:os-create-backup")?;
        let bt = arg.get("backup_type").and_then(Value::as_str);
        let rot = arg.get("rotation").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match (bt, rot) {
            (Some(b), Some(r)) if r >= 0 => backup = Some((b.to_string(), r as usize)),
            _ => {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute backup_type/rotation.",
                ));
            }
        }
    }
    let i0 = get_instance(svc, c, id)?;
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
    if c.mv.at_least(45) {
        return Ok(json_resp(
            StatusCode::ACCEPTED,
            json!({"image_id": image_id}),
        ));
    }
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("{}/images/{image_id}", svc.base_url)) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}
