//! The server-create saga (DESIGN.md §5) and the delete workflow.
//! Steps: schedule (Placement candidates, filters, weighers, claim) ->
//! network -> block_devices -> spawn (rescheduling to another host on a
//! driver failure, up to `max_attempts`) -> finish. Each step's undo
//! releases what it took; the saga's progress is in the saga log, so a
//! restarted process resumes or unwinds it.
use crate::ComputeService;
use crate::model::Fault;
use crate::ops;
use crate::state::now;
use ferro_common::Error;
use ferro_placement::{AllocMap, CandidateQuery};
use ferro_saga::{DbSagaLog, Executor, SagaDef, SagaError, Step};
use ferro_scheduler::{GroupSpec, RequestSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

pub const CREATE: &str = "server_create";

pub struct Ctx {
    svc: Weak<ComputeService>,
}

impl Ctx {
    pub(crate) fn svc(&self) -> Result<Arc<ComputeService>, String> {
        self.svc
            .upgrade()
            .ok_or_else(|| "compute service stopped".to_string())
    }
}

pub fn executor(svc: Arc<ComputeService>) -> Executor<Ctx> {
    let log = Arc::new(DbSagaLog { db: svc.db.clone() });
    let mut ex = Executor::new(
        log,
        Arc::new(Ctx {
            svc: Arc::downgrade(&svc),
        }),
    );
    ex.register(SagaDef {
        name: CREATE,
        steps: vec![
            Box::new(Schedule),
            Box::new(Network),
            Box::new(BlockDevices),
            Box::new(Spawn),
            Box::new(Finish),
        ],
    });
    crate::volumes::register(&mut ex);
    ex
}

/// The test hook: fail or hang at a named step.
pub(crate) async fn inject(svc: &ComputeService, step: &str) -> Result<(), String> {
    let Some(spec) = svc.cfg.compute.fault_injection.as_deref() else {
        return Ok(());
    };
    for item in spec.split(',') {
        match item.trim().split_once(':') {
            Some((s, "fail")) if s == step => {
                return Err(format!("injected failure at {step}"));
            }
            Some((s, "hang")) if s == step => {
                tracing::warn!(step, "fault injection: hanging (kill the process now)");
                std::future::pending::<()>().await;
            }
            _ => {}
        }
    }
    Ok(())
}

fn uuid_of(state: &Value) -> String {
    state["uuid"].as_str().unwrap_or_default().to_string()
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
async fn schedule_and_claim(svc: &ComputeService, state: &mut Value) -> Result<(), String> {
    // One placement decision at a time, as Nova's scheduler makes them: each
    // sees the claims before it, so concurrent builds spread like a
    // multi-instance request does.
    let _one = svc.state.sched_lock.lock().await;
    let uuid = uuid_of(state);
    let st = svc.state.read();
    let inst = st
        .instances
        .get(&uuid)
        .cloned()
        .ok_or("instance vanished")?;
    let tried: Vec<String> = state["tried"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
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
                state["host"] = json!(h.host);
                state["node"] = json!(h.node);
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
    let hosts: Vec<(String, Option<String>, Option<ferro_virt::HostResources>)> = {
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
                (Some(_), Some(r)) => ops::capacity(svc, r, rc),
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
impl Step<Ctx> for Schedule {
    fn name(&self) -> &'static str {
        "schedule"
    }
    async fn run(&self, ctx: &Ctx, state: &mut Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = uuid_of(state);
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "schedule").await?;
        ops::event(
            &svc,
            &uuid,
            state["request_id"].as_str().unwrap_or(""),
            "conductor_schedule_and_build_instances",
            None,
            None,
        )
        .await;
        let r = schedule_and_claim(&svc, state).await;
        ops::event(
            &svc,
            &uuid,
            state["request_id"].as_str().unwrap_or(""),
            "conductor_schedule_and_build_instances",
            None,
            Some(r.clone()),
        )
        .await;
        r?;
        set_task(&svc, &uuid, Some("networking")).await
    }
    async fn undo(&self, ctx: &Ctx, state: &Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        release_claim(&svc, &uuid_of(state)).await
    }
}

struct Network;
#[async_trait::async_trait]
impl Step<Ctx> for Network {
    fn name(&self) -> &'static str {
        "network"
    }
    async fn run(&self, ctx: &Ctx, state: &mut Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = uuid_of(state);
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "network").await?;
        let (project, requested, sgs) = {
            let st = svc.state.read();
            let i = st.instances.get(&uuid).ok_or("instance vanished")?;
            (
                i.project_id.clone(),
                i.requested_networks.clone(),
                i.security_groups.clone(),
            )
        };
        let host = state["host"].as_str().unwrap_or_default().to_string();
        let addrs = svc
            .network
            .allocate(&uuid, &project, &host, &requested, &sgs)
            .await?;
        svc.state
            .update_instance(&uuid, move |i| {
                i.addresses = addrs.into_iter().collect();
                if i.task_state.as_deref() != Some("deleting") {
                    i.task_state = Some("block_device_mapping".into());
                }
                Ok(())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    async fn undo(&self, ctx: &Ctx, state: &Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        svc.network.deallocate(&uuid_of(state)).await
    }
}

struct BlockDevices;
#[async_trait::async_trait]
impl Step<Ctx> for BlockDevices {
    fn name(&self) -> &'static str {
        "block_devices"
    }
    async fn run(&self, ctx: &Ctx, state: &mut Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = uuid_of(state);
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "block_devices").await?;
        crate::volumes::prepare_block_devices(&svc, state).await?;
        set_task(&svc, &uuid, Some("spawning")).await
    }
    async fn undo(&self, ctx: &Ctx, state: &Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        crate::volumes::unprepare_block_devices(&svc, &uuid_of(state)).await
    }
}

struct Spawn;
#[async_trait::async_trait]
impl Step<Ctx> for Spawn {
    fn name(&self) -> &'static str {
        "spawn"
    }
    async fn run(&self, ctx: &Ctx, state: &mut Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = uuid_of(state);
        let rid = state["request_id"].as_str().unwrap_or("").to_string();
        let max = svc.cfg.compute.max_attempts.max(1) as usize;
        loop {
            check_not_deleting(&svc, &uuid)?;
            inject(&svc, "spawn").await?;
            let host = state["host"].as_str().unwrap_or_default().to_string();
            let spec = {
                let st = svc.state.read();
                ops::guest_spec(st.instances.get(&uuid).ok_or("instance vanished")?)
            };
            ops::event(
                &svc,
                &uuid,
                &rid,
                "compute_build_and_run_instance",
                Some(&host),
                None,
            )
            .await;
            let r = ops::call_agent(
                &svc,
                &host,
                "spawn",
                json!({"uuid": uuid, "spec": spec}),
                Some(&rid),
            )
            .await;
            ops::event(
                &svc,
                &uuid,
                &rid,
                "compute_build_and_run_instance",
                Some(&host),
                Some(r.as_ref().map(|_| ()).map_err(Clone::clone)),
            )
            .await;
            match r {
                Ok(v) => {
                    state["power_state"] = v.get("power_state").cloned().unwrap_or(json!(1));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(instance = %uuid, %host, "spawn failed: {e}; rescheduling");
                    let _ =
                        ops::call_agent(&svc, &host, "destroy", json!({"uuid": uuid}), Some(&rid))
                            .await;
                    let mut tried: Vec<Value> =
                        state["tried"].as_array().cloned().unwrap_or_default();
                    tried.push(json!(host));
                    state["tried"] = json!(tried);
                    svc.network.deallocate(&uuid).await?;
                    release_claim(&svc, &uuid).await?;
                    if tried.len() >= max {
                        return Err(format!(
                            "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {uuid}. Last error on {host}: {e}"
                        ));
                    }
                    schedule_and_claim(&svc, state)
                        .await
                        .map_err(|m| format!("{m} (after a build failure on {host}: {e})"))?;
                    let (project, requested, sgs) = {
                        let st = svc.state.read();
                        let i = st.instances.get(&uuid).ok_or("instance vanished")?;
                        (
                            i.project_id.clone(),
                            i.requested_networks.clone(),
                            i.security_groups.clone(),
                        )
                    };
                    let new_host = state["host"].as_str().unwrap_or_default().to_string();
                    svc.network
                        .allocate(&uuid, &project, &new_host, &requested, &sgs)
                        .await?;
                }
            }
        }
    }
    async fn undo(&self, ctx: &Ctx, state: &Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        if let Some(host) = state["host"].as_str() {
            ops::call_agent(&svc, host, "destroy", json!({"uuid": uuid_of(state)}), None)
                .await
                .map(|_| ())
                .or_else(|e| {
                    if e.contains("no consumer") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }
        Ok(())
    }
}

struct Finish;
#[async_trait::async_trait]
impl Step<Ctx> for Finish {
    fn name(&self) -> &'static str {
        "finish"
    }
    async fn run(&self, ctx: &Ctx, state: &mut Value) -> Result<(), String> {
        let svc = ctx.svc()?;
        let uuid = uuid_of(state);
        check_not_deleting(&svc, &uuid)?;
        inject(&svc, "finish").await?;
        let ps = state["power_state"].as_i64().unwrap_or(1);
        svc.state
            .update_instance(&uuid, move |i| {
                i.vm_state = "active".into();
                i.task_state = None;
                i.power_state = ps;
                i.launched_at = Some(now());
                Ok(())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    async fn undo(&self, _ctx: &Ctx, _state: &Value) -> Result<(), String> {
        Ok(())
    }
}

/// Starts the build saga of one instance in the background.
pub fn spawn_build(
    svc: &Arc<ComputeService>,
    uuid: String,
    request_id: String,
    token: Option<String>,
) {
    let svc = svc.clone();
    tokio::spawn(async move {
        if let Ok(mut b) = svc.state.active_builds.lock() {
            b.insert(uuid.clone());
        }
        let r = match svc.exec() {
            Ok(ex) => {
                ex.run(
                    CREATE,
                    &format!("build-{uuid}"),
                    json!({"uuid": uuid, "request_id": request_id, "tried": [], "token": token}),
                )
                .await
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
    r: Result<Value, SagaError>,
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
            "destroy",
            json!({"uuid": uuid}),
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
                build_finished(svc, &uuid, "req-recovery", r).await;
            }
        }
        Err(e) => tracing::error!("saga recovery failed: {e}"),
    }
}

/// Schedules and claims for an existing instance outside the build saga (unshelve).
pub async fn claim_for(svc: &Arc<ComputeService>, state: &mut Value) -> Result<(), String> {
    schedule_and_claim(svc, state).await
}
