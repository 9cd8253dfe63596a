//! Power transitions, reboot, rescue and unrescue: checked against the
//! instance's state, then run on its host by its agent.
use super::guard::{SIMPLE, begin};
use super::{Outcome, Power};
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::ops;
use ferro_rpc::compute::ComputeRequest;
use std::sync::Arc;

pub(super) async fn power(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    p: Power,
) -> NResult<Outcome> {
    let a = SIMPLE
        .iter()
        .find(|a| a.power == p)
        .ok_or_else(|| NovaError::bad(format!("There is no such action: {p:?}")))?;
    let i = begin(svc, c, id, a.action, a.action, a.from, Some(a.task), true).await?;
    let to = a.to;
    ops::run_on_host(
        svc,
        &i,
        &c.request_id,
        a.event,
        (a.request)(i.uuid.clone()),
        Box::new(move |i| i.vm_state = to.into()),
    );
    Ok(Outcome::Accepted)
}

pub(super) async fn reboot(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    hard: bool,
) -> NResult<Outcome> {
    let states: &[&str] = if hard {
        &["active", "stopped", "paused", "suspended", "error"]
    } else {
        &["active", "stopped", "error"]
    };
    let task = if hard { "rebooting_hard" } else { "rebooting" };
    let i = begin(svc, c, id, "reboot", "reboot", states, Some(task), true).await?;
    ops::run_on_host(
        svc,
        &i,
        &c.request_id,
        "compute_reboot_instance",
        ComputeRequest::Reboot {
            uuid: i.uuid.clone(),
            hard,
        },
        Box::new(|i| {
            i.vm_state = "active".into();
        }),
    );
    Ok(Outcome::Accepted)
}

/// A 12-character password, as Nova generates one when none is given.
pub(super) fn generated_password() -> String {
    let n: u64 = rand::random();
    format!("{n:012x}")[..12].to_string()
}

pub(super) async fn rescue(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    admin_pass: Option<String>,
    image: Option<String>,
) -> NResult<Outcome> {
    let pass = admin_pass.unwrap_or_else(generated_password);
    let rescue_image = match &image {
        Some(img) => Some(
            svc.image
                .get(c.token(), img)
                .await?
                .ok_or_else(|| NovaError::bad(format!("Image {img} could not be found.")))?,
        ),
        None => None,
    };
    let current = crate::servers::get_instance(svc, c, id)?;
    // Nova checks the lock and state first (begin's errors), then this.
    let settled = matches!(current.vm_state.as_str(), "active" | "stopped" | "error")
        && current.task_state.is_none()
        && !current.locked;
    if settled && crate::volumes::is_volume_backed(&current) {
        // Nova's check: from 2.87 a volume-backed server is rescuable when
        // the image asks for a stable rescue device and the host reports
        // COMPUTE_RESCUE_BFV. No driver here reports that trait (compute
        // nodes carry COMPUTE_NODE only), so the answer is the host's.
        let has = |k: &str| match &rescue_image {
            Some(img) => img.get(k).is_some_and(|v| !v.is_null()),
            None => current.image_properties.contains_key(k),
        };
        let stable = c.mv.at_least(87) && has("hw_rescue_bus") && has("hw_rescue_device");
        let reason = if stable {
            "Host unable to rescue a volume-backed instance"
        } else {
            "Cannot rescue a volume-backed instance"
        };
        return Err(NovaError::bad(format!(
            "Instance {} cannot be rescued: {reason}",
            current.uuid
        )));
    }
    let i = begin(
        svc,
        c,
        id,
        "rescue",
        "rescue",
        &["active", "stopped", "error"],
        Some("rescuing"),
        true,
    )
    .await?;
    let prev = i.vm_state.clone();
    ops::run_on_host(
        svc,
        &i,
        &c.request_id,
        "compute_rescue_instance",
        ComputeRequest::Rescue {
            uuid: i.uuid.clone(),
            image_id: image.clone(),
            images: ops::image_access(svc, &c.acting()).await,
        },
        Box::new(move |i| {
            i.previous_vm_state = Some(prev);
            i.vm_state = "rescued".into();
            i.rescue_image = image;
        }),
    );
    Ok(Outcome::AdminPass(pass))
}

pub(super) async fn unrescue(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Outcome> {
    let i = begin(
        svc,
        c,
        id,
        "unrescue",
        "unrescue",
        &["rescued"],
        Some("unrescuing"),
        true,
    )
    .await?;
    ops::run_on_host(
        svc,
        &i,
        &c.request_id,
        "compute_unrescue_instance",
        ComputeRequest::Unrescue {
            uuid: i.uuid.clone(),
        },
        Box::new(|i| {
            i.vm_state = "active".into();
            i.rescue_image = None;
            i.previous_vm_state = None;
        }),
    );
    Ok(Outcome::Accepted)
}
