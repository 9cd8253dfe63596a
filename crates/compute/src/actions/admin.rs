//! Actions that change the record at once (lock, unlock, resetState),
//! delete and restore, and the ones this cloud refuses with Nova's answer.
use super::guard::{begin, record};
use super::{Outcome, ResetTo};
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::servers::{delete_instance, get_instance};
use std::sync::Arc;

pub(super) async fn lock(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    reason: Option<String>,
) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-lock-server:lock")?;
    let by = if c.is_admin(svc) && i.project_id != c.project() {
        "admin"
    } else {
        "owner"
    };
    record(svc, c, &i, "lock").await?;
    svc.state
        .update_instance(id, |i| {
            i.locked = true;
            i.locked_by = Some(by.into());
            i.locked_reason = reason;
            Ok(())
        })
        .await?;
    Ok(Outcome::Accepted)
}

pub(super) async fn unlock(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-lock-server:unlock")?;
    if i.locked_by.as_deref() == Some("admin") && !c.is_admin(svc) {
        return Err(NovaError::forbidden(
            "Unlocking a server locked by an administrator is not allowed.",
        ));
    }
    record(svc, c, &i, "unlock").await?;
    svc.state
        .update_instance(id, |i| {
            i.locked = false;
            i.locked_by = None;
            i.locked_reason = None;
            Ok(())
        })
        .await?;
    Ok(Outcome::Accepted)
}

/// The ports are current in Networking and a guest takes its addresses by
/// DHCP, so there is nothing to push; the instance must exist.
pub(super) fn inject_network_info(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
) -> NResult<Outcome> {
    c.require_admin(svc, "os_compute_api:os-admin-actions:inject_network_info")?;
    get_instance(svc, c, id)?;
    Ok(Outcome::Accepted)
}

pub(super) async fn reset_state(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    to: ResetTo,
) -> NResult<Outcome> {
    c.require_admin(svc, "os_compute_api:os-admin-actions:reset_state")?;
    let i = get_instance(svc, c, id)?;
    record(svc, c, &i, "resetState").await?;
    let st = match to {
        ResetTo::Active => "active",
        ResetTo::Error => "error",
    };
    svc.state
        .update_instance(id, move |i| {
            i.vm_state = st.into();
            i.task_state = None;
            Ok(())
        })
        .await?;
    Ok(Outcome::Accepted)
}

pub(super) async fn force_delete(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
) -> NResult<Outcome> {
    delete_instance(svc, c, id, "forceDelete").await?;
    Ok(Outcome::Accepted)
}

/// Deletes are not deferred (`reclaim_instance_interval` is 0), so no
/// instance is ever SOFT_DELETED and restore always meets the wrong state.
pub(super) fn restore(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    Err(NovaError::invalid_state(
        "restore",
        "vm_state",
        &i.vm_state,
        id,
    ))
}

/// Checked as Nova checks it; setting a password inside the guest needs
/// the QEMU guest agent, which no driver here speaks.
pub(super) async fn change_password(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    admin_pass: String,
) -> NResult<Outcome> {
    let _ = admin_pass;
    begin(
        svc,
        c,
        id,
        "changePassword",
        "changePassword",
        &["active"],
        None,
        true,
    )
    .await?;
    Ok(Outcome::Accepted)
}

/// Without a Networking service the only group that exists is `default`,
/// and the instance's own list is the record.
pub(super) async fn security_group(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    sg: String,
    add: bool,
) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-security-groups:add")?;
    if add && i.security_groups.contains(&sg) {
        return Err(NovaError::bad(format!(
            "Security group {sg} is already associated with the instance {id}"
        )));
    }
    if add && sg != "default" {
        return Err(NovaError::not_found(format!(
            "Security group {sg} not found."
        )));
    }
    if !add && !i.security_groups.contains(&sg) {
        return Err(NovaError::not_found(format!(
            "Security group {sg} not found for instance {id}."
        )));
    }
    svc.state
        .update_instance(id, move |x| {
            if add {
                x.security_groups.push(sg);
            } else {
                x.security_groups.retain(|g| g != &sg);
            }
            Ok(())
        })
        .await?;
    Ok(Outcome::Accepted)
}

/// `os-migrateLive` and `evacuate`: checked in Nova's order (the server,
/// the policy, then its state: 409 for a state Nova refuses) before the
/// driver's lack of migration says 400.
pub(super) fn live_migrate(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    action: &str,
) -> NResult<Outcome> {
    let inst = crate::servers::get_instance(svc, c, id)?;
    let (rule, allowed): (&str, &[&str]) = if action == "evacuate" {
        (
            "os_compute_api:os-evacuate",
            &["active", "stopped", "error"],
        )
    } else {
        (
            "os_compute_api:os-migrate-server:migrate_live",
            &["active", "paused"],
        )
    };
    c.require_admin(svc, rule)?;
    if !allowed.contains(&inst.vm_state.as_str()) {
        return Err(NovaError::invalid_state(
            action,
            "vm_state",
            &inst.vm_state,
            id,
        ));
    }
    Err(NovaError::bad(format!(
        "{action} is not supported by the hypervisor driver."
    )))
}
