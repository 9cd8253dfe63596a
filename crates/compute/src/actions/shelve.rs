//! `shelve`, `shelveOffload` and `unshelve`: a snapshot to the Image service, the guest destroyed, then booted again where the scheduler says.
use super::Outcome;
use super::guard::begin;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::model::Instance;
use crate::ops;
use ferro_rpc::compute::ComputeRequest;
use serde_json::json;
use std::sync::Arc;

pub(super) async fn shelve(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "shelve",
        "shelve",
        &["active", "stopped", "paused", "suspended"],
        Some("shelving"),
        true,
    )
    .await?;
    start_shelve(svc, c, i);
    Ok(Outcome::Accepted)
}

pub(super) async fn shelve_offload(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "shelve_offload",
        "shelveOffload",
        &["shelved"],
        Some("shelving_offloading"),
        true,
    )
    .await?;
    let (svc2, rid) = (svc.clone(), c.request_id.clone());
    tokio::spawn(async move {
        offload(&svc2, &i.uuid, &rid).await;
    });
    Ok(Outcome::Accepted)
}

pub(super) async fn unshelve(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    az: Option<Option<String>>,
    host: Option<String>,
) -> NResult<Outcome> {
    let current = crate::servers::get_instance(svc, c, id)?;
    // Nova's order: the lock and state (begin's errors), then what the
    // zone and host ask for.
    let settled = matches!(current.vm_state.as_str(), "shelved" | "shelved_offloaded")
        && current.task_state.is_none()
        && !current.locked;
    if settled {
        check_unshelve_target(svc, c, &current, az.as_ref(), host.as_deref())?;
    }
    let i = begin(
        svc,
        c,
        id,
        "unshelve",
        "unshelve",
        &["shelved", "shelved_offloaded"],
        Some("unshelving"),
        true,
    )
    .await?;
    let (svc2, rid, tok) = (svc.clone(), c.request_id.clone(), c.token().to_string());
    tokio::spawn(async move {
        run_unshelve(&svc2, i, &rid, az, host, &tok).await;
    });
    Ok(Outcome::Accepted)
}

/// Nova's `unshelve` checks of a new zone or host: only an offloaded
/// server moves (409), the zone must exist (400), the host must be a
/// compute host (400, admins only) in the zone the server will be in (409).
fn check_unshelve_target(
    svc: &Arc<ComputeService>,
    c: &Caller,
    i: &Instance,
    az: Option<&Option<String>>,
    host: Option<&str>,
) -> NResult<()> {
    if (az.is_some() || host.is_some()) && i.vm_state != "shelved_offloaded" {
        return Err(NovaError::conflict(format!(
            "Specifying an availability zone or a host when unshelving server \"{}\" with status \"{}\" is not supported. The server status must be SHELVED_OFFLOADED.",
            i.uuid, i.vm_state
        )));
    }
    let st = svc.state.read();
    if let Some(Some(zone)) = az {
        let available = st.services.values().any(|s| {
            s.binary == "nova-compute" && !s.disabled && &ops::host_az(svc, &st, &s.host) == zone
        });
        if !available {
            return Err(NovaError::bad(
                "The requested availability zone is not available",
            ));
        }
    }
    if let Some(h) = host {
        c.require_admin(svc, "os_compute_api:os-shelve:unshelve_to_host")?;
        if !st
            .services
            .values()
            .any(|s| s.binary == "nova-compute" && s.host == h)
        {
            return Err(NovaError::bad(format!(
                "Compute host {h} could not be found."
            )));
        }
        let expected = match az {
            Some(z) => z.clone(),
            None => crate::servers::pinned_az(i),
        };
        if let Some(zone) = expected
            && ops::host_az(svc, &st, h) != zone
        {
            return Err(NovaError::conflict(format!(
                "Host \"{h}\" is not in the availability zone \"{zone}\"."
            )));
        }
    }
    Ok(())
}

fn start_shelve(svc: &Arc<ComputeService>, c: &Caller, i: Instance) {
    let (svc2, rid, tok) = (svc.clone(), c.request_id.clone(), c.token().to_string());
    let acting = c.acting();
    tokio::spawn(async move {
        let host = i.host.clone().unwrap_or_default();
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_shelve_instance",
            Some(&host),
            None,
        )
        .await;
        let r = async {
            if crate::volumes::is_volume_backed(&i) {
                // Nova shelves a volume-backed server by offloading it at
                // once: its disk is the volume, there is nothing to snapshot.
                ops::call_agent(&svc2, &host, ComputeRequest::PowerOff { uuid: i.uuid.to_string() }, Some(&rid)).await?;
                return Ok::<Option<String>, String>(None);
            }
            let base = if i.image_ref.is_empty() { None } else { svc2.image.get(&tok, &i.image_ref).await.ok().flatten() };
            let body = json!({
                "name": format!("{}-shelved", i.name),
                "instance_uuid": i.uuid, "image_type": "snapshot", "visibility": "private",
                "disk_format": base.as_ref().map(|b| b["disk_format"].clone()).unwrap_or(json!("qcow2")),
                "container_format": base.as_ref().map(|b| b["container_format"].clone()).unwrap_or(json!("bare")),
            });
            let img = svc2.image.create(&tok, body).await.map_err(|e| e.to_string())?;
            let iid = img["id"].as_str().unwrap_or_default().to_string();
            let dest = ops::image_destination(&svc2, &iid, &acting).await?;
            ops::call_agent(&svc2, &host, ComputeRequest::Snapshot { uuid: i.uuid.clone(), dest }, Some(&rid)).await?;
            ops::call_agent(&svc2, &host, ComputeRequest::PowerOff { uuid: i.uuid.to_string() }, Some(&rid)).await?;
            Ok(Some(iid))
        }.await;
        let res = r.as_ref().map(|_| ()).map_err(Clone::clone);
        match r {
            Ok(iid) => {
                let _ = svc2
                    .state
                    .update_instance(&i.uuid, move |x| {
                        x.vm_state = "shelved".into();
                        x.power_state = 4;
                        x.shelved_image = iid;
                        x.task_state = Some("shelving_offloading".into());
                        Ok(())
                    })
                    .await;
                ops::event(
                    &svc2,
                    &i.uuid,
                    &rid,
                    "compute_shelve_instance",
                    Some(&host),
                    Some(res),
                )
                .await;
                // shelved_offload_time = 0: offload at once, as Nova's default.
                offload(&svc2, &i.uuid, &rid).await;
            }
            Err(e) => {
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
                    "compute_shelve_instance",
                    Some(&host),
                    Some(Err(e)),
                )
                .await;
            }
        }
    });
}

async fn offload(svc: &Arc<ComputeService>, uuid: &str, rid: &str) {
    let host = svc
        .state
        .read()
        .instances
        .get(uuid)
        .and_then(|i| i.host.clone())
        .unwrap_or_default();
    ops::event(
        svc,
        uuid,
        rid,
        "compute_shelve_offload_instance",
        Some(&host),
        None,
    )
    .await;
    let _ = ops::call_agent(
        svc,
        &host,
        ComputeRequest::Destroy {
            uuid: uuid.to_string(),
        },
        Some(rid),
    )
    .await;
    let r = svc
        .placement
        .delete_allocations(uuid)
        .await
        .map_err(|e| e.to_string());
    let _ = svc
        .state
        .update_instance(uuid, |x| {
            x.vm_state = "shelved_offloaded".into();
            x.task_state = None;
            x.power_state = 4;
            x.host = None;
            x.node = None;
            Ok(())
        })
        .await;
    ops::event(
        svc,
        uuid,
        rid,
        "compute_shelve_offload_instance",
        Some(&host),
        Some(r),
    )
    .await;
}

async fn run_unshelve(
    svc: &Arc<ComputeService>,
    i: Instance,
    rid: &str,
    az: Option<Option<String>>,
    host: Option<String>,
    token: &str,
) {
    let uuid = i.uuid.clone();
    if i.vm_state == "shelved" {
        offload(svc, &uuid, rid).await;
        let _ = svc
            .state
            .update_instance(&uuid, |x| {
                x.task_state = Some("unshelving".into());
                Ok(())
            })
            .await;
    }
    if let Some(a) = az {
        // A zone pins the server there; null (2.91) unpins it.
        let _ = svc
            .state
            .update_instance(&uuid, move |x| {
                x.requested_az = a;
                Ok(())
            })
            .await;
    }
    ops::event(svc, &uuid, rid, "compute_unshelve_instance", None, None).await;
    let mut state = crate::build::BuildState {
        uuid: uuid.clone(),
        request_id: rid.to_string(),
        destination: host,
        ..Default::default()
    };
    let r = async {
        crate::build::claim_for(svc, &mut state).await?;
        let host = state.host.clone().unwrap_or_default();
        let (mut spec, owner) = {
            let st = svc.state.read();
            let i = st.instances.get(&uuid).ok_or("instance vanished")?;
            (ops::guest_spec(svc, i), ops::owner(i))
        };
        // The guest comes back from its shelve snapshot, not from the
        // image it was first built from (what it wrote since is there).
        if let Some(img) = &i.shelved_image {
            spec.image_id = Some(img.clone());
        }
        if let Err(e) = ops::call_agent(
            svc,
            &host,
            ops::spawn_request(svc, spec, &owner).await,
            Some(rid),
        )
        .await
        {
            let _ = svc.placement.delete_allocations(&uuid).await;
            return Err(e.to_string());
        }
        Ok::<(), String>(())
    }
    .await;
    let ok = r.is_ok();
    let shelved = i.shelved_image.clone();
    let _ = svc
        .state
        .update_instance(&uuid, move |x| {
            x.task_state = None;
            if ok {
                x.vm_state = "active".into();
                x.power_state = 1;
                x.shelved_image = None;
            } else {
                x.vm_state = "shelved_offloaded".into();
                x.host = None;
                x.node = None;
            }
            Ok(())
        })
        .await;
    if ok && let Some(img) = shelved {
        // The shelve snapshot has served its purpose (Nova deletes it too).
        if let Err(e) = svc.image.delete(token, &img).await {
            tracing::warn!(instance = %uuid, image = %img, "shelve snapshot not deleted: {}", e.log_message());
        }
    }
    ops::event(svc, &uuid, rid, "compute_unshelve_instance", None, Some(r)).await;
}
