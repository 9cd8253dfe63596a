//! `resize`, `migrate`, `confirmResize` and `revertResize`: claims on the destination, the migration record, and the flavor swap.
use super::Outcome;
use super::guard::begin;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::model::{Instance, Migration};
use crate::ops;
use crate::placement::AllocMap;
use crate::servers::get_instance;
use crate::state::{Rec, now};
use ferro_rpc::compute::ComputeRequest;
use std::collections::BTreeMap;
use std::sync::Arc;

fn flavor_allocs(node: &str, f: &crate::model::Flavor, image_backed: bool) -> AllocMap {
    let mut r = BTreeMap::new();
    r.insert("VCPU".to_string(), u64::from(f.vcpus));
    r.insert("MEMORY_MB".to_string(), f.ram);
    let disk = if image_backed { f.disk } else { 0 } + f.ephemeral + f.swap.div_ceil(1024);
    if disk > 0 {
        r.insert("DISK_GB".to_string(), disk);
    }
    r.retain(|_, v| *v > 0);
    BTreeMap::from([(node.to_string(), r)])
}

/// `resize`: to another flavor (on any host the scheduler picks, this one
/// included), with the disk config it asks for.
pub(super) async fn resize_to(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    flavor_id: String,
    disk_config: Option<String>,
) -> NResult<Outcome> {
    let r = resize(svc, c, id, Some(flavor_id), None, "resize").await?;
    if disk_config.is_some() {
        svc.state
            .update_instance(id, |i| {
                i.disk_config = disk_config;
                Ok(())
            })
            .await?;
    }
    Ok(r)
}

/// `migrate`: the same flavor on another host (an admin's; the host named
/// or the scheduler's choice).
pub(super) async fn migrate(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    host: Option<String>,
) -> NResult<Outcome> {
    c.require_admin(svc, "os_compute_api:os-migrate-server:migrate")?;
    resize(svc, c, id, None, host, "migrate").await
}

/// Resize (new flavor) or cold migrate (same flavor, another host).
async fn resize(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    flavor_ref: Option<String>,
    target: Option<String>,
    kind: &str,
) -> NResult<Outcome> {
    let i0 = get_instance(svc, c, id)?;
    let new_flavor = match &flavor_ref {
        Some(f) => {
            let st = svc.state.read();
            let nf = st
                .flavors
                .get(f)
                .cloned()
                .filter(|x| x.is_public || x.access.contains(&c.project()) || c.is_admin(svc))
                .ok_or_else(|| NovaError::bad("Invalid flavorRef provided.".to_string()))?;
            if nf.id == i0.flavor.id {
                return Err(NovaError::bad(
                    "When resizing, instances must change flavor!",
                ));
            }
            if nf.disk < i0.flavor.disk && !i0.image_ref.is_empty() {
                return Err(NovaError::bad("Resize error: Unable to resize disk down."));
            }
            if nf.disk == 0 && i0.flavor.disk > 0 && !i0.image_ref.is_empty() {
                return Err(NovaError::forbidden(
                    "Resize to zero disk flavor is not allowed.",
                ));
            }
            let dv = i64::from(nf.vcpus) - i64::from(i0.flavor.vcpus);
            let dr = nf.ram as i64 - i0.flavor.ram as i64;
            ops::quota_check(
                &st,
                &i0.project_id,
                &i0.user_id,
                &[("cores", dv.max(0)), ("ram", dr.max(0))],
            )?;
            nf
        }
        None => i0.flavor.clone(),
    };
    if let Some(t) = &target {
        let st = svc.state.read();
        if !st
            .services
            .values()
            .any(|s| s.binary == "nova-compute" && &s.host == t)
        {
            return Err(NovaError::bad(format!(
                "Compute host {t} could not be found."
            )));
        }
        if i0.host.as_deref() == Some(t.as_str()) {
            return Err(NovaError::bad("The target host can't be the same one."));
        }
    }
    let i = begin(
        svc,
        c,
        id,
        "resize",
        kind,
        &["active", "stopped"],
        Some("resize_prep"),
        true,
    )
    .await?;
    let (svc2, rid) = (svc.clone(), c.request_id.clone());
    let (user, project) = (c.user(), c.project());
    let kind = kind.to_string();
    tokio::spawn(async move {
        let r = do_resize(&svc2, &i, new_flavor, target, &rid, &kind, &user, &project).await;
        if let Err(e) = r {
            tracing::warn!(instance = %i.uuid, "resize failed: {e}");
            let _ = svc2
                .state
                .update_instance(&i.uuid, |x| {
                    x.task_state = None;
                    x.fault = Some(crate::model::Fault {
                        code: 500,
                        message: e.clone(),
                        details: e.clone(),
                        created: now(),
                    });
                    Ok(())
                })
                .await;
            ops::event(
                &svc2,
                &i.uuid,
                &rid,
                "compute_prep_resize",
                None,
                Some(Err(e)),
            )
            .await;
        }
    });
    Ok(Outcome::Accepted)
}

#[allow(clippy::too_many_arguments)]
async fn do_resize(
    svc: &Arc<ComputeService>,
    i: &Instance,
    nf: crate::model::Flavor,
    target: Option<String>,
    rid: &str,
    kind: &str,
    user: &str,
    project: &str,
) -> Result<(), String> {
    let src_host = i.host.clone().unwrap_or_default();
    let src_node = i.node.clone().unwrap_or_default();
    let image_backed = !i.image_ref.is_empty();
    ops::event(svc, &i.uuid, rid, "compute_prep_resize", None, None).await;
    // Candidates for the new flavor; prefer another host, as Nova does
    // (allow_resize_to_same_host only when no other host fits).
    let q = crate::placement::CandidateQuery {
        resources: flavor_allocs("x", &nf, image_backed)
            .remove("x")
            .unwrap_or_default(),
        limit: Some(1000),
        ..Default::default()
    };
    let cands = svc
        .placement
        .allocation_candidates(&q)
        .await
        .map_err(|e| e.to_string())?;
    let hosts = {
        let st = svc.state.read();
        ops::host_states(svc, &st, &cands)
    };
    let spec = ferro_scheduler::RequestSpec {
        instance_uuid: i.uuid.clone(),
        project_id: i.project_id.clone(),
        vcpus: nf.vcpus,
        memory_mb: nf.ram,
        root_gb: nf.disk,
        flavor_extra_specs: nf.extra_specs.clone(),
        image_properties: i.image_properties.clone(),
        availability_zone: i.requested_az.clone().filter(|a| !a.contains(':')),
        ..Default::default()
    };
    let mut ordered = svc
        .scheduler
        .select(hosts, &spec)
        .map_err(|e| e.message())?;
    if let Some(t) = &target {
        ordered.retain(|h| &h.host == t);
    } else if kind == "migrate" {
        ordered.retain(|h| h.host != src_host);
    } else {
        ordered.sort_by_key(|h| h.host == src_host);
    }
    let dest = ordered.first().cloned().ok_or_else(|| {
        "No valid host was found. No other host can take the instance.".to_string()
    })?;
    // Source allocations move to the migration; the instance claims the destination.
    let mig_uuid = ferro_common::new_uuid();
    let (old, _generation) = svc.placement.get_allocations(&i.uuid).await;
    svc.placement
        .put_allocations(&mig_uuid, &i.project_id, &i.user_id, old.clone(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut new_alloc = flavor_allocs(&dest.node, &nf, image_backed);
    if dest.host == src_host {
        // Same host: one provider holds both until confirm.
        new_alloc = flavor_allocs(&dest.node, &nf, image_backed);
    }
    if let Err(e) = svc
        .placement
        .put_allocations(&i.uuid, &i.project_id, &i.user_id, new_alloc, None)
        .await
    {
        let _ = svc
            .placement
            .put_allocations(&i.uuid, &i.project_id, &i.user_id, old, None)
            .await;
        let _ = svc.placement.delete_allocations(&mig_uuid).await;
        return Err(format!("claim on {} failed: {e}", dest.host));
    }
    let mig_id = svc
        .state
        .write(|st| {
            let id = st.migrations.keys().max().copied().unwrap_or(0) + 1;
            let t = now();
            let m = Migration {
                id,
                uuid: mig_uuid.clone(),
                instance_uuid: i.uuid.clone(),
                source_compute: src_host.clone(),
                dest_compute: dest.host.clone(),
                source_node: src_host.clone(),
                dest_node: dest.host.clone(),
                old_flavor_id: i.flavor.id.clone(),
                new_flavor_id: nf.id.clone(),
                status: "migrating".into(),
                migration_type: if kind == "migrate" {
                    "migration".into()
                } else {
                    "resize".into()
                },
                project_id: project.to_string(),
                user_id: user.to_string(),
                created_at: t.clone(),
                updated_at: t,
            };
            Ok((id, vec![Rec::Migration(m)]))
        })
        .await
        .map_err(|e| e.to_string())?;
    ops::event(svc, &i.uuid, rid, "compute_prep_resize", None, Some(Ok(()))).await;
    ops::event(
        svc,
        &i.uuid,
        rid,
        "compute_resize_instance",
        Some(&src_host),
        None,
    )
    .await;
    let mut spec = ops::guest_spec(svc, i);
    spec.vcpus = nf.vcpus;
    spec.memory_mb = nf.ram;
    spec.root_gb = nf.disk;
    let r = async {
        if dest.host == src_host {
            ops::call_agent(
                svc,
                &dest.host,
                ComputeRequest::Resize { spec: spec.clone() },
                Some(rid),
            )
            .await?;
        } else {
            ops::call_agent(
                svc,
                &dest.host,
                ops::spawn_request(svc, spec.clone(), &ops::owner(i)).await,
                Some(rid),
            )
            .await?;
            let _ = ops::call_agent(
                svc,
                &src_host,
                ComputeRequest::PowerOff {
                    uuid: i.uuid.to_string(),
                },
                Some(rid),
            )
            .await;
        }
        if i.vm_state == "stopped" {
            ops::call_agent(
                svc,
                &dest.host,
                ComputeRequest::PowerOff {
                    uuid: i.uuid.to_string(),
                },
                Some(rid),
            )
            .await?;
        }
        Ok::<(), String>(())
    }
    .await;
    ops::event(
        svc,
        &i.uuid,
        rid,
        "compute_resize_instance",
        Some(&src_host),
        Some(r.clone()),
    )
    .await;
    if let Err(e) = r {
        let _ = svc
            .placement
            .put_allocations(
                &i.uuid,
                &i.project_id,
                &i.user_id,
                flavor_allocs(&src_node, &i.flavor, image_backed),
                None,
            )
            .await;
        let _ = svc.placement.delete_allocations(&mig_uuid).await;
        let _ = set_migration(svc, mig_id, "error").await;
        return Err(e);
    }
    ops::event(
        svc,
        &i.uuid,
        rid,
        "compute_finish_resize",
        Some(&dest.host),
        Some(Ok(())),
    )
    .await;
    let prev = i.vm_state.clone();
    let (dh, dn, daz) = (
        dest.host.clone(),
        dest.node.clone(),
        dest.availability_zone.clone(),
    );
    svc.state
        .update_instance(&i.uuid, move |x| {
            x.old_flavor = Some(x.flavor.clone());
            x.flavor = nf;
            x.previous_vm_state = Some(prev.clone());
            x.vm_state = "resized".into();
            x.power_state = if prev == "stopped" { 4 } else { 1 };
            x.task_state = None;
            x.host = Some(dh);
            x.node = Some(dn);
            x.availability_zone = Some(daz);
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    set_migration(svc, mig_id, "finished")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn set_migration(
    svc: &ComputeService,
    id: u64,
    status: &str,
) -> Result<(), ferro_common::Error> {
    let status = status.to_string();
    svc.state
        .write(|st| {
            let Some(mut m) = st.migrations.get(&id).cloned() else {
                return Ok(((), vec![]));
            };
            m.status = status;
            m.updated_at = now();
            Ok(((), vec![Rec::Migration(m)]))
        })
        .await
}

fn pending_migration(svc: &ComputeService, uuid: &str) -> Option<Migration> {
    svc.state
        .read()
        .migrations
        .values()
        .filter(|m| m.instance_uuid == uuid && m.status == "finished")
        .max_by_key(|m| m.id)
        .cloned()
}

pub(super) async fn confirm_resize(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "confirmResize",
        "confirmResize",
        &["resized"],
        None,
        true,
    )
    .await?;
    let m = pending_migration(svc, id)
        .ok_or_else(|| NovaError::bad(format!("Migration for instance {id} not found")))?;
    if m.source_compute != m.dest_compute {
        let _ = ops::call_agent(
            svc,
            &m.source_compute,
            ComputeRequest::Destroy {
                uuid: id.to_string(),
            },
            Some(&c.request_id),
        )
        .await;
    }
    svc.placement.delete_allocations(&m.uuid).await?;
    set_migration(svc, m.id, "confirmed").await?;
    let prev = i
        .previous_vm_state
        .clone()
        .unwrap_or_else(|| "active".into());
    svc.state
        .update_instance(id, move |x| {
            x.old_flavor = None;
            x.vm_state = prev;
            x.previous_vm_state = None;
            Ok(())
        })
        .await?;
    Ok(Outcome::Done)
}

pub(super) async fn revert_resize(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "revertResize",
        "revertResize",
        &["resized"],
        Some("resize_reverting"),
        true,
    )
    .await?;
    let m = pending_migration(svc, id)
        .ok_or_else(|| NovaError::bad(format!("Migration for instance {id} not found")))?;
    let (svc2, rid) = (svc.clone(), c.request_id.clone());
    tokio::spawn(async move {
        let old = i.old_flavor.clone().unwrap_or_else(|| i.flavor.clone());
        let mut spec = ops::guest_spec(&svc2, &i);
        spec.vcpus = old.vcpus;
        spec.memory_mb = old.ram;
        spec.root_gb = old.disk;
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_revert_resize",
            Some(&m.dest_compute),
            None,
        )
        .await;
        let r = async {
            if m.source_compute == m.dest_compute {
                ops::call_agent(
                    &svc2,
                    &m.source_compute,
                    ComputeRequest::Resize { spec: spec.clone() },
                    Some(&rid),
                )
                .await?;
            } else {
                ops::call_agent(
                    &svc2,
                    &m.dest_compute,
                    ComputeRequest::Destroy {
                        uuid: i.uuid.to_string(),
                    },
                    Some(&rid),
                )
                .await?;
                ops::call_agent(
                    &svc2,
                    &m.source_compute,
                    ops::spawn_request(&svc2, spec.clone(), &ops::owner(&i)).await,
                    Some(&rid),
                )
                .await?;
                ops::call_agent(
                    &svc2,
                    &m.source_compute,
                    ComputeRequest::PowerOn {
                        uuid: i.uuid.to_string(),
                    },
                    Some(&rid),
                )
                .await?;
            }
            let (old_alloc, _) = svc2.placement.get_allocations(&m.uuid).await;
            svc2.placement
                .put_allocations(&i.uuid, &i.project_id, &i.user_id, old_alloc, None)
                .await
                .map_err(|e| e.to_string())?;
            svc2.placement
                .delete_allocations(&m.uuid)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        }
        .await;
        let ok = r.is_ok();
        let _ = set_migration(&svc2, m.id, if ok { "reverted" } else { "error" }).await;
        let src = m.source_compute.clone();
        let node = {
            let st = svc2.state.read();
            st.services
                .values()
                .find(|s| s.binary == "nova-compute" && s.host == src)
                .and_then(|s| s.node_uuid.clone())
        };
        let _ = svc2
            .state
            .update_instance(&i.uuid, move |x| {
                x.task_state = None;
                if ok {
                    if let Some(of) = x.old_flavor.take() {
                        x.flavor = of;
                    }
                    x.vm_state = x
                        .previous_vm_state
                        .take()
                        .unwrap_or_else(|| "active".into());
                    x.host = Some(src);
                    x.node = node;
                } else {
                    x.vm_state = "error".into();
                }
                Ok(())
            })
            .await;
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_revert_resize",
            Some(&m.dest_compute),
            Some(r),
        )
        .await;
    });
    Ok(Outcome::Accepted)
}
