//! The server-create saga (DESIGN.md §5) and the delete workflow.
//! Steps: schedule (Placement candidates, filters, weighers, claim) ->
//! network -> block_devices -> spawn (rescheduling to another host on a
//! driver failure, up to `max_attempts`) -> finish. Each step's undo
//! releases what it took; the saga's progress is in the saga log, so a
//! restarted process resumes or unwinds it.
use crate::ComputeService;
use crate::model::Fault;
use crate::ops;
use crate::placement::{AllocMap, CandidateQuery};
use crate::state::now;
use crate::workflow::{Ctx, inject};
use ferro_auth::Acting;
use ferro_common::Error;
use ferro_rpc::compute::{ComputeRequest, PowerState};
use ferro_saga::{Executor, SagaDef, SagaError, Typed, TypedStep};
use ferro_scheduler::{GroupSpec, RequestSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const CREATE: &str = "server_create";

/// The build saga's progress, as the saga log keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BuildState {
    pub uuid: String,
    pub request_id: String,
    /// Hosts a spawn already failed on (not tried again).
    #[serde(default)]
    pub tried: Vec<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// The power state the host reported for the new guest.
    #[serde(default)]
    pub power_state: Option<i64>,
    /// Who the build acts for when it calls other services (volumes made
    /// from images): the user and project, never the user's token.
    #[serde(default)]
    pub acting: Option<Acting>,
    /// A host the server must go to (unshelve to a host, 2.91): Nova's
    /// `requested_destination`, still passed through the filters.
    #[serde(default)]
    pub destination: Option<String>,
}

impl BuildState {
    fn host(&self) -> &str {
        self.host.as_deref().unwrap_or_default()
    }
}

/// Registers the server-create saga.
pub fn register(ex: &mut Executor<Ctx>) {
    ex.register(SagaDef {
        name: CREATE,
        steps: vec![
            Box::new(Typed::new(Schedule)),
            Box::new(Typed::new(Network)),
            Box::new(Typed::new(BlockDevices)),
            Box::new(Typed::new(Spawn)),
            Box::new(Typed::new(Finish)),
        ],
    });
}

/// Fails the step when the user deleted the server meanwhile.
fn check_not_deleting(svc: &ComputeService, uuid: &str) -> Result<(), String> {
    let st = svc.state.read();
    match st.instances.get(uuid) {
        None => Err("instance vanished".into()),
        Some(i) if i.deleted || i.task_state.as_deref() == Some("deleting") => {
            Err("Instance was deleted during build.".into())
        }
        Some(_) => Ok(()),
    }
}

async fn set_task(svc: &ComputeService, uuid: &str, task: Option<&str>) -> Result<(), String> {
    let task = task.map(str::to_string);
    svc.state
        .update_instance(uuid, move |i| {
            if i.task_state.as_deref() != Some("deleting") {
                i.task_state = task;
            }
            Ok(())
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Picks a host and claims the instance's resources there.
async fn schedule_and_claim(svc: &ComputeService, state: &mut BuildState) -> Result<(), String> {
    // One placement decision at a time, as Nova's scheduler makes them: each
    // sees the claims before it, so concurrent builds spread like a
    // multi-instance request does.
    let _one = svc.state.sched_lock.lock().await;
    let uuid = state.uuid.clone();
    let st = svc.state.read();
    let inst = st
        .instances
        .get(&uuid)
        .cloned()
        .ok_or("instance vanished")?;
    let tried = state.tried.clone();
    let resources = BTreeMap::from([
        ("VCPU".to_string(), u64::from(inst.flavor.vcpus)),
        ("MEMORY_MB".to_string(), inst.flavor.ram),
        (
            "DISK_GB".to_string(),
            if inst.image_ref.is_empty() {
                0
            } else {
                inst.flavor.disk
            } + inst.flavor.ephemeral
                + inst.flavor.swap.div_ceil(1024),
        ),
    ])
    .into_iter()
    .filter(|(_, v)| *v > 0)
    .collect();
    let q = CandidateQuery {
        resources,
        limit: Some(svc.cfg.filter_scheduler.max_placement_results),
        ..Default::default()
    };
    let cands = svc
        .placement
        .allocation_candidates(&q)
        .await
        .map_err(|e| e.to_string())?;
    let group = inst
        .server_group
        .as_ref()
        .and_then(|g| st.groups.get(g))
        .map(|g| GroupSpec {
            id: g.id.clone(),
            policy: g.policy.clone(),
            max_server_per_host: g
                .rules
                .get("max_server_per_host")
                .and_then(Value::as_u64)
                .map(|v| v as u32),
            member_hosts: g
                .members
                .iter()
                .filter(|m| **m != uuid)
                .filter_map(|m| st.instances.get(m))
                .filter(|m| !m.deleted)
                .filter_map(|m| m.host.clone())
                .collect(),
        });
    let hint_list = |k: &str| -> Vec<String> {
        match inst.scheduler_hints.get(k) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let same_host = hint_list("same_host");
    let different_host = hint_list("different_host");
    let instance_hosts = same_host
        .iter()
        .chain(different_host.iter())
        .filter_map(|id| {
            st.instances
                .get(id)
                .and_then(|i| i.host.clone().map(|h| (id.clone(), h)))
        })
        .collect();
    let (az, force_host) = match inst.requested_az.as_deref() {
        Some(a) => match a.split_once(':') {
            Some((z, h)) => (
                (!z.is_empty()).then(|| z.to_string()),
                Some(h.split(':').next().unwrap_or(h).to_string()),
            ),
            None => (Some(a.to_string()), None),
        },
        None => (None, None),
    };
    let force_host = state.destination.clone().or(force_host);
    let spec = RequestSpec {
        instance_uuid: uuid.clone(),
        project_id: inst.project_id.clone(),
        vcpus: inst.flavor.vcpus,
        memory_mb: inst.flavor.ram,
        root_gb: inst.flavor.disk,
        ephemeral_gb: inst.flavor.ephemeral,
        flavor_extra_specs: inst.flavor.extra_specs.clone(),
        image_properties: inst.image_properties.clone(),
        availability_zone: az,
        force_host: force_host.clone(),
        group,
        same_host,
        different_host,
        instance_hosts,
        ignore_hosts: tried.clone(),
    };
    let mut hosts = ops::host_states(svc, &st, &cands);
    drop(st);
    if let Some(h) = &force_host {
        hosts.retain(|x| &x.host == h);
    }
    if hosts.is_empty() && tried.is_empty() {
        return Err(explain_no_candidates(svc, &q.resources, force_host.as_deref()).await);
    }
    let ordered = svc
        .scheduler
        .select(hosts, &spec)
        .map_err(|e| e.message())?;
    let mut last = String::new();
    for h in ordered {
        let mut alloc: AllocMap = BTreeMap::new();
        alloc.insert(h.node.clone(), q.resources.clone());
        match svc
            .placement
            .put_allocations(&uuid, &inst.project_id, &inst.user_id, alloc, None)
            .await
        {
            Ok(()) => {
                state.host = Some(h.host.clone());
                state.node = Some(h.node.clone());
                let (host, node, az) =
                    (h.host.clone(), h.node.clone(), h.availability_zone.clone());
                svc.state
                    .update_instance(&uuid, move |i| {
                        i.host = Some(host);
                        i.node = Some(node);
                        i.availability_zone = Some(az);
                        Ok(())
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            Err(e) => last = format!("claim on {} failed: {e}", h.host),
        }
    }
    Err(format!("No valid host was found. {last}"))
}

/// Placement returned no candidate: say, per resource class (the checks
/// Nova's RamFilter/CoreFilter/DiskFilter made before Placement), which
/// hosts lacked room and how much they had.
async fn explain_no_candidates(
    svc: &ComputeService,
    want: &BTreeMap<String, u64>,
    force_host: Option<&str>,
) -> String {
    let hosts: Vec<(
        String,
        Option<String>,
        Option<ferro_rpc::compute::HostResources>,
    )> = {
        let st = svc.state.read();
        st.services
            .values()
            .filter(|s| s.binary == "nova-compute")
            .filter(|s| force_host.is_none_or(|h| h == s.host))
            .map(|s| (s.host.clone(), s.node_uuid.clone(), s.resources.clone()))
            .collect()
    };
    if hosts.is_empty() {
        return "No valid host was found. There are no compute hosts registered.".into();
    }
    let mut results = Vec::new();
    let mut left: Vec<String> = hosts.iter().map(|h| h.0.clone()).collect();
    for (rc, filter) in [
        ("VCPU", "CoreFilter"),
        ("MEMORY_MB", "RamFilter"),
        ("DISK_GB", "DiskFilter"),
    ] {
        let Some(amount) = want.get(rc) else { continue };
        let start = left.len();
        let mut removed = Vec::new();
        for (host, node, res) in &hosts {
            if !left.contains(host) {
                continue;
            }
            let cap = match (node, res) {
                (Some(_), Some(r)) => ops::capacity(svc, r, rc, ops::guests_on(svc, host, r)),
                _ => 0,
            };
            let used = match node {
                Some(n) => svc
                    .placement
                    .provider_usages(n)
                    .await
                    .get(rc)
                    .copied()
                    .unwrap_or(0),
                None => 0,
            };
            let free = cap.saturating_sub(used);
            if free < *amount {
                removed.push(format!("{host} ({free} free)"));
                left.retain(|h| h != host);
            }
        }
        results.push(
            format!(
                "{filter} (Placement {rc}={amount}): (start: {start}, end: {})",
                left.len()
            ) + &if removed.is_empty() {
                String::new()
            } else {
                format!(" removed {}", removed.join(", "))
            },
        );
    }
    format!(
        "No valid host was found. Filter results: [{}]{}",
        results.join("; "),
        force_host
            .map(|h| format!(" (requested host {h})"))
            .unwrap_or_default()
    )
}

async fn release_claim(svc: &ComputeService, uuid: &str) -> Result<(), String> {
    svc.placement
        .delete_allocations(uuid)
        .await
        .map_err(|e| e.to_string())?;
    svc.state
        .update_instance(uuid, |i| {
            i.host = None;
            i.node = None;
            Ok(())
        })
        .await
        .map(|_| ())
        .or_else(|e| match e {
            Error::NotFound { .. } | Error::NotFoundMsg { .. } => Ok(()),
            e => Err(e.to_string()),
        })
}

struct Schedule;
#[async_trait::async_trait]
impl TypedStep<Ctx, BuildState> for Schedule {
    fn name(&self) -> &'static str {
        "schedule"
    }
    async fn run(&self, ctx: &Ctx, state: &mut BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = state.uuid.clone();
        let rid = state.request_id.clone();
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "schedule").await?;
        const EV: &str = "conductor_schedule_and_build_instances";
        ops::event(&svc, &uuid, &rid, EV, None, None).await;
        let r = schedule_and_claim(&svc, state).await;
        ops::event(&svc, &uuid, &rid, EV, None, Some(r.clone())).await;
        r?;
        set_task(&svc, &uuid, Some("networking")).await
    }
    async fn undo(&self, ctx: &Ctx, state: &BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        release_claim(&svc, &state.uuid).await
    }
}

/// Creates or binds the instance's ports on its host.
async fn allocate_network(svc: &ComputeService, uuid: &str, host: &str) -> Result<(), String> {
    let (project, requested, sgs) = {
        let st = svc.state.read();
        let i = st.instances.get(uuid).ok_or("instance vanished")?;
        (
            i.project_id.clone(),
            i.requested_networks.clone(),
            i.security_groups.clone(),
        )
    };
    let addrs = svc
        .network
        .allocate(uuid, &project, host, &requested, &sgs)
        .await?;
    let tags = ops::requested_tags(svc.network.vifs(uuid), &requested);
    svc.state
        .update_instance(uuid, move |i| {
            i.addresses = addrs.into_iter().collect();
            i.vif_tags = tags;
            Ok(())
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Network;
#[async_trait::async_trait]
impl TypedStep<Ctx, BuildState> for Network {
    fn name(&self) -> &'static str {
        "network"
    }
    async fn run(&self, ctx: &Ctx, state: &mut BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = state.uuid.clone();
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "network").await?;
        allocate_network(&svc, &uuid, state.host()).await?;
        set_task(&svc, &uuid, Some("block_device_mapping")).await
    }
    async fn undo(&self, ctx: &Ctx, state: &BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        svc.network.deallocate(&state.uuid).await
    }
}

struct BlockDevices;
#[async_trait::async_trait]
impl TypedStep<Ctx, BuildState> for BlockDevices {
    fn name(&self) -> &'static str {
        "block_devices"
    }
    async fn run(&self, ctx: &Ctx, state: &mut BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = state.uuid.clone();
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "block_devices").await?;
        crate::volumes::prepare_block_devices(&svc, &uuid, state.host(), state.acting.as_ref())
            .await?;
        set_task(&svc, &uuid, Some("spawning")).await
    }
    async fn undo(&self, ctx: &Ctx, state: &BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        crate::volumes::unprepare_block_devices(&svc, &state.uuid).await
    }
}

/// Asks the host to boot the instance's guest (idempotent: a guest that
/// is there already is left as it is); returns its power state.
async fn spawn_on_host(
    svc: &ComputeService,
    uuid: &str,
    host: &str,
    rid: &str,
    acting: Option<&Acting>,
) -> Result<PowerState, String> {
    let (mut spec, owner) = {
        let st = svc.state.read();
        let i = st.instances.get(uuid).ok_or("instance vanished")?;
        (ops::guest_spec(svc, i), ops::owner(i))
    };
    // Nova's paused create (its libvirt driver's; a simulated host plugs
    // nothing): ports not wired yet are waited for.
    let wait = Duration::from_secs(svc.cfg.compute.vif_plugging_timeout);
    let unplugged = if wait.is_zero() || !crate::vifs::host_plugs_vifs(svc, host) {
        Vec::new()
    } else {
        crate::vifs::unplugged(svc, uuid)
    };
    spec.start_paused = !unplugged.is_empty();
    let req = ops::spawn_request(svc, spec, acting.unwrap_or(&owner)).await;
    const EV: &str = "compute_build_and_run_instance";
    ops::event(svc, uuid, rid, EV, Some(host), None).await;
    let mut r = ops::call_agent(svc, host, req, Some(rid))
        .await
        .map_err(|e| e.to_string())
        .and_then(|reply| {
            reply
                .power_state()
                .ok_or_else(|| format!("unexpected answer to spawn: {reply:?}"))
        });
    if r.is_ok() && !unplugged.is_empty() {
        r = run_when_plugged(svc, uuid, host, rid, &unplugged, wait).await;
    }
    ops::event(
        svc,
        uuid,
        rid,
        EV,
        Some(host),
        Some(r.as_ref().map(|_| ()).map_err(Clone::clone)),
    )
    .await;
    r
}

/// Waits for `network-vif-plugged` of the guest's `ports`, then lets its
/// CPUs run; without them in `wait`, the build fails when
/// `vif_plugging_is_fatal` (Nova's `VirtualInterfaceCreateException`).
async fn run_when_plugged(
    svc: &ComputeService,
    uuid: &str,
    host: &str,
    rid: &str,
    ports: &[String],
    wait: Duration,
) -> Result<PowerState, String> {
    let t = std::time::Instant::now();
    match crate::vifs::wait_for_plugged(svc, uuid, ports, wait).await {
        Ok(()) => {
            tracing::debug!(
                instance = uuid,
                ms = t.elapsed().as_millis() as u64,
                "ports plugged"
            )
        }
        Err(missing) if svc.cfg.compute.vif_plugging_is_fatal => {
            return Err(format!(
                "Virtual Interface creation failed: no network-vif-plugged for port(s) {} within {} s",
                missing.join(", "),
                wait.as_secs()
            ));
        }
        Err(missing) => tracing::warn!(
            instance = uuid,
            "timeout waiting for network-vif-plugged of {}; starting the guest anyway (vif_plugging_is_fatal = false)",
            missing.join(", ")
        ),
    }
    let req = ComputeRequest::Unpause {
        uuid: uuid.to_string(),
    };
    ops::call_agent(svc, host, req, Some(rid))
        .await
        .map_err(|e| e.to_string())?;
    Ok(PowerState::Running)
}

struct Spawn;
#[async_trait::async_trait]
impl TypedStep<Ctx, BuildState> for Spawn {
    fn name(&self) -> &'static str {
        "spawn"
    }
    async fn run(&self, ctx: &Ctx, state: &mut BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = state.uuid.clone();
        let rid = state.request_id.clone();
        let max = svc.cfg.compute.max_attempts.max(1) as usize;
        loop {
            check_not_deleting(&svc, &uuid)?;
            inject(&svc, "spawn").await?;
            let host = state.host().to_string();
            match spawn_on_host(&svc, &uuid, &host, &rid, state.acting.as_ref()).await {
                Ok(ps) => {
                    state.power_state = Some(ps.code());
                    return Ok(());
                }
                Err(e) => {
                    // Nova's reschedule: clean this host, give back the
                    // claim and the ports, and go round the scheduler again.
                    tracing::warn!(instance = %uuid, %host, "spawn failed: {e}; rescheduling");
                    if let Err(d) = ops::call_agent(
                        &svc,
                        &host,
                        ComputeRequest::Destroy { uuid: uuid.clone() },
                        Some(&rid),
                    )
                    .await
                    {
                        tracing::warn!(instance = %uuid, %host, "cleaning the failed guest: {d}");
                    }
                    state.tried.push(host.clone());
                    svc.network.deallocate(&uuid).await?;
                    release_claim(&svc, &uuid).await?;
                    state.host = None;
                    state.node = None;
                    if state.tried.len() >= max {
                        return Err(format!(
                            "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {uuid}. Last error on {host}: {e}"
                        ));
                    }
                    schedule_and_claim(&svc, state)
                        .await
                        .map_err(|m| format!("{m} (after a build failure on {host}: {e})"))?;
                    allocate_network(&svc, &uuid, state.host()).await?;
                }
            }
        }
    }
    async fn undo(&self, ctx: &Ctx, state: &BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        if let Some(host) = &state.host {
            match ops::call_agent(
                &svc,
                host,
                ComputeRequest::Destroy {
                    uuid: state.uuid.clone(),
                },
                None,
            )
            .await
            {
                // A host whose agent is gone holds no guest to remove.
                Ok(_) | Err(ferro_rpc::RpcError::NoAgent(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}

/// The last step checks the guest against its host before the server is
/// ACTIVE: after a restart the step before may have finished on a host
/// that has since lost the guest (a fake driver, a host reboot). A guest
/// that is missing is booted again (spawn is idempotent); one that still
/// cannot be found fails the build, which unwinds to ERROR with a fault.
struct Finish;
#[async_trait::async_trait]
impl TypedStep<Ctx, BuildState> for Finish {
    fn name(&self) -> &'static str {
        "finish"
    }
    async fn run(&self, ctx: &Ctx, state: &mut BuildState) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = state.uuid.clone();
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "finish").await?;
        let host = state.host().to_string();
        let mut ps = host_power_state(&svc, &uuid, &host).await?;
        if ps == PowerState::NoState {
            tracing::warn!(instance = %uuid, %host, "guest missing on its host at the end of the build; booting it again");
            spawn_on_host(&svc, &uuid, &host, &state.request_id, state.acting.as_ref()).await?;
            ps = host_power_state(&svc, &uuid, &host).await?;
            if ps == PowerState::NoState {
                return Err(format!(
                    "The guest of instance {uuid} is not on host {host}."
                ));
            }
        }
        let code = ps.code();
        state.power_state = Some(code);
        svc.state
            .update_instance(&uuid, move |i| {
                i.vm_state = "active".into();
                i.task_state = None;
                i.power_state = code;
                i.launched_at = Some(now());
                Ok(())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    async fn undo(&self, _ctx: &Ctx, _state: &BuildState) -> Result<(), String> {
        Ok(())
    }
}

/// The power state of `uuid` as its host reports it (`NoState`: not there).
async fn host_power_state(
    svc: &ComputeService,
    uuid: &str,
    host: &str,
) -> Result<PowerState, String> {
    ops::call_agent(
        svc,
        host,
        ComputeRequest::PowerState {
            uuid: uuid.to_string(),
        },
        None,
    )
    .await
    .map_err(|e| format!("checking the guest on {host}: {e}"))?
    .power_state()
    .ok_or_else(|| format!("{host} did not report a power state"))
}

/// Starts the build saga of one instance in the background.
pub fn spawn_build(
    svc: &Arc<ComputeService>,
    uuid: String,
    request_id: String,
    acting: Option<Acting>,
) {
    let svc = svc.clone();
    tokio::spawn(async move {
        if let Ok(mut b) = svc.state.active_builds.lock() {
            b.insert(uuid.clone());
        }
        let r = match svc.exec() {
            Ok(ex) => {
                let state = BuildState {
                    uuid: uuid.clone(),
                    request_id: request_id.clone(),
                    acting,
                    ..Default::default()
                };
                ex.run_typed(CREATE, &format!("build-{uuid}"), &state)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(SagaError::Log(e)),
        };
        build_finished(&svc, &uuid, &request_id, r).await;
    });
}

/// After a build saga ended (here or in recovery): ERROR with a fault on
/// failure, and a delete requested meanwhile is carried out.
pub async fn build_finished(
    svc: &Arc<ComputeService>,
    uuid: &str,
    request_id: &str,
    r: Result<(), SagaError>,
) {
    if let Ok(mut b) = svc.state.active_builds.lock() {
        b.remove(uuid);
    }
    let deleting = svc
        .state
        .read()
        .instances
        .get(uuid)
        .is_some_and(|i| i.task_state.as_deref() == Some("deleting"));
    if let Err(e) = &r {
        // Nova records build faults (NoValidHost, reschedules exhausted) as 500.
        let code = 500;
        let msg = match e {
            SagaError::StepFailed { message, .. } => message.clone(),
            other => other.to_string(),
        };
        tracing::warn!(instance = %uuid, "build failed: {msg}");
        let _ = svc
            .state
            .update_instance(uuid, |i| {
                i.vm_state = "error".into();
                if i.task_state.as_deref() != Some("deleting") {
                    i.task_state = None;
                }
                i.power_state = 0;
                i.fault = Some(Fault {
                    code,
                    message: msg.clone(),
                    details: msg.clone(),
                    created: now(),
                });
                Ok(())
            })
            .await;
        if let Some(ex) = svc
            .state
            .read()
            .actions
            .get(uuid)
            .and_then(|l| l.iter().find(|a| a.request_id == request_id))
            .cloned()
        {
            let mut a = ex;
            a.message = Some("Error".into());
            let _ = svc
                .state
                .write(|_| Ok(((), vec![crate::Rec::Action(a)])))
                .await;
        }
    }
    if deleting && let Err(e) = delete_now(svc, uuid, request_id).await {
        tracing::warn!(instance = %uuid, "delete after build failed: {}", e.log_message());
    }
}

/// Deletes an instance: guest, ports, allocations, then the record is
/// marked deleted. Every step is idempotent, so a restart can repeat it.
pub async fn delete_now(
    svc: &Arc<ComputeService>,
    uuid: &str,
    request_id: &str,
) -> Result<(), Error> {
    let inst = svc.state.read().instances.get(uuid).cloned();
    let Some(inst) = inst else {
        return Ok(());
    };
    inject(svc, "delete").await.map_err(Error::internal)?;
    if let Some(host) = &inst.host {
        ops::event(
            svc,
            uuid,
            request_id,
            "compute_terminate_instance",
            Some(host),
            None,
        )
        .await;
        let r = ops::call_agent(
            svc,
            host,
            ComputeRequest::Destroy {
                uuid: uuid.to_string(),
            },
            Some(request_id),
        )
        .await;
        if let Err(e) = &r {
            // A host that is gone cannot hold the guest: delete locally, as Nova does.
            tracing::warn!(instance = %uuid, %host, "destroy on host failed ({e}); deleting locally");
        }
        ops::event(
            svc,
            uuid,
            request_id,
            "compute_terminate_instance",
            Some(host),
            Some(Ok(())),
        )
        .await;
    }
    crate::volumes::release_all(svc, uuid, request_id)
        .await
        .map_err(Error::internal)?;
    svc.network
        .deallocate(uuid)
        .await
        .map_err(Error::internal)?;
    svc.placement.delete_allocations(uuid).await?;
    svc.state
        .write(|st| {
            let Some(mut i) = st.instances.get(uuid).cloned() else {
                return Ok(((), vec![]));
            };
            let t = now();
            i.deleted = true;
            i.vm_state = "deleted".into();
            i.task_state = None;
            i.power_state = 0;
            i.deleted_at = Some(t.clone());
            i.terminated_at = Some(t.clone());
            i.updated_at = t;
            let mut recs = Vec::new();
            if let Some(g) = i.server_group.as_ref().and_then(|g| st.groups.get(g)) {
                let mut g = g.clone();
                g.members.retain(|m| m != uuid);
                recs.push(crate::Rec::Group(g));
            }
            recs.push(crate::Rec::Instance(Box::new(i)));
            Ok(((), recs))
        })
        .await
}

/// Drives every unfinished build saga and applies its outcome (start-up).
pub async fn recover_builds(svc: &Arc<ComputeService>) {
    let Ok(ex) = svc.exec() else { return };
    match ex.recover().await {
        Ok(done) => {
            for (id, r) in done {
                if id.starts_with(crate::volumes::ATTACH) || id.starts_with(crate::volumes::DETACH)
                {
                    // Unwound or finished by the executor itself.
                    tracing::info!(saga = %id, ok = r.is_ok(), "volume saga recovered");
                    continue;
                }
                let uuid = id.strip_prefix("build-").unwrap_or(&id).to_string();
                tracing::info!(saga = %id, ok = r.is_ok(), "build saga recovered");
                build_finished(svc, &uuid, "req-recovery", r.map(|_| ())).await;
            }
        }
        Err(e) => tracing::error!("saga recovery failed: {e}"),
    }
}

/// Schedules and claims for an existing instance outside the build saga (unshelve).
pub async fn claim_for(svc: &Arc<ComputeService>, state: &mut BuildState) -> Result<(), String> {
    schedule_and_claim(svc, state).await
}

/// After sagas are recovered: nothing may stay in a transient state that
/// no worker owns any more.
pub async fn clear_stale_tasks(svc: &Arc<ComputeService>) -> Result<(), Error> {
    let st = svc.state.read();
    let stale: Vec<String> = st
        .instances
        .values()
        .filter(|i| !i.deleted && (i.task_state.is_some() || i.vm_state == "building"))
        // What this process started since is owned by its workers.
        .filter(|i| i.updated_at < svc.started_at)
        .map(|i| i.uuid.clone())
        .collect();
    drop(st);
    for uuid in stale {
        let deleting = svc
            .state
            .read()
            .instances
            .get(&uuid)
            .is_some_and(|i| i.task_state.as_deref() == Some("deleting"));
        if deleting {
            // Finish the delete the previous process started.
            if let Err(e) = delete_now(svc, &uuid, "req-recovery").await {
                tracing::warn!(instance = %uuid, "delete on recovery failed: {}", e.log_message());
            }
            continue;
        }
        svc.state
            .update_instance(&uuid, |i| {
                if i.vm_state == "building" {
                    i.vm_state = "error".into();
                    i.fault = Some(Fault {
                        code: 500,
                        message: "The build was interrupted by a restart of the service.".into(),
                        details: String::new(),
                        created: now(),
                    });
                }
                tracing::info!(instance = %i.uuid, task = ?i.task_state, "clearing task state left by a previous process");
                i.task_state = None;
                Ok(())
            })
            .await?;
    }
    Ok(())
}
