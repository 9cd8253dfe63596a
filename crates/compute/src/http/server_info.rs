//! What a server shows besides itself: its instance actions and their
//! events, its password, remote consoles, diagnostics and migrations.
use super::request::Mv;
use super::request::{Caller, St, body, json_resp};
use super::servers::{get_instance, host_id};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::state::iso_z;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/servers/{id}/os-instance-actions", get(actions_list))
        .route("/servers/{id}/os-instance-actions/{rid}", get(action_show))
        .route(
            "/servers/{id}/os-server-password",
            get(password_get).delete(password_clear),
        )
        .route(
            "/servers/{id}/remote-consoles",
            axum::routing::post(remote_console),
        )
        .route("/servers/{id}/diagnostics", get(diagnostics))
        .route("/servers/{id}/migrations", get(server_migrations))
        .route("/servers/{id}/topology", get(topology))
}

// ---------------------------------------------------------------- actions, misc

fn action_view(
    a: &crate::model::InstanceAction,
    mv: Mv,
    admin: bool,
    events: bool,
    project: &str,
) -> Value {
    let mut v = json!({
        "action": a.action, "instance_uuid": a.instance_uuid, "message": a.message,
        "project_id": a.project_id, "request_id": a.request_id,
        "start_time": iso_z(&a.start_time), "user_id": a.user_id,
    });
    if mv.at_least(58) {
        v["updated_at"] = json!(iso_z(&a.updated_at));
    }
    if events {
        v["events"] = json!(
            a.events
                .iter()
                .map(|e| {
                    let mut x = json!({"event": e.event, "start_time": iso_z(&e.start_time),
                "finish_time": e.finish_time.as_deref().map(iso_z), "result": e.result});
                    if admin {
                        x["traceback"] = json!(e.traceback);
                    }
                    if mv.at_least(62) {
                        if admin {
                            x["host"] = json!(e.host.clone().unwrap_or_default());
                        }
                        x["hostId"] = json!(host_id(project, e.host.as_deref()));
                    }
                    if mv.at_least(84) && admin {
                        x["details"] = json!(e.details);
                    }
                    x
                })
                .collect::<Vec<_>>()
        );
    }
    v
}

async fn actions_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let st = svc.state.read();
    let i = match st.instances.get(&id) {
        Some(i) if i.project_id == c.project() || c.is_admin(&svc) => {
            // 2.21: actions of deleted servers stay readable by their project.
            if i.deleted && !c.mv.at_least(21) && !c.is_admin(&svc) {
                return Err(NovaError::not_found(format!(
                    "Instance {id} could not be found."
                )));
            }
            i
        }
        _ => {
            return Err(NovaError::not_found(format!(
                "Instance {id} could not be found."
            )));
        }
    };
    let mut list: Vec<&crate::model::InstanceAction> = st
        .actions
        .get(&i.uuid)
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    list.sort_by(|a, b| b.start_time.cmp(&a.start_time).then(b.seq.cmp(&a.seq)));
    let v: Vec<Value> = list
        .iter()
        .map(|a| action_view(a, c.mv, c.is_admin(&svc), false, &i.project_id))
        .collect();
    Ok(json_resp(StatusCode::OK, json!({"instanceActions": v})))
}

async fn action_show(
    AxState(svc): St,
    c: Caller,
    Path((id, rid)): Path<(String, String)>,
) -> NResult<Response> {
    let st = svc.state.read();
    let i = match st.instances.get(&id) {
        Some(i)
            if (i.project_id == c.project() || c.is_admin(&svc))
                && (!i.deleted || c.is_admin(&svc)) =>
        {
            i
        }
        _ => {
            return Err(NovaError::not_found(format!(
                "Instance {id} could not be found."
            )));
        }
    };
    let a = st
        .actions
        .get(&i.uuid)
        .and_then(|l| l.iter().find(|a| a.request_id == rid))
        .ok_or_else(|| {
            NovaError::not_found(format!(
                "Action for request_id {rid} on instance {id} not found"
            ))
        })?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"instanceAction": action_view(a, c.mv, c.is_admin(&svc), true, &i.project_id)}),
    ))
}

async fn password_get(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"password": i.password.unwrap_or_default()}),
    ))
}

async fn password_clear(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-server-password:clear",
    )?;
    svc.state
        .update_instance(&id, |i| {
            i.password = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remote_console(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    if !c.mv.at_least(6) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let b = body(&raw)?;
    let rc = super::request::member(
        &b,
        "remote_console",
        "Invalid input for field/attribute remote_console.",
    )?;
    let protocol = rc
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input for field/attribute protocol."))?;
    let kind = rc
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Invalid input for field/attribute type."))?;
    let ok = matches!(
        (protocol, kind),
        ("vnc", "novnc")
            | ("vnc", "xvpvnc")
            | ("spice", "spice-html5")
            | ("serial", "serial")
            | ("rdp", "rdp-html5")
            | ("mks", "webmks")
    ) || (c.mv.at_least(99) && (protocol, kind) == ("spice", "spice-direct"));
    if !ok {
        return Err(bad(format!(
            "Invalid input for field/attribute type. Value: {kind}."
        )));
    }
    let i = get_instance(&svc, &c, &id)?;
    if i.vm_state != "active" && i.vm_state != "rescued" && i.vm_state != "paused" {
        return Err(NovaError::conflict(format!("Instance {id} is not ready")));
    }
    let url = crate::actions::console_url(&svc, &c, &i, kind).await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"remote_console": {"protocol": protocol, "type": kind, "url": url}}),
    ))
}

async fn diagnostics(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-server-diagnostics")?;
    let i = get_instance(&svc, &c, &id)?;
    let host = match (&i.host, i.vm_state.as_str()) {
        (Some(h), vm) if vm != "building" && vm != "shelved_offloaded" => h.clone(),
        _ => {
            return Err(NovaError::conflict(format!(
                "Cannot 'get_diagnostics' instance {id} while it is in vm_state {}",
                i.vm_state
            )));
        }
    };
    let d = match crate::ops::call_agent(
        &svc,
        &host,
        ferro_rpc::compute::ComputeRequest::Diagnostics { uuid: id.clone() },
        Some(&c.request_id),
    )
    .await
    {
        Ok(ferro_rpc::compute::ComputeReply::Diagnostics { diagnostics }) => diagnostics,
        Ok(other) => {
            return Err(NovaError::new(
                500,
                format!("unexpected answer to diagnostics: {other:?}"),
            ));
        }
        Err(ferro_rpc::RpcError::Unsupported(_)) => {
            return Err(NovaError::new(501, "Feature not supported."));
        }
        Err(e) => {
            return Err(NovaError::conflict(format!(
                "Diagnostics of instance {id} could not be read from its host: {e}"
            )));
        }
    };
    let state = match i.power_state {
        1 => "running",
        3 => "paused",
        4 => "shutdown",
        7 => "suspended",
        6 => "crashed",
        _ => "pending",
    };
    Ok(json_resp(
        StatusCode::OK,
        render_diagnostics(&i, state, &d, c.mv.at_least(48)),
    ))
}

/// Nova's diagnostics bodies: the 2.48 document, or the libvirt driver's
/// flat map of older microversions (`cpu0_time`, `vda_read`, `tap..._rx`, `memory` in KiB).
fn render_diagnostics(
    i: &crate::model::Instance,
    state: &str,
    d: &ferro_rpc::compute::Diagnostics,
    v2_48: bool,
) -> Value {
    if v2_48 {
        return json!({
            "state": state, "driver": "libvirt", "hypervisor": d.hypervisor,
            "hypervisor_os": "linux", "uptime": d.uptime, "config_drive": i.config_drive,
            "num_cpus": d.cpu_times_ns.len(), "num_nics": d.nics.len(), "num_disks": d.disks.len(),
            "cpu_details": d.cpu_times_ns.iter().enumerate()
                .map(|(n, t)| json!({"id": n, "time": t, "utilisation": null}))
                .collect::<Vec<_>>(),
            "nic_details": d.nics.iter().map(|n| json!({
                "mac_address": n.mac_address, "rx_octets": n.rx_octets, "rx_errors": n.rx_errors,
                "rx_drop": n.rx_drop, "rx_packets": n.rx_packets, "rx_rate": null,
                "tx_octets": n.tx_octets, "tx_errors": n.tx_errors, "tx_drop": n.tx_drop,
                "tx_packets": n.tx_packets, "tx_rate": null,
            })).collect::<Vec<_>>(),
            "disk_details": d.disks.iter().map(|k| json!({
                "read_bytes": k.read_bytes, "read_requests": k.read_requests,
                "write_bytes": k.write_bytes, "write_requests": k.write_requests,
                "errors_count": k.errors_count,
            })).collect::<Vec<_>>(),
            "memory_details": {"maximum": d.memory_max_mb, "used": d.memory_used_mb},
        });
    }
    let mut m = Map::new();
    for (n, t) in d.cpu_times_ns.iter().enumerate() {
        m.insert(format!("cpu{n}_time"), json!(t));
    }
    m.insert("memory".into(), json!(d.memory_max_mb * 1024));
    m.insert("memory-actual".into(), json!(d.memory_used_mb * 1024));
    for k in &d.disks {
        for (suffix, v) in [
            ("read", k.read_bytes),
            ("read_req", k.read_requests),
            ("write", k.write_bytes),
            ("write_req", k.write_requests),
            ("errors", k.errors_count),
        ] {
            m.insert(format!("{}_{suffix}", k.name), json!(v));
        }
    }
    for n in &d.nics {
        for (suffix, v) in [
            ("rx", n.rx_octets),
            ("rx_packets", n.rx_packets),
            ("rx_errors", n.rx_errors),
            ("rx_drop", n.rx_drop),
            ("tx", n.tx_octets),
            ("tx_packets", n.tx_packets),
            ("tx_errors", n.tx_errors),
            ("tx_drop", n.tx_drop),
        ] {
            m.insert(format!("{}_{suffix}", n.name), json!(v));
        }
    }
    Value::Object(m)
}

/// `GET /servers/{id}/topology` (2.78): the guest's NUMA topology. No
/// driver here places guests on NUMA cells (no `hw:numa_*` is applied), so
/// a guest has none, and Nova's answer for that is an empty list.
async fn topology(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    if !c.mv.at_least(78) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "compute:server:topology:index")?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"nodes": [], "pagesize_kb": null}),
    ))
}

async fn server_migrations(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:servers:migrations:index")?;
    let _ = get_instance(&svc, &c, &id)?;
    Ok(json_resp(StatusCode::OK, json!({"migrations": []})))
}
