//! The conductor's side of compute: agents' heartbeats and registration
//! in Placement, calls to agents, instance actions and their events,
//! quotas, and the host view the scheduler filters.
use crate::ComputeService;
use crate::model::*;
use crate::placement::Inventory;
use crate::state::{Rec, State, now};
use ferro_common::Error;
use ferro_rpc::RpcError;
use ferro_rpc::compute::{
    Adoption, AgentReport, CONDUCTOR_TOPIC, ComputeClient, ComputeReply, ComputeRequest,
    ConductorMessage, DiskKind, DiskSpec, GuestSpec, HostResources, ImageAccess, ImageDestination,
    PowerState, Registration, VifSpec,
};
use ferro_scheduler::HostState;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_QUOTAS: &[(&str, i64)] = &[
    ("instances", 10),
    ("cores", 20),
    ("ram", 51200),
    ("metadata_items", 128),
    ("key_pairs", 100),
    ("server_groups", 10),
    ("server_group_members", 10),
    ("injected_files", 5),
    ("injected_file_content_bytes", 10240),
    ("injected_file_path_bytes", 255),
    ("floating_ips", -1),
    ("fixed_ips", -1),
    ("security_groups", -1),
    ("security_group_rules", -1),
];

/// Subscribes to agents' heartbeats.
pub async fn start_conductor(svc: Arc<ComputeService>) -> Result<(), Error> {
    let host = svc.cfg.compute.host_name();
    let mut sub = svc
        .bus
        .serve(CONDUCTOR_TOPIC, &host)
        .await
        .map_err(|e| Error::internal(format!("conductor subscribe: {e}")))?;
    tokio::spawn(async move {
        let registered = tokio::sync::Mutex::new(Registered::new());
        while let Some(msg) = sub.next().await {
            match ConductorMessage::from_envelope(&msg.envelope, "a compute agent") {
                Ok(ConductorMessage::Report(report)) => {
                    match handle_report(&svc, &report, &registered, false).await {
                        Ok(adopt) => hand_back(&svc, &report.host, adopt).await,
                        Err(e) => tracing::warn!(
                            "heartbeat from {} not recorded: {}",
                            report.host,
                            e.log_message()
                        ),
                    }
                }
                Ok(ConductorMessage::Register(report)) => {
                    let r = handle_report(&svc, &report, &registered, true).await;
                    let answer = match r {
                        Ok(adopt) => {
                            tracing::info!(host = %report.host, guests = adopt.len(), "compute agent registered");
                            serde_json::to_value(Registration { adopt }).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e.log_message()),
                    };
                    msg.reply(answer).await;
                    continue;
                }
                // An agent of another release: say why it is not used.
                Err(e) => tracing::error!(
                    "message from an agent refused ({}): {e}",
                    msg.envelope.args["host"].as_str().unwrap_or("unknown host")
                ),
            }
            msg.reply(Ok(Value::Null)).await;
        }
    });
    Ok(())
}

/// The hosts whose agents reported since this controller started, with
/// the inventories last given to Placement for each.
type Registered = HashMap<String, BTreeMap<String, Inventory>>;

/// The guests placed on `host` that hold memory there (not deleted, not
/// shelved and offloaded), counted only when its driver reports a per-guest
/// overhead (the count only multiplies it; a host without one needs no scan).
pub fn guests_on(svc: &ComputeService, host: &str, r: &HostResources) -> u64 {
    if r.guest_memory_overhead_mb == 0 {
        return 0;
    }
    svc.state
        .read()
        .live()
        .filter(|i| i.host.as_deref() == Some(host) && !i.vm_state.starts_with("shelved_offloaded"))
        .count() as u64
}

/// What a host offers Placement: its CPUs, its memory less the configured
/// reservation and QEMU's overhead for each of its `guests` (Nova's
/// overhead estimate, kept out of the flavor's allocation), its disk.
fn inventories(
    svc: &ComputeService,
    r: &HostResources,
    guests: u64,
) -> BTreeMap<String, Inventory> {
    let c = &svc.cfg.compute;
    let inv = |total: u64, reserved: u64, ratio: f64| Inventory {
        total,
        reserved: reserved.min(total),
        min_unit: 1,
        max_unit: total.max(1),
        step_size: 1,
        allocation_ratio: ratio,
    };
    BTreeMap::from([
        (
            "VCPU".to_string(),
            inv(u64::from(r.vcpus), 0, c.cpu_allocation_ratio),
        ),
        (
            "MEMORY_MB".to_string(),
            inv(
                r.memory_mb,
                c.reserved_host_memory_mb + r.guest_memory_overhead_mb * guests,
                c.ram_allocation_ratio,
            ),
        ),
        (
            "DISK_GB".to_string(),
            inv(
                r.local_gb,
                c.reserved_host_disk_mb / 1024,
                c.disk_allocation_ratio,
            ),
        ),
    ])
}

/// Schedulable capacity of one resource class on a host.
pub fn capacity(svc: &ComputeService, r: &HostResources, rc: &str, guests: u64) -> u64 {
    inventories(svc, r, guests)
        .get(rc)
        .map(|i| ((i.total - i.reserved) as f64 * i.allocation_ratio) as u64)
        .unwrap_or(0)
}

/// Records a host's heartbeat. The first one this controller hears from a
/// host, and any from an agent that is `starting`, also (re)register the
/// host with Placement and return the guests the host must take back.
async fn handle_report(
    svc: &Arc<ComputeService>,
    report: &AgentReport,
    registered: &tokio::sync::Mutex<Registered>,
    starting: bool,
) -> Result<Vec<Adoption>, Error> {
    let host = report.host.clone();
    if host.is_empty() {
        return Ok(vec![]);
    }
    let resources = Some(report.resources.clone());
    if let Ok(mut hb) = svc.state.heartbeats.lock() {
        hb.insert(host.clone(), Instant::now());
    }
    let mut reg = registered.lock().await;
    let rec = svc
        .state
        .write(|st| {
            let existing = st
                .services
                .values()
                .find(|s| s.binary == "nova-compute" && s.host == host)
                .cloned();
            let mut s = match existing {
                Some(s) if s.resources == resources && s.node_uuid.is_some() => {
                    return Ok((s, vec![]));
                }
                Some(s) => s,
                None => {
                    let id = st.next_service_id(&[]);
                    ServiceRec {
                        id,
                        uuid: ferro_common::new_uuid(),
                        host: host.clone(),
                        binary: "nova-compute".into(),
                        disabled: false,
                        disabled_reason: None,
                        forced_down: false,
                        created_at: now(),
                        updated_at: None,
                        node_uuid: None,
                        node_id: id,
                        resources: None,
                    }
                }
            };
            if s.node_uuid.is_none() {
                s.node_uuid = Some(ferro_common::new_uuid());
            }
            s.resources = resources.clone();
            s.updated_at = Some(now());
            Ok((s.clone(), vec![Rec::Service(s)]))
        })
        .await?;
    if reg.contains_key(&host) && !starting {
        // Placement follows the host's guests (their QEMU overhead).
        if let (Some(node), Some(r)) = (&rec.node_uuid, &rec.resources) {
            let inv = inventories(svc, r, guests_on(svc, &host, r));
            if reg.get(&host) != Some(&inv) {
                svc.placement
                    .ensure_provider(node, &host, inv.clone(), vec!["COMPUTE_NODE".into()])
                    .await?;
                reg.insert(host.clone(), inv);
            }
        }
        drop(reg);
        sync_power_states(svc, &host, &report.power_states).await;
        reap_deleted(svc, &host, &report.instances).await;
        return Ok(vec![]);
    }
    let mut pushed = BTreeMap::new();
    {
        if let (Some(node), Some(r)) = (&rec.node_uuid, &rec.resources) {
            pushed = inventories(svc, r, guests_on(svc, &host, r));
            svc.placement
                .ensure_provider(node, &host, pushed.clone(), vec!["COMPUTE_NODE".into()])
                .await?;
            let aggs: Vec<String> = svc
                .state
                .read()
                .aggregates
                .values()
                .filter(|a| a.hosts.contains(&host))
                .map(|a| a.uuid.clone())
                .collect();
            if !aggs.is_empty() {
                svc.placement.set_provider_aggregates(node, aggs).await?;
            }
        }
        reg.insert(host.clone(), pushed);
        drop(reg);
        // A restarted agent forgot its guests (the fake driver keeps none
        // on disk): hand back the ones the database says run there.
        // With `resume_guests_state_on_host_boot`, guests that ran before
        // the host went down (the agent finds them stopped) start again.
        let known: HashSet<&String> = report.instances.iter().collect();
        let resume = svc.cfg.compute.resume_guests_state_on_host_boot;
        let adopt: Vec<(GuestSpec, PowerState)> = {
            let st = svc.state.read();
            st.live()
                .filter(|i| i.host.as_deref() == Some(host.as_str()))
                .filter(|i| {
                    if i.vm_state == "building" || i.vm_state.starts_with("shelved_offloaded") {
                        return false;
                    }
                    if !known.contains(&i.uuid) {
                        return true;
                    }
                    resume
                        && i.vm_state == "active"
                        && i.task_state.is_none()
                        && i.power_state == PowerState::Running.code()
                        && report.power_states.get(&i.uuid) == Some(&PowerState::Shutdown)
                })
                .map(|i| {
                    let ps = match PowerState::from_code(i.power_state) {
                        p @ (PowerState::Running | PowerState::Paused | PowerState::Suspended) => p,
                        _ => PowerState::Shutdown,
                    };
                    (guest_spec(svc, i), ps)
                })
                .collect()
        };
        Ok(adopt
            .into_iter()
            .map(|(spec, power_state)| Adoption { spec, power_state })
            .collect())
    }
}

/// Hands guests back to a host whose agent is already serving (this
/// controller restarted, the agent did not): one `Adopt` each.
async fn hand_back(svc: &Arc<ComputeService>, host: &str, adopt: Vec<Adoption>) {
    for Adoption { spec, power_state } in adopt {
        let uuid = spec.uuid.clone();
        if let Err(e) =
            call_agent(svc, host, ComputeRequest::Adopt { spec, power_state }, None).await
        {
            tracing::warn!(instance = %uuid, %host, "guest not handed back to its host: {e}");
        }
    }
}

/// Nova's `_cleanup_running_deleted_instances`: a guest still on its host
/// after its instance was deleted (the host was down at the time, or the
/// destroy failed) is reaped, shut down, or logged, as
/// `running_deleted_instance_action` says, once deleted for
/// `running_deleted_instance_timeout` seconds.
async fn reap_deleted(svc: &Arc<ComputeService>, host: &str, reported: &[String]) {
    let c = &svc.cfg.compute;
    let action = c.running_deleted_instance_action.as_str();
    if action == "noop" {
        return;
    }
    let cutoff = (chrono::Utc::now()
        - chrono::Duration::seconds(c.running_deleted_instance_timeout as i64))
    .format("%Y-%m-%dT%H:%M:%S%.6f")
    .to_string();
    let orphans: Vec<String> = {
        let st = svc.state.read();
        reported
            .iter()
            .filter(|u| {
                st.instances.get(*u).is_some_and(|i| {
                    i.deleted
                        && i.host.as_deref() == Some(host)
                        && i.deleted_at
                            .as_deref()
                            .is_some_and(|d| d <= cutoff.as_str())
                })
            })
            .cloned()
            .collect()
    };
    for uuid in orphans {
        let req = match action {
            "reap" => ComputeRequest::Destroy { uuid: uuid.clone() },
            "shutdown" => ComputeRequest::PowerOff { uuid: uuid.clone() },
            _ => {
                tracing::warn!(instance = %uuid, %host, "a deleted instance's guest is still on its host (running_deleted_instance_action = log)");
                continue;
            }
        };
        tracing::warn!(instance = %uuid, %host, action, "a deleted instance's guest is still on its host");
        if let Err(e) = call_agent(svc, host, req, None).await {
            tracing::warn!(instance = %uuid, %host, "cleaning up a deleted instance's guest: {e}");
        }
    }
}

/// Nova's `_sync_power_states`: the hypervisor is the truth for power; an
/// instance with no task whose guest stopped (or vanished) is recorded as
/// stopped; one found running while recorded stopped only gets its power
/// state updated (upstream's default leaves such guests alone).
async fn sync_power_states(
    svc: &Arc<ComputeService>,
    host: &str,
    map: &BTreeMap<String, PowerState>,
) {
    // A report may have been taken before an action that finished since:
    // leave instances changed in the last two report intervals alone.
    let settle = chrono::Duration::seconds(2 * svc.cfg.compute.report_interval.max(1) as i64 + 2);
    let cutoff = (chrono::Utc::now() - settle)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let st = svc.state.read();
    let mut changes: Vec<(String, i64)> = Vec::new();
    for i in st.live().filter(|i| {
        i.host.as_deref() == Some(host) && i.task_state.is_none() && i.updated_at < cutoff
    }) {
        if matches!(
            i.vm_state.as_str(),
            "building" | "shelved_offloaded" | "error"
        ) {
            continue;
        }
        let ps = map.get(&i.uuid).map_or(0, |p| p.code());
        if ps != i.power_state {
            changes.push((i.uuid.clone(), ps));
        }
    }
    drop(st);
    for (uuid, ps) in changes {
        let r = svc
            .state
            .update_instance(&uuid, move |i| {
                if i.task_state.is_some() {
                    return Ok(());
                }
                tracing::info!(instance = %i.uuid, from = i.power_state, to = ps, "power state sync");
                i.power_state = ps;
                if i.vm_state == "active" && matches!(ps, 0 | 4 | 6) {
                    i.vm_state = "stopped".into();
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(instance = %uuid, "power state sync failed: {}", e.log_message());
        }
    }
}

/// Is a host's nova-compute up (heard from recently and not forced down)?
pub fn service_up(svc: &ComputeService, s: &ServiceRec) -> bool {
    if s.forced_down {
        return false;
    }
    if s.binary != "nova-compute" {
        return true;
    }
    let limit = Duration::from_secs(svc.cfg.compute.service_down_time.max(1));
    svc.state
        .heartbeats
        .lock()
        .ok()
        .and_then(|hb| hb.get(&s.host).map(|t| t.elapsed() < limit))
        .unwrap_or(false)
}

/// The instance's ports as its hypervisor plugs them (the image's
/// `hw_vif_model` for each NIC).
pub fn vif_specs(svc: &ComputeService, i: &Instance) -> Vec<VifSpec> {
    in_requested_order(svc.network.vifs(&i.uuid), &i.requested_networks)
        .into_iter()
        .map(|v| VifSpec {
            tap_name: VifSpec::tap_name_for(&v.port_id),
            mac_address: v.mac_address,
            network_id: v.network_id,
            mtu: v.mtu,
            fixed_ips: v.fixed_ips,
            model: i.image_properties.get("hw_vif_model").cloned(),
            tag: i.vif_tags.get(&v.port_id).cloned(),
            port_id: v.port_id,
        })
        .collect()
}

/// The guest's NICs in the order the server was asked for them, as Nova's
/// network_info keeps them (a guest's first NIC is the first network or port
/// requested): a requested port where it was named, a requested network's
/// ports in turn (the one with the requested fixed IP first); ports attached
/// later follow, oldest first (the order `vifs` lists them in).
pub fn in_requested_order(vifs: Vec<crate::Vif>, requested: &Value) -> Vec<crate::Vif> {
    with_requests(vifs, requested)
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

/// The guest's NICs in requested order, each with the entry of `networks`
/// it answers (none for a port attached later).
pub fn with_requests(vifs: Vec<crate::Vif>, requested: &Value) -> Vec<(crate::Vif, Option<Value>)> {
    let Some(reqs) = requested.as_array() else {
        return vifs.into_iter().map(|v| (v, None)).collect();
    };
    let named: Vec<&str> = reqs.iter().filter_map(|r| r["port"].as_str()).collect();
    // A port with an address another entry asked for is that entry's.
    let asked: Vec<&str> = reqs.iter().filter_map(|r| r["fixed_ip"].as_str()).collect();
    let mut left: Vec<Option<crate::Vif>> = vifs.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(left.len());
    for r in reqs {
        let pick = if let Some(port) = r["port"].as_str() {
            left.iter()
                .position(|v| v.as_ref().is_some_and(|v| v.port_id == port))
        } else if let Some(net) = r["uuid"].as_str() {
            let on_net =
                |v: &crate::Vif| v.network_id == net && !named.contains(&v.port_id.as_str());
            let has = |v: &crate::Vif, ip: &str| v.fixed_ips.iter().any(|x| x == ip);
            match r["fixed_ip"].as_str() {
                Some(ip) => left
                    .iter()
                    .position(|v| v.as_ref().is_some_and(|v| on_net(v) && has(v, ip))),
                None => left.iter().position(|v| {
                    v.as_ref()
                        .is_some_and(|v| on_net(v) && !asked.iter().any(|ip| has(v, ip)))
                }),
            }
            .or_else(|| left.iter().position(|v| v.as_ref().is_some_and(on_net)))
        } else {
            None
        };
        if let Some(n) = pick
            && let Some(v) = left[n].take()
        {
            out.push((v, Some(r.clone())));
        }
    }
    out.extend(left.into_iter().flatten().map(|v| (v, None)));
    out
}

/// The device role tags of the ports a build bound, by port (the `tag`
/// of the `networks` entry each port answers).
pub fn requested_tags(vifs: Vec<crate::Vif>, requested: &Value) -> BTreeMap<String, String> {
    with_requests(vifs, requested)
        .into_iter()
        .filter_map(|(v, r)| {
            let tag = r?.get("tag")?.as_str()?.to_string();
            Some((v.port_id, tag))
        })
        .collect()
}

/// What the host's driver boots: the flavor, the image, the ports the
/// build bound (as VIFs) and the disks (local ones from the flavor, volumes
/// from the block device mappings).
pub fn guest_spec(svc: &ComputeService, i: &Instance) -> GuestSpec {
    let vifs = vif_specs(svc, i);
    let bus = i.image_properties.get("hw_disk_bus").cloned();
    let local = |kind, size| DiskSpec {
        kind,
        device_name: None,
        bus: bus.clone(),
        boot_index: None,
        size,
        image_id: None,
        volume_id: None,
        connection_info: None,
        delete_on_termination: true,
        tag: None,
    };
    let mut disks = Vec::new();
    if !i.image_ref.is_empty() {
        disks.push(DiskSpec {
            boot_index: Some(0),
            image_id: Some(i.image_ref.clone()),
            ..local(DiskKind::Root, i.flavor.disk)
        });
    }
    if i.flavor.ephemeral > 0 {
        disks.push(local(DiskKind::Ephemeral, i.flavor.ephemeral));
    }
    if i.flavor.swap > 0 {
        disks.push(local(DiskKind::Swap, i.flavor.swap));
    }
    for b in i.bdms.iter().filter(|b| b.destination_type == "volume") {
        disks.push(DiskSpec {
            kind: DiskKind::Volume,
            device_name: b.device_name.clone(),
            bus: bus.clone(),
            boot_index: b.boot_index,
            size: b.volume_size.unwrap_or(0),
            image_id: None,
            volume_id: b.volume_id.clone().or_else(|| b.uuid.clone()),
            connection_info: b.connection_info.clone(),
            delete_on_termination: b.delete_on_termination,
            tag: b.tag.clone(),
        });
    }
    GuestSpec {
        vifs,
        disks,
        uuid: i.uuid.clone(),
        name: i.name.clone(),
        vcpus: i.flavor.vcpus,
        memory_mb: i.flavor.ram,
        root_gb: i.flavor.disk,
        ephemeral_gb: i.flavor.ephemeral,
        swap_mb: i.flavor.swap,
        image_id: (!i.image_ref.is_empty()).then(|| i.image_ref.clone()),
        user_data: i.user_data.clone(),
        key_data: i.key_data.clone(),
        project_id: i.project_id.clone(),
        // Nova's metadata `_get_hostname`: the hostname and `dhcp_domain`.
        hostname: match svc.cfg.compute.dhcp_domain.as_str() {
            "" => i.hostname.clone(),
            d => format!("{}.{d}", i.hostname),
        },
        key_name: i.key_name.clone(),
        metadata: i.metadata.clone(),
        availability_zone: i.availability_zone.clone(),
        launch_index: i.launch_index,
        config_drive: i.config_drive || svc.cfg.compute.force_config_drive,
        image_properties: i.image_properties.clone(),
        flavor_extra_specs: i.flavor.extra_specs.clone(),
        start_paused: false,
    }
}

/// Whom work on an instance acts for when no request says: its owner
/// (Nova's service token on behalf of the instance's user and project).
pub fn owner(i: &Instance) -> ferro_auth::Acting {
    ferro_auth::Acting {
        user_id: i.user_id.clone(),
        project_id: Some(i.project_id.clone()),
        system: false,
    }
}

/// How a host downloads the images it has not cached: the Image service's
/// URL and a token minted now for `acting` (it travels in the request and
/// is never stored). None (and a warning) when no token can be minted; a
/// host that has the images cached still boots.
pub async fn image_access(
    svc: &ComputeService,
    acting: &ferro_auth::Acting,
) -> Option<ImageAccess> {
    match svc.validator.token_for(acting).await {
        Ok(token) => Some(ImageAccess {
            endpoint: format!("{}/image", svc.cfg.public_url()),
            token,
        }),
        Err(e) => {
            tracing::warn!(user = %acting.user_id, "no token for image downloads: {e}");
            None
        }
    }
}

/// `Spawn` of `spec`, with image access for `acting`.
pub async fn spawn_request(
    svc: &ComputeService,
    spec: GuestSpec,
    acting: &ferro_auth::Acting,
) -> ComputeRequest {
    ComputeRequest::Spawn {
        images: image_access(svc, acting).await,
        spec,
    }
}

/// Where a host streams a snapshot: the Image service's URL and a token
/// minted now for the user (it travels in the request, is never stored).
pub async fn image_destination(
    svc: &ComputeService,
    image_id: &str,
    acting: &ferro_auth::Acting,
) -> Result<ImageDestination, String> {
    Ok(ImageDestination {
        image_id: image_id.to_string(),
        endpoint: format!("{}/image", svc.cfg.public_url()),
        token: svc
            .validator
            .token_for(acting)
            .await
            .map_err(|e| e.to_string())?,
    })
}

/// Sends `req` to `host`'s compute agent and waits for its typed answer:
/// `rpc_response_timeout` for a query, `long_rpc_timeout` for an action
/// that may take long (a 4 GiB snapshot takes about a minute here).
pub async fn call_agent(
    svc: &ComputeService,
    host: &str,
    req: ComputeRequest,
    request_id: Option<&str>,
) -> Result<ComputeReply, RpcError> {
    let c = &svc.cfg.compute;
    let secs = if req.long_running() {
        c.long_rpc_timeout.max(c.rpc_response_timeout)
    } else {
        c.rpc_response_timeout
    };
    ComputeClient::new(svc.bus.clone(), Duration::from_secs(secs.max(1)))
        .call(host, &req, request_id)
        .await
}

/// A new instance action (what `os-instance-actions` lists).
pub fn new_action(
    st: &State,
    pending: &[Rec],
    i: &Instance,
    action: &str,
    request_id: &str,
    user: &str,
    project: &str,
) -> InstanceAction {
    let t = now();
    InstanceAction {
        instance_uuid: i.uuid.clone(),
        request_id: request_id.to_string(),
        action: action.to_string(),
        user_id: user.to_string(),
        project_id: project.to_string(),
        start_time: t.clone(),
        message: None,
        events: vec![],
        updated_at: t,
        seq: st.next_seq(pending),
    }
}

/// Records an event start (`compute_<action>`) on an action.
pub async fn event(
    svc: &ComputeService,
    uuid: &str,
    request_id: &str,
    name: &str,
    host: Option<&str>,
    result: Option<Result<(), String>>,
) {
    let r = svc
        .state
        .write(|st| {
            let Some(mut a) = st
                .actions
                .get(uuid)
                .and_then(|l| l.iter().find(|a| a.request_id == request_id))
                .cloned()
            else {
                return Ok(((), vec![]));
            };
            let t = now();
            match result {
                None => a.events.push(ActionEvent {
                    event: name.to_string(),
                    start_time: t.clone(),
                    finish_time: None,
                    result: None,
                    traceback: None,
                    details: None,
                    host: host.map(str::to_string),
                }),
                Some(res) => {
                    let ev = match a.events.iter_mut().rev().find(|e| e.event == name) {
                        Some(e) => e,
                        None => {
                            a.events.push(ActionEvent {
                                event: name.to_string(),
                                start_time: t.clone(),
                                finish_time: None,
                                result: None,
                                traceback: None,
                                details: None,
                                host: host.map(str::to_string),
                            });
                            let n = a.events.len() - 1;
                            &mut a.events[n]
                        }
                    };
                    ev.finish_time = Some(t.clone());
                    match res {
                        Ok(()) => ev.result = Some("Success".into()),
                        Err(m) => {
                            ev.result = Some("Error".into());
                            ev.traceback = Some(m.clone());
                            ev.details = Some(m.clone());
                            a.message = Some("Error".into());
                        }
                    }
                }
            }
            a.updated_at = t;
            Ok(((), vec![Rec::Action(a)]))
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(
            instance = uuid,
            "action event not recorded: {}",
            e.log_message()
        );
    }
}

/// What a driver call does to the instance when it succeeds.
pub type Outcome = Box<dyn FnOnce(&mut Instance) + Send>;

/// Runs `req` on the instance's host in the background, then applies
/// `on_ok` (and clears the task state) or, on failure, restores the
/// previous state and records the error on the action.
pub fn run_on_host(
    svc: &Arc<ComputeService>,
    inst: &Instance,
    request_id: &str,
    event_name: &'static str,
    req: ComputeRequest,
    on_ok: Outcome,
) {
    let svc = svc.clone();
    let uuid = inst.uuid.clone();
    let host = inst.host.clone().unwrap_or_default();
    let rid = request_id.to_string();
    tokio::spawn(async move {
        event(&svc, &uuid, &rid, event_name, Some(&host), None).await;
        let method = req.method();
        let r = call_agent(&svc, &host, req, Some(&rid)).await;
        let res = match &r {
            Ok(reply) => {
                let ps = reply.power_state();
                svc.state
                    .update_instance(&uuid, move |i| {
                        if let Some(ps) = ps {
                            i.power_state = ps.code();
                        }
                        on_ok(i);
                        i.task_state = None;
                        Ok(())
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Err(e) => {
                let m = e.to_string();
                tracing::warn!(instance = %uuid, %method, "driver call failed: {m}");
                let _ = svc
                    .state
                    .update_instance(&uuid, |i| {
                        i.task_state = None;
                        Ok(())
                    })
                    .await;
                Err(m)
            }
        };
        event(&svc, &uuid, &rid, event_name, Some(&host), Some(res)).await;
    });
}

/// The quota limits of a project (and user), defaults filled in.
pub fn quota_limits(st: &State, project: &str, user: Option<&str>) -> BTreeMap<String, i64> {
    let mut m: BTreeMap<String, i64> = DEFAULT_QUOTAS
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    if let Some(q) = st.quotas.get("__defaults__") {
        m.extend(q.limits.clone());
    }
    if let Some(q) = st.quotas.get(project) {
        m.extend(q.limits.clone());
        if let Some(u) = user.and_then(|u| q.users.get(u)) {
            m.extend(u.clone());
        }
    }
    m
}

/// Counted usage (Nova counts resources, it does not track a ledger).
pub fn quota_usage(st: &State, project: &str, user: Option<&str>) -> BTreeMap<String, i64> {
    let mut instances = 0i64;
    let mut cores = 0i64;
    let mut ram = 0i64;
    for i in st.live().filter(|i| i.project_id == project) {
        if user.is_some_and(|u| u != i.user_id) {
            continue;
        }
        instances += 1;
        cores += i64::from(i.flavor.vcpus);
        ram += i.flavor.ram as i64;
    }
    let groups = st
        .groups
        .values()
        .filter(|g| g.project_id == project && user.is_none_or(|u| u == g.user_id))
        .count() as i64;
    let keypairs = user
        .map(|u| st.keypairs.keys().filter(|(ku, _)| ku == u).count() as i64)
        .unwrap_or(0);
    BTreeMap::from([
        ("instances".to_string(), instances),
        ("cores".to_string(), cores),
        ("ram".to_string(), ram),
        ("server_groups".to_string(), groups),
        ("key_pairs".to_string(), keypairs),
    ])
}

/// Checks that adding `delta` stays within the limits; Nova's 403 message.
pub fn quota_check(
    st: &State,
    project: &str,
    user: &str,
    delta: &[(&str, i64)],
) -> Result<(), crate::error::NovaError> {
    let limits = quota_limits(st, project, Some(user));
    let usage = quota_usage(st, project, None);
    let mut over = Vec::new();
    for (k, d) in delta {
        let lim = limits.get(*k).copied().unwrap_or(-1);
        if lim < 0 {
            continue;
        }
        let used = usage.get(*k).copied().unwrap_or(0);
        if used + d > lim {
            over.push((k.to_string(), lim, used, *d));
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = over.iter().map(|o| o.0.as_str()).collect();
    let detail: Vec<String> = over
        .iter()
        .map(|(k, lim, used, d)| {
            format!("{k}: requested {d}, but already used {used} of {lim} {k}")
        })
        .collect();
    Err(crate::error::NovaError::forbidden(format!(
        "Quota exceeded for {}: Requested {}",
        names.join(", "),
        detail.join("; ")
    )))
}

/// Scheduler host states for the given candidate providers.
pub fn host_states(
    svc: &ComputeService,
    st: &State,
    cands: &[crate::placement::Candidate],
) -> Vec<HostState> {
    let mut out = Vec::new();
    for c in cands {
        let Some(s) = st.services.values().find(|s| {
            s.binary == "nova-compute" && s.node_uuid.as_deref() == Some(c.provider.as_str())
        }) else {
            continue;
        };
        let sum = |rc: &str| c.summary.get(rc).copied().unwrap_or((0, 0));
        let (vt, vu) = sum("VCPU");
        let (rt, ru) = sum("MEMORY_MB");
        let (dt, du) = sum("DISK_GB");
        let aggregates: BTreeMap<String, BTreeMap<String, String>> = st
            .aggregates
            .values()
            .filter(|a| a.hosts.contains(&s.host))
            .map(|a| (a.id.to_string(), a.metadata.clone()))
            .collect();
        let res = s.resources.clone();
        out.push(HostState {
            host: s.host.clone(),
            node: c.provider.clone(),
            availability_zone: host_az(svc, st, &s.host),
            enabled: !s.disabled,
            up: service_up(svc, s),
            disabled_reason: s.disabled_reason.clone(),
            vcpus_total: vt as f64,
            vcpus_used: vu as f64,
            ram_total_mb: rt as f64,
            ram_used_mb: ru as f64,
            disk_total_gb: dt as f64,
            disk_used_gb: du as f64,
            hypervisor_type: res
                .as_ref()
                .map(|r| r.hypervisor_type.clone())
                .unwrap_or_default(),
            hypervisor_version: res.as_ref().map(|r| r.hypervisor_version).unwrap_or(0),
            arch: "x86_64".into(),
            aggregates,
            instances: st
                .live()
                .filter(|i| i.host.as_deref() == Some(s.host.as_str()))
                .map(|i| i.uuid.clone())
                .collect(),
            num_io_ops: st
                .live()
                .filter(|i| i.host.as_deref() == Some(s.host.as_str()) && i.task_state.is_some())
                .count() as u32,
            failed_builds: 0,
        });
    }
    out
}

/// A host's availability zone: from its aggregates, else the default.
pub fn host_az(svc: &ComputeService, st: &State, host: &str) -> String {
    st.aggregates
        .values()
        .filter(|a| a.hosts.iter().any(|h| h == host))
        .find_map(|a| a.availability_zone.clone())
        .unwrap_or_else(|| svc.cfg.compute.default_availability_zone.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nics_come_in_the_order_they_were_requested() {
        let vif = |port: &str, net: &str, ip: &str| crate::Vif {
            port_id: port.into(),
            mac_address: String::new(),
            network_id: net.into(),
            mtu: None,
            fixed_ips: vec![ip.into()],
            active: true,
        };
        // Listed oldest first: the ports made before the server come first.
        let vifs = vec![
            vif("p1", "n1", "10.1.1.5"),
            vif("p2", "n1", "10.1.1.6"),
            vif("a", "val", "10.0.0.3"),
            vif("b", "n1", "10.1.1.7"),
            vif("c", "n2", "10.2.2.200"),
            vif("d", "n2", "10.2.2.100"),
            vif("later", "n3", "10.3.3.3"),
        ];
        let req = serde_json::json!([
            {"uuid": "val"}, {"port": "p1"}, {"port": "p2"}, {"uuid": "n1"},
            {"uuid": "n2", "fixed_ip": "10.2.2.100"}, {"uuid": "n2", "fixed_ip": "10.2.2.200"},
        ]);
        let order: Vec<String> = super::in_requested_order(vifs.clone(), &req)
            .into_iter()
            .map(|v| v.port_id)
            .collect();
        assert_eq!(order, ["a", "p1", "p2", "b", "d", "c", "later"]);
        let auto: Vec<String> = super::in_requested_order(vifs, &serde_json::json!("auto"))
            .into_iter()
            .map(|v| v.port_id)
            .collect();
        assert_eq!(auto[0], "p1");
    }
}
