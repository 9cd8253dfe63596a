//! `POST /servers/{id}/action`: the server state machine (Nova's
//! `check_instance_state` rules), run on the instance's host by its agent.
use super::action_support::SIMPLE;
use super::action_support::accepted;
use super::action_support::begin;
use super::action_support::record;
use super::rebuild::rebuild;
use super::request::{Caller, St, body, json_resp};
use super::resize::confirm_resize;
use super::resize::resize;
use super::resize::revert_resize;
use super::server_info::console_url;
use super::server_snapshots::create_image;
use super::servers::get_instance;
use super::shelve::offload;
use super::shelve::shelve;
use super::shelve::unshelve;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::ops;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferro_rpc::compute::{ComputeReply, ComputeRequest};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new().route("/servers/{id}/action", post(action))
}

/// The server actions (`POST /servers/{id}/action`), one per body key
/// (several keys share one where upstream treats them alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerAction {
    Power,
    Reboot,
    Lock,
    Unlock,
    Rescue,
    Unrescue,
    GetConsoleOutput,
    GetConsole,
    InjectNetworkInfo,
    ResetState,
    ForceDelete,
    Restore,
    ChangePassword,
    CreateImage,
    Rebuild,
    Resize,
    Migrate,
    ConfirmResize,
    RevertResize,
    Shelve,
    ShelveOffload,
    Unshelve,
    SecurityGroup,
    AddFloatingIp,
    RemoveFloatingIp,
    LiveMigrateOrEvacuate,
}

impl ServerAction {
    fn parse(name: &str) -> Option<ServerAction> {
        Some(match name {
            "os-stop" | "os-start" | "pause" | "unpause" | "suspend" | "resume" => {
                ServerAction::Power
            }
            "reboot" => ServerAction::Reboot,
            "lock" => ServerAction::Lock,
            "unlock" => ServerAction::Unlock,
            "rescue" => ServerAction::Rescue,
            "unrescue" => ServerAction::Unrescue,
            "os-getConsoleOutput" => ServerAction::GetConsoleOutput,
            "os-getVNCConsole"
            | "os-getSPICEConsole"
            | "os-getSerialConsole"
            | "os-getRDPConsole" => ServerAction::GetConsole,
            "injectNetworkInfo" => ServerAction::InjectNetworkInfo,
            "os-resetState" => ServerAction::ResetState,
            "forceDelete" => ServerAction::ForceDelete,
            "restore" => ServerAction::Restore,
            "changePassword" => ServerAction::ChangePassword,
            "createImage" | "createBackup" => ServerAction::CreateImage,
            "rebuild" => ServerAction::Rebuild,
            "resize" => ServerAction::Resize,
            "migrate" => ServerAction::Migrate,
            "confirmResize" => ServerAction::ConfirmResize,
            "revertResize" => ServerAction::RevertResize,
            "shelve" => ServerAction::Shelve,
            "shelveOffload" => ServerAction::ShelveOffload,
            "unshelve" => ServerAction::Unshelve,
            "addSecurityGroup" | "removeSecurityGroup" => ServerAction::SecurityGroup,
            "addFloatingIp" => ServerAction::AddFloatingIp,
            "removeFloatingIp" => ServerAction::RemoveFloatingIp,
            "os-migrateLive" | "evacuate" => ServerAction::LiveMigrateOrEvacuate,
            _ => return None,
        })
    }
}

async fn action(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let obj = b
        .as_object()
        .ok_or_else(|| NovaError::bad("Malformed request body"))?;
    let (name, arg) = obj
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .ok_or_else(|| NovaError::bad("Malformed request body"))?;
    if obj.len() != 1 {
        return Err(NovaError::bad(
            "There is either no action or more than one action in the request body.",
        ));
    }
    let svc = &svc;
    let c = &c;
    let action = ServerAction::parse(&name)
        .ok_or_else(|| NovaError::bad(format!("There is no such action: {name}")))?;
    match action {
        ServerAction::Power => power(svc, c, id.clone(), name.clone()).await,
        ServerAction::Reboot => reboot(svc, c, id.clone(), arg.clone()).await,
        ServerAction::Lock => lock(svc, c, id.clone(), arg.clone()).await,
        ServerAction::Unlock => unlock(svc, c, id.clone()).await,
        ServerAction::Rescue => rescue(svc, c, id.clone(), arg.clone()).await,
        ServerAction::Unrescue => unrescue(svc, c, id.clone()).await,
        ServerAction::GetConsoleOutput => console_output(svc, c, id.clone(), arg.clone()).await,
        ServerAction::GetConsole => get_console(svc, c, id.clone(), arg.clone()).await,
        ServerAction::InjectNetworkInfo => inject_network_info(svc, c, id.clone()).await,
        ServerAction::ResetState => reset_state(svc, c, id.clone(), arg.clone()).await,
        ServerAction::ForceDelete => force_delete(svc, c, id.clone()).await,
        ServerAction::Restore => restore(svc, c, id.clone()).await,
        ServerAction::ChangePassword => change_password(svc, c, id.clone(), arg.clone()).await,
        ServerAction::CreateImage => create_image(svc, c, &id, &name, &arg).await,
        ServerAction::Rebuild => rebuild(svc, c, &id, &arg).await,
        ServerAction::Resize => resize_action(svc, c, id.clone(), arg.clone()).await,
        ServerAction::Migrate => migrate(svc, c, id.clone(), arg.clone()).await,
        ServerAction::ConfirmResize => confirm_resize(svc, c, &id).await,
        ServerAction::RevertResize => revert_resize(svc, c, &id).await,
        ServerAction::Shelve => shelve_action(svc, c, id.clone()).await,
        ServerAction::ShelveOffload => shelve_offload(svc, c, id.clone()).await,
        ServerAction::Unshelve => unshelve_action(svc, c, id.clone(), arg.clone()).await,
        ServerAction::SecurityGroup => {
            security_group(svc, c, id.clone(), name.clone(), arg.clone()).await
        }
        ServerAction::AddFloatingIp => {
            super::floating_ips::add_floating_ip(svc, c, &id, &arg).await
        }
        ServerAction::RemoveFloatingIp => {
            super::floating_ips::remove_floating_ip(svc, c, &id, &arg).await
        }
        ServerAction::LiveMigrateOrEvacuate => live_migrate_or_evacuate(svc, c, name.clone()).await,
    }
}

async fn power(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    name: String,
) -> NResult<Response> {
    let a = SIMPLE
        .iter()
        .find(|a| a.body_key == name)
        .ok_or_else(|| NovaError::bad(format!("There is no such action: {name}")))?;
    let i = begin(svc, c, &id, a.action, a.action, a.from, Some(a.task), true).await?;
    let to = a.to;
    ops::run_on_host(
        svc,
        &i,
        &c.request_id,
        a.event,
        (a.request)(i.uuid.clone()),
        Box::new(move |i| i.vm_state = to.into()),
    );
    Ok(accepted())
}

async fn reboot(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let kind = arg.get("type").and_then(Value::as_str).unwrap_or("");
    let hard = match kind.to_uppercase().as_str() {
        "HARD" => true,
        "SOFT" => false,
        _ => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
            )));
        }
    };
    let states: &[&str] = if hard {
        &["active", "stopped", "paused", "suspended", "error"]
    } else {
        &["active", "stopped", "error"]
    };
    let task = if hard { "rebooting_hard" } else { "rebooting" };
    let i = begin(svc, c, &id, "reboot", "reboot", states, Some(task), true).await?;
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
    Ok(accepted())
}

async fn lock(svc: &Arc<ComputeService>, c: &Caller, id: String, arg: Value) -> NResult<Response> {
    let reason = match arg.get("locked_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if c.mv.at_least(73) && r.len() <= 255 => Some(r.clone()),
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute locked_reason.",
            ));
        }
    };
    let i = get_instance(svc, c, &id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-lock-server:lock")?;
    let by = if c.is_admin(svc) && i.project_id != c.project() {
        "admin"
    } else {
        "owner"
    };
    record(svc, c, &i, "lock").await?;
    svc.state
        .update_instance(&id, |i| {
            i.locked = true;
            i.locked_by = Some(by.into());
            i.locked_reason = reason;
            Ok(())
        })
        .await?;
    Ok(accepted())
}

async fn unlock(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    let i = get_instance(svc, c, &id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-lock-server:unlock")?;
    if i.locked_by.as_deref() == Some("admin") && !c.is_admin(svc) {
        return Err(NovaError::forbidden(
            "Unlocking a server locked by an administrator is not allowed.",
        ));
    }
    record(svc, c, &i, "unlock").await?;
    svc.state
        .update_instance(&id, |i| {
            i.locked = false;
            i.locked_by = None;
            i.locked_reason = None;
            Ok(())
        })
        .await?;
    Ok(accepted())
}

async fn rescue(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let pass = arg
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n: u64 = rand::random();
            format!("{n:012x}")[..12].to_string()
        });
    let image = arg
        .get("rescue_image_ref")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(img) = &image
        && svc.image.get(c.token(), img).await?.is_none()
    {
        return Err(NovaError::bad(format!("Image {img} could not be found.")));
    }
    let i = begin(
        svc,
        c,
        &id,
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
        },
        Box::new(move |i| {
            i.previous_vm_state = Some(prev);
            i.vm_state = "rescued".into();
            i.rescue_image = image;
        }),
    );
    Ok(json_resp(StatusCode::OK, json!({"adminPass": pass})))
}

async fn unrescue(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    let i = begin(
        svc,
        c,
        &id,
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
    Ok(accepted())
}

async fn console_output(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let length = match arg.get("length") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute length."))?;
            if n < -1 {
                return Err(NovaError::bad("Invalid input for field/attribute length."));
            }
            if n == -1 { None } else { Some(n as usize) }
        }
    };
    let i = get_instance(svc, c, &id)?;
    let host = i
        .host
        .clone()
        .filter(|_| !matches!(i.vm_state.as_str(), "building" | "shelved_offloaded"))
        .ok_or_else(|| {
            NovaError::conflict(format!(
                "Instance {id} has not been scheduled to a host yet."
            ))
        })?;
    let out = ops::call_agent(
        svc,
        &host,
        ComputeRequest::ConsoleOutput { uuid: id.clone() },
        Some(&c.request_id),
    )
    .await
    .map_err(|e| {
        NovaError::conflict(format!(
            "Console log output could not be retrieved for instance {id}: {e}"
        ))
    })?;
    let text = match out {
        ComputeReply::ConsoleOutput { output } => output,
        other => {
            return Err(NovaError::new(
                500,
                format!("unexpected answer to console_output: {other:?}"),
            ));
        }
    };
    let text = match length {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        None => text,
    };
    Ok(json_resp(StatusCode::OK, json!({"output": text})))
}

async fn get_console(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let kind = arg
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("novnc")
        .to_string();
    let i = get_instance(svc, c, &id)?;
    if i.vm_state != "active" {
        return Err(NovaError::conflict(format!("Instance {id} is not ready")));
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"console": {"type": kind, "url": console_url(svc, "vnc", &kind, &id)}}),
    ))
}

async fn inject_network_info(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
) -> NResult<Response> {
    c.require_admin(svc, "os_compute_api:os-admin-actions:inject_network_info")?;
    // The fake driver has no guest to inject into; the ports are
    // already current in Networking.
    get_instance(svc, c, &id)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn reset_state(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    c.require_admin(svc, "os_compute_api:os-admin-actions:reset_state")?;
    let state = arg.get("state").and_then(Value::as_str).unwrap_or("");
    if state != "active" && state != "error" {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute state. Value: {state}. '{state}' is not one of ['active', 'error']"
        )));
    }
    let i = get_instance(svc, c, &id)?;
    record(svc, c, &i, "resetState").await?;
    let st = state.to_string();
    svc.state
        .update_instance(&id, move |i| {
            i.vm_state = st;
            i.task_state = None;
            Ok(())
        })
        .await?;
    Ok(accepted())
}

async fn force_delete(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    super::servers::delete_instance(svc, c, &id, "forceDelete").await?;
    Ok(accepted())
}

async fn restore(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    let i = get_instance(svc, c, &id)?;
    Err(NovaError::invalid_state(
        "restore",
        "vm_state",
        &i.vm_state,
        &id,
    ))
}

async fn change_password(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let pass = arg
        .get("adminPass")
        .and_then(Value::as_str)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute adminPass."))?
        .to_string();
    let i = begin(
        svc,
        c,
        &id,
        "changePassword",
        "changePassword",
        &["active"],
        None,
        true,
    )
    .await?;
    let _ = pass;
    let _ = i;
    Ok(accepted())
}

async fn resize_action(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let fref = arg
        .get("flavorRef")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .ok_or_else(|| {
            NovaError::bad(
                "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property",
            )
        })?;
    let dc = super::servers::disk_config_of(arg.get("OS-DCF:diskConfig"))?;
    let r = resize(
        svc,
        c,
        &id,
        Some(fref.rsplit('/').next().unwrap_or(&fref).to_string()),
        None,
        "resize",
    )
    .await?;
    if dc.is_some() {
        svc.state
            .update_instance(&id, |i| {
                i.disk_config = dc;
                Ok(())
            })
            .await?;
    }
    Ok(r)
}

async fn migrate(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    c.require_admin(svc, "os_compute_api:os-migrate-server:migrate")?;
    let host = arg.get("host").and_then(Value::as_str).map(str::to_string);
    resize(svc, c, &id, None, host, "migrate").await
}

async fn shelve_action(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    let i = begin(
        svc,
        c,
        &id,
        "shelve",
        "shelve",
        &["active", "stopped", "paused", "suspended"],
        Some("shelving"),
        true,
    )
    .await?;
    shelve(svc, c, i);
    Ok(accepted())
}

async fn shelve_offload(svc: &Arc<ComputeService>, c: &Caller, id: String) -> NResult<Response> {
    let i = begin(
        svc,
        c,
        &id,
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
    Ok(accepted())
}

async fn unshelve_action(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    arg: Value,
) -> NResult<Response> {
    let az = match &arg {
        Value::Object(o) => o
            .get("availability_zone")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    let i = begin(
        svc,
        c,
        &id,
        "unshelve",
        "unshelve",
        &["shelved", "shelved_offloaded"],
        Some("unshelving"),
        true,
    )
    .await?;
    let (svc2, rid, tok) = (svc.clone(), c.request_id.clone(), c.token().to_string());
    tokio::spawn(async move {
        unshelve(&svc2, i, &rid, az, &tok).await;
    });
    Ok(accepted())
}

async fn security_group(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: String,
    name: String,
    arg: Value,
) -> NResult<Response> {
    let sg = arg
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let i = get_instance(svc, c, &id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:os-security-groups:add")?;
    let add = name == "addSecurityGroup";
    if super::security_groups::server_security_group(svc, c, &id, &sg, add).await? {
        return Ok(accepted());
    }
    if add && i.security_groups.contains(&sg) {
        return Err(NovaError::bad(format!(
            "Security group {sg} is already associated with the instance {id}"
        )));
    }
    // Without a Networking service the only group that exists is `default`;
    // the instance's own list is the record.
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
        .update_instance(&id, move |x| {
            if add {
                x.security_groups.push(sg);
            } else {
                x.security_groups.retain(|g| g != &sg);
            }
            Ok(())
        })
        .await?;
    Ok(accepted())
}

async fn live_migrate_or_evacuate(
    svc: &Arc<ComputeService>,
    c: &Caller,
    name: String,
) -> NResult<Response> {
    c.require_admin(svc, "os_compute_api:os-migrate-server:migrate_live")?;
    Err(NovaError::bad(format!(
        "{name} is not supported by the fake hypervisor driver."
    )))
}
