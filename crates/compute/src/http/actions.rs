//! `POST /servers/{id}/action`: the server state machine (Nova's
//! `check_instance_state` rules), run on the instance's host by its agent.
use super::servers::{check_locked, console_url, get_instance};
use super::{Caller, St, body, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Instance, Migration};
use crate::ops;
use crate::state::{Rec, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferro_placement::AllocMap;
use ferro_rpc::compute::{ComputeReply, ComputeRequest};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new().route("/servers/{id}/action", post(action))
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// A power action: allowed states, the task while it runs, the agent
/// method, and the state it ends in (Nova's check_instance_state rules).
struct Simple {
    body_key: &'static str,
    action: &'static str,
    from: &'static [&'static str],
    task: &'static str,
    event: &'static str,
    request: fn(String) -> ComputeRequest,
    to: &'static str,
}

const SIMPLE: &[Simple] = &[
    Simple {
        body_key: "os-stop",
        action: "stop",
        from: &["active", "error"],
        task: "powering-off",
        event: "compute_stop_instance",
        request: |uuid| ComputeRequest::PowerOff { uuid },
        to: "stopped",
    },
    Simple {
        body_key: "os-start",
        action: "start",
        from: &["stopped"],
        task: "powering-on",
        event: "compute_start_instance",
        request: |uuid| ComputeRequest::PowerOn { uuid },
        to: "active",
    },
    Simple {
        body_key: "pause",
        action: "pause",
        from: &["active"],
        task: "pausing",
        event: "compute_pause_instance",
        request: |uuid| ComputeRequest::Pause { uuid },
        to: "paused",
    },
    Simple {
        body_key: "unpause",
        action: "unpause",
        from: &["paused"],
        task: "unpausing",
        event: "compute_unpause_instance",
        request: |uuid| ComputeRequest::Unpause { uuid },
        to: "active",
    },
    Simple {
        body_key: "suspend",
        action: "suspend",
        from: &["active"],
        task: "suspending",
        event: "compute_suspend_instance",
        request: |uuid| ComputeRequest::Suspend { uuid },
        to: "suspended",
    },
    Simple {
        body_key: "resume",
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
async fn begin(
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
    match name.as_str() {
        "os-stop" | "os-start" | "pause" | "unpause" | "suspend" | "resume" => {
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
        "reboot" => {
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
        "lock" => {
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
        "unlock" => {
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
        "rescue" => {
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
        "unrescue" => {
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
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let n = v
                        .as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| {
                            NovaError::bad("Invalid input for field/attribute length.")
                        })?;
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
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getSerialConsole" | "os-getRDPConsole" => {
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
        "injectNetworkInfo" => {
            c.require_admin(svc, "os_compute_api:os-admin-actions:inject_network_info")?;
            // The fake driver has no guest to inject into; the ports are
            // already current in Networking.
            get_instance(svc, c, &id)?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-resetState" => {
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
        "forceDelete" => {
            super::servers::delete_instance(svc, c, &id, "forceDelete").await?;
            Ok(accepted())
        }
        "restore" => {
            let i = get_instance(svc, c, &id)?;
            Err(NovaError::invalid_state(
                "restore",
                "vm_state",
                &i.vm_state,
                &id,
            ))
        }
        "changePassword" => {
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
        "trigger_crash_dump" => {
            if !c.mv.at_least(17) {
                return Err(NovaError::bad(
                    "There is no such action: trigger_crash_dump",
                ));
            }
            let i = get_instance(svc, c, &id)?;
            check_locked(svc, c, &i)?;
            if !matches!(
                i.vm_state.as_str(),
                "active" | "paused" | "rescued" | "resized" | "error"
            ) || i.task_state.is_some()
            {
                return Err(NovaError::invalid_state(
                    "trigger_crash_dump",
                    "vm_state",
                    &i.vm_state,
                    &id,
                ));
            }
            record(svc, c, &i, "trigger_crash_dump").await?;
            Ok(accepted())
        }
        "createImage" | "createBackup" => create_image(svc, c, &id, &name, &arg).await,
        "rebuild" => rebuild(svc, c, &id, &arg).await,
        "resize" => {
            let fref = arg.get("flavorRef").and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute flavorRef. 'flavorRef' is a required property"))?;
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
        "migrate" => {
            c.require_admin(svc, "os_compute_api:os-migrate-server:migrate")?;
            let host = arg.get("host").and_then(Value::as_str).map(str::to_string);
            resize(svc, c, &id, None, host, "migrate").await
        }
        "confirmResize" => confirm_resize(svc, c, &id).await,
        "revertResize" => revert_resize(svc, c, &id).await,
        "shelve" => {
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
        "shelveOffload" => {
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
        "unshelve" => {
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
        "addSecurityGroup" | "removeSecurityGroup" => {
            let sg = arg
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
                .to_string();
            let i = get_instance(svc, c, &id)?;
            c.require_member(svc, &i.project_id, "os_compute_api:os-security-groups:add")?;
            let add = name == "addSecurityGroup";
            if super::netproxy::server_security_group(svc, c, &id, &sg, add).await? {
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
        "addFloatingIp" => super::netproxy::add_floating_ip(svc, c, &id, &arg).await,
        "removeFloatingIp" => super::netproxy::remove_floating_ip(svc, c, &id, &arg).await,
        "os-migrateLive" | "evacuate" => {
            c.require_admin(svc, "os_compute_api:os-migrate-server:migrate_live")?;
            Err(NovaError::bad(format!(
                "{name} is not supported by the fake hypervisor driver."
            )))
        }
        other => Err(NovaError::bad(format!("There is no such action: {other}"))),
    }
}

/// Records an action that completes at once (lock, unlock, resetState...).
pub(crate) async fn record(
    svc: &ComputeService,
    c: &Caller,
    i: &Instance,
    action: &str,
) -> NResult<()> {
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

async fn create_image(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    action: &str,
    arg: &Value,
) -> NResult<Response> {
    let name = arg
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let meta = match arg.get("metadata") {
        Some(m) => super::servers::check_metadata(m)?,
        None => BTreeMap::new(),
    };
    let mut backup: Option<(String, usize)> = None;
    if action == "createBackup" {
        c.require_member(svc, &c.project(), "os_compute_api:os-create-backup")?;
        let bt = arg.get("backup_type").and_then(Value::as_str);
        let rot = arg.get("rotation").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match (bt, rot) {
            (Some(b), Some(r)) if r >= 0 => backup = Some((b.to_string(), r as usize)),
            _ => {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute backup_type/rotation.",
                ));
            }
        }
    }
    let i0 = get_instance(svc, c, id)?;
    let base = if i0.image_ref.is_empty() {
        None
    } else {
        svc.image.get(c.token(), &i0.image_ref).await?
    };
    let i = begin(
        svc,
        c,
        id,
        "createImage",
        action,
        &["active", "stopped", "paused", "suspended"],
        Some("image_snapshot"),
        false,
    )
    .await?;
    let mut props = json!({
        "name": name,
        "instance_uuid": i.uuid,
        "image_type": if action == "createBackup" { "backup" } else { "snapshot" },
        "user_id": i.user_id,
        "owner_specified.openstack.object": "images/snapshot",
        "visibility": "private",
    });
    if let Some(b) = &base {
        props["disk_format"] = b["disk_format"].clone();
        props["container_format"] = b["container_format"].clone();
        props["base_image_ref"] = json!(i.image_ref);
        props["min_disk"] = json!(i.flavor.disk.max(b["min_disk"].as_u64().unwrap_or(0)));
        props["min_ram"] = b["min_ram"].clone();
    } else {
        props["disk_format"] = json!("qcow2");
        props["container_format"] = json!("bare");
    }
    for (k, v) in &meta {
        props[k] = json!(v);
    }
    if let Some((bt, _)) = &backup {
        props["backup_type"] = json!(bt);
    }
    let created = match svc.image.create(c.token(), props).await {
        Ok(v) => v,
        Err(e) => {
            let _ = svc
                .state
                .update_instance(id, |i| {
                    i.task_state = None;
                    Ok(())
                })
                .await;
            return Err(e.into());
        }
    };
    let image_id = created["id"].as_str().unwrap_or_default().to_string();
    let (svc2, tok, rid, iid) = (
        svc.clone(),
        c.token().to_string(),
        c.request_id.clone(),
        image_id.clone(),
    );
    let acting = c.acting();
    tokio::spawn(async move {
        let host = i.host.clone().unwrap_or_default();
        ops::event(
            &svc2,
            &i.uuid,
            &rid,
            "compute_snapshot_instance",
            Some(&host),
            None,
        )
        .await;
        let _ = svc2
            .state
            .update_instance(&i.uuid, |x| {
                if x.task_state.is_some() {
                    x.task_state = Some("image_uploading".into());
                }
                Ok(())
            })
            .await;
        let r = async {
            // The host streams the disk to the Image service itself.
            let dest = ops::image_destination(&svc2, &iid, &acting).await?;
            ops::call_agent(
                &svc2,
                &host,
                ComputeRequest::Snapshot {
                    uuid: i.uuid.clone(),
                    dest,
                },
                Some(&rid),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = &r {
            tracing::warn!(instance = %i.uuid, "snapshot failed: {e}");
            let _ = svc2.image.delete(&tok, &iid).await;
        } else if let Some((bt, rotation)) = &backup {
            // Keep the newest `rotation` backups of this type (Nova's rotate).
            let q = format!(
                "instance_uuid={}&image_type=backup&backup_type={bt}",
                i.uuid
            );
            if let Ok(mut list) = svc2.image.list(&tok, &q).await {
                list.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
                for old in list.iter().skip(*rotation) {
                    if let Some(oid) = old["id"].as_str() {
                        let _ = svc2.image.delete(&tok, oid).await;
                    }
                }
            }
        }
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
            "compute_snapshot_instance",
            Some(&host),
            Some(r),
        )
        .await;
    });
    if c.mv.at_least(45) {
        return Ok(json_resp(
            StatusCode::ACCEPTED,
            json!({"image_id": image_id}),
        ));
    }
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("{}/images/{image_id}", svc.base_url)) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

async fn rebuild(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    arg: &Value,
) -> NResult<Response> {
    let o = arg
        .as_object()
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute rebuild."))?;
    let image_ref = o
        .get("imageRef")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            NovaError::bad(
                "Invalid input for field/attribute imageRef. 'imageRef' is a required property",
            )
        })?;
    let image_ref = image_ref
        .rsplit('/')
        .next()
        .unwrap_or(image_ref)
        .to_string();
    let dc = super::servers::disk_config_of(o.get("OS-DCF:diskConfig"))?;
    let image = svc
        .image
        .get(c.token(), &image_ref)
        .await?
        .ok_or_else(|| NovaError::bad("Invalid imageRef provided."))?;
    if image["status"] != "active" {
        return Err(NovaError::bad(format!("Image {image_ref} is not active.")));
    }
    let name = o
        .get("name")
        .map(|n| {
            n.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 255 && s.trim() == *s)
                .map(str::to_string)
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))
        })
        .transpose()?;
    let meta = o
        .get("metadata")
        .map(super::servers::check_metadata)
        .transpose()?;
    let v4 = o
        .get("accessIPv4")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(x) = &v4
        && !x.is_empty()
        && x.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute accessIPv4. Value: {x}."
        )));
    }
    let v6 = o
        .get("accessIPv6")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(x) = &v6
        && !x.is_empty()
        && x.parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute accessIPv6. Value: {x}."
        )));
    }
    let desc = if c.mv.at_least(19) {
        o.get("description").map(|d| d.as_str().map(str::to_string))
    } else {
        None
    };
    let key = if c.mv.at_least(54) {
        o.get("key_name").map(|k| k.as_str().map(str::to_string))
    } else {
        None
    };
    let user_data = if c.mv.at_least(57) {
        o.get("user_data").map(|u| u.as_str().map(str::to_string))
    } else {
        None
    };
    let key_data = match &key {
        Some(Some(k)) => Some(Some(
            svc.state
                .read()
                .keypairs
                .get(&(c.user(), k.clone()))
                .map(|kp| kp.public_key.clone())
                .ok_or_else(|| NovaError::bad("Invalid key_name provided."))?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let pass = o
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n: u64 = rand::random();
            format!("{n:012x}")[..12].to_string()
        });
    let i = begin(
        svc,
        c,
        id,
        "rebuild",
        "rebuild",
        &["active", "stopped", "error"],
        Some("rebuilding"),
        true,
    )
    .await?;
    let mut props = BTreeMap::new();
    if let Some(obj) = image.as_object() {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                props.insert(k.clone(), s.to_string());
            }
        }
    }
    let was_stopped = i.vm_state == "stopped";
    let i = svc
        .state
        .update_instance(id, move |i| {
            if dc.is_some() {
                i.disk_config = dc;
            }
            i.image_ref = image_ref;
            i.image_properties = props;
            if let Some(n) = name {
                i.name = n;
            }
            if let Some(m) = meta {
                i.metadata = m;
            }
            if let Some(x) = v4 {
                i.access_ip_v4 = x;
            }
            if let Some(x) = v6 {
                i.access_ip_v6 = x;
            }
            if let Some(d) = desc {
                i.description = d;
            }
            if let Some(k) = key {
                i.key_name = k;
            }
            if let Some(kd) = key_data {
                i.key_data = kd;
            }
            if let Some(u) = user_data {
                i.user_data = u;
            }
            i.fault = None;
            Ok(())
        })
        .await?;
    let (svc2, rid) = (svc.clone(), c.request_id.clone());
    let i2 = i.clone();
    tokio::spawn(async move {
        let host = i2.host.clone().unwrap_or_default();
        ops::event(
            &svc2,
            &i2.uuid,
            &rid,
            "compute_rebuild_instance",
            Some(&host),
            None,
        )
        .await;
        let spec = ops::guest_spec(&svc2, &i2);
        let r = async {
            ops::call_agent(
                &svc2,
                &host,
                ComputeRequest::Destroy {
                    uuid: i2.uuid.to_string(),
                },
                Some(&rid),
            )
            .await?;
            ops::call_agent(
                &svc2,
                &host,
                ComputeRequest::Spawn { spec: spec.clone() },
                Some(&rid),
            )
            .await?;
            if was_stopped {
                ops::call_agent(
                    &svc2,
                    &host,
                    ComputeRequest::PowerOff {
                        uuid: i2.uuid.to_string(),
                    },
                    Some(&rid),
                )
                .await?;
            }
            Ok::<(), String>(())
        }
        .await;
        let ok = r.is_ok();
        let _ = svc2
            .state
            .update_instance(&i2.uuid, move |x| {
                x.task_state = None;
                if ok {
                    x.vm_state = if was_stopped {
                        "stopped".into()
                    } else {
                        "active".into()
                    };
                    x.power_state = if was_stopped { 4 } else { 1 };
                    x.launched_at = Some(now());
                } else {
                    x.vm_state = "error".into();
                }
                Ok(())
            })
            .await;
        ops::event(
            &svc2,
            &i2.uuid,
            &rid,
            "compute_rebuild_instance",
            Some(&host),
            Some(r),
        )
        .await;
    });
    let mut v = super::servers::update_view(svc, c, &i);
    if c.mv.at_least(57) {
        // Rebuild answers with the user data it was given (2.57), at the top level.
        if let Some(o) = v.as_object_mut() {
            o.remove("OS-EXT-SRV-ATTR:user_data");
        }
        v["user_data"] = json!(i.user_data);
    }
    v["adminPass"] = json!(pass);
    Ok(json_resp(StatusCode::ACCEPTED, json!({"server": v})))
}

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

/// Resize (new flavor) or cold migrate (same flavor, another host).
async fn resize(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    flavor_ref: Option<String>,
    target: Option<String>,
    kind: &str,
) -> NResult<Response> {
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
    Ok(accepted())
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
    let q = ferro_placement::CandidateQuery {
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
                ComputeRequest::Spawn { spec: spec.clone() },
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

async fn confirm_resize(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Response> {
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
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revert_resize(svc: &Arc<ComputeService>, c: &Caller, id: &str) -> NResult<Response> {
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
            id_str(&i),
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
                    ComputeRequest::Spawn { spec: spec.clone() },
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
    Ok(accepted())
}

fn id_str(i: &Instance) -> &str {
    &i.uuid
}

fn shelve(svc: &Arc<ComputeService>, c: &Caller, i: Instance) {
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
            Ok::<String, String>(iid)
        }.await;
        let res = r.as_ref().map(|_| ()).map_err(Clone::clone);
        match r {
            Ok(iid) => {
                let _ = svc2
                    .state
                    .update_instance(&i.uuid, move |x| {
                        x.vm_state = "shelved".into();
                        x.power_state = 4;
                        x.shelved_image = Some(iid);
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

async fn unshelve(
    svc: &Arc<ComputeService>,
    i: Instance,
    rid: &str,
    az: Option<String>,
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
        let _ = svc
            .state
            .update_instance(&uuid, move |x| {
                x.requested_az = Some(a);
                Ok(())
            })
            .await;
    }
    ops::event(svc, &uuid, rid, "compute_unshelve_instance", None, None).await;
    let mut state = crate::build::BuildState {
        uuid: uuid.clone(),
        request_id: rid.to_string(),
        ..Default::default()
    };
    let r = async {
        crate::build::claim_for(svc, &mut state).await?;
        let host = state.host.clone().unwrap_or_default();
        let spec = {
            let st = svc.state.read();
            ops::guest_spec(svc, st.instances.get(&uuid).ok_or("instance vanished")?)
        };
        if let Err(e) = ops::call_agent(svc, &host, ComputeRequest::Spawn { spec }, Some(rid)).await
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
