//! What every server action does first: check the instance's state and lock, set its task state and record the instance action, in one write.
use super::Power;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::model::Instance;
use crate::ops;
use crate::servers::{check_locked, get_instance};
use crate::state::{Rec, now};
use ferro_rpc::compute::ComputeRequest;

/// A power action: allowed states, the task while it runs, the agent
/// method, and the state it ends in (Nova's check_instance_state rules).
pub(super) struct Simple {
    pub(super) power: Power,
    pub(super) action: &'static str,
    pub(super) from: &'static [&'static str],
    pub(super) task: &'static str,
    pub(super) event: &'static str,
    pub(super) request: fn(String) -> ComputeRequest,
    pub(super) to: &'static str,
}

pub(super) const SIMPLE: &[Simple] = &[
    Simple {
        power: Power::Stop,
        action: "stop",
        from: &["active", "error"],
        task: "powering-off",
        event: "compute_stop_instance",
        request: |uuid| ComputeRequest::PowerOff { uuid },
        to: "stopped",
    },
    Simple {
        power: Power::Start,
        action: "start",
        from: &["stopped"],
        task: "powering-on",
        event: "compute_start_instance",
        request: |uuid| ComputeRequest::PowerOn { uuid },
        to: "active",
    },
    Simple {
        power: Power::Pause,
        action: "pause",
        from: &["active"],
        task: "pausing",
        event: "compute_pause_instance",
        request: |uuid| ComputeRequest::Pause { uuid },
        to: "paused",
    },
    Simple {
        power: Power::Unpause,
        action: "unpause",
        from: &["paused"],
        task: "unpausing",
        event: "compute_unpause_instance",
        request: |uuid| ComputeRequest::Unpause { uuid },
        to: "active",
    },
    Simple {
        power: Power::Suspend,
        action: "suspend",
        from: &["active"],
        task: "suspending",
        event: "compute_suspend_instance",
        request: |uuid| ComputeRequest::Suspend { uuid },
        to: "suspended",
    },
    Simple {
        power: Power::Resume,
        action: "resume",
        from: &["suspended"],
        task: "resuming",
        event: "compute_resume_instance",
        request: |uuid| ComputeRequest::Resume { uuid },
        to: "active",
    },
];

/// Checks the state, sets the task and records the action, in one write.
#[allow(clippy::too_many_arguments)]
pub(super) async fn begin(
    svc: &ComputeService,
    c: &Caller,
    id: &str,
    action: &str,
    nova_action: &str,
    vm_states: &[&str],
    task: Option<&str>,
    lock_check: bool,
) -> NResult<Instance> {
    let i = get_instance(svc, c, id)?;
    c.require_member(
        svc,
        &i.project_id,
        &format!("os_compute_api:servers:{action}"),
    )?;
    if lock_check {
        check_locked(svc, c, &i)?;
    }
    let (rid, user, project) = (c.request_id.clone(), c.user(), c.project());
    let task = task.map(str::to_string);
    let vm_states: Vec<String> = vm_states.iter().map(|s| s.to_string()).collect();
    let action = action.to_string();
    let nova_action = nova_action.to_string();
    svc.state
        .write(|st| {
            let mut i = st.instances.get(id).cloned().ok_or_else(|| {
                ferro_common::Error::not_found_msg(format!("Instance {id} could not be found."))
            })?;
            if !vm_states.is_empty() && !vm_states.contains(&i.vm_state) {
                return Err(
                    NovaError::invalid_state(&action, "vm_state", &i.vm_state, id).into_error(),
                );
            }
            if let Some(t) = &i.task_state {
                return Err(NovaError::invalid_state(&action, "task_state", t, id).into_error());
            }
            let a = ops::new_action(st, &[], &i, &nova_action, &rid, &user, &project);
            i.task_state = task;
            i.updated_at = now();
            Ok((i.clone(), vec![Rec::Instance(Box::new(i)), Rec::Action(a)]))
        })
        .await
        .map_err(NovaError::from)
}

/// Records an action that completes at once (lock, unlock, resetState...).
pub async fn record(svc: &ComputeService, c: &Caller, i: &Instance, action: &str) -> NResult<()> {
    let (rid, user, project) = (c.request_id.clone(), c.user(), c.project());
    let i = i.clone();
    let action = action.to_string();
    svc.state
        .write(|st| {
            let a = ops::new_action(st, &[], &i, &action, &rid, &user, &project);
            Ok(((), vec![Rec::Action(a)]))
        })
        .await
        .map_err(NovaError::from)
}
