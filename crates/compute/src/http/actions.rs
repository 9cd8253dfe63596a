//! `POST /servers/{id}/action`: parses the body into a typed
//! [`ServerCommand`], lets the service layer (`crate::actions`) decide, and
//! renders its [`Outcome`] as Nova does. The legacy network actions
//! (`addFloatingIp`, `removeFloatingIp`, `addFixedIp`, `removeFixedIp`
//! (multinic), and the security group ones when a
//! Networking service exists) are proxies to Networking, as in Nova.
use super::request::{Caller, Mv, St, body, json_resp};
use crate::ComputeService;
use crate::actions::{self, Backup, NewImage, Outcome, Power, Rebuild, ResetTo, ServerCommand};
use crate::error::{NResult, NovaError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new().route("/servers/{id}/action", post(action))
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
        .ok_or_else(|| NovaError::bad("Malformed request body"))?;
    if obj.len() != 1 {
        return Err(NovaError::bad(
            "There is either no action or more than one action in the request body.",
        ));
    }
    match name.as_str() {
        "addFloatingIp" => return super::floating_ips::add_floating_ip(&svc, &c, &id, arg).await,
        "removeFloatingIp" => {
            return super::floating_ips::remove_floating_ip(&svc, &c, &id, arg).await;
        }
        "addFixedIp" if svc.network.present() => {
            return super::multinic::add_fixed_ip(&svc, &c, &id, arg).await;
        }
        "removeFixedIp" if svc.network.present() => {
            return super::multinic::remove_fixed_ip(&svc, &c, &id, arg).await;
        }
        "addSecurityGroup" | "removeSecurityGroup" if svc.network.present() => {
            let sg = security_group_name(arg)?;
            let i = super::servers::get_instance(&svc, &c, &id)?;
            c.require_member(&svc, &i.project_id, "os_compute_api:os-security-groups:add")?;
            let add = name == "addSecurityGroup";
            super::security_groups::server_security_group(&svc, &c, &id, &sg, add).await?;
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        _ => {}
    }
    let cmd = parse(name, arg, c.mv)?;
    let outcome = actions::run(&svc, &c, &id, cmd).await?;
    Ok(render(&svc, &c, outcome))
}

/// The command a body key and its argument ask for (400 when malformed).
fn parse(name: &str, arg: &Value, mv: Mv) -> NResult<ServerCommand> {
    let power = |p| Ok(ServerCommand::Power(p));
    match name {
        "os-stop" => power(Power::Stop),
        "os-start" => power(Power::Start),
        "pause" => power(Power::Pause),
        "unpause" => power(Power::Unpause),
        "suspend" => power(Power::Suspend),
        "resume" => power(Power::Resume),
        "reboot" => reboot(arg),
        "lock" => lock(arg, mv),
        "unlock" => Ok(ServerCommand::Unlock),
        "rescue" => Ok(ServerCommand::Rescue {
            admin_pass: string(arg, "adminPass"),
            image: string(arg, "rescue_image_ref"),
        }),
        "unrescue" => Ok(ServerCommand::Unrescue),
        "os-getConsoleOutput" => console_output(arg),
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getSerialConsole" | "os-getRDPConsole" => {
            Ok(ServerCommand::GetConsole {
                kind: string(arg, "type").unwrap_or_else(|| "novnc".into()),
            })
        }
        "injectNetworkInfo" => Ok(ServerCommand::InjectNetworkInfo),
        "os-resetState" => reset_state(arg),
        "forceDelete" => Ok(ServerCommand::ForceDelete),
        "restore" => Ok(ServerCommand::Restore),
        "changePassword" => Ok(ServerCommand::ChangePassword {
            admin_pass: string(arg, "adminPass")
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute adminPass."))?,
        }),
        "createImage" | "createBackup" => create_image(arg, name == "createBackup"),
        "rebuild" => rebuild(arg, mv),
        "resize" => resize(arg),
        "migrate" => Ok(ServerCommand::Migrate {
            host: string(arg, "host"),
        }),
        "confirmResize" => Ok(ServerCommand::ConfirmResize),
        "revertResize" => Ok(ServerCommand::RevertResize),
        "shelve" => Ok(ServerCommand::Shelve),
        "shelveOffload" => Ok(ServerCommand::ShelveOffload),
        "unshelve" => unshelve(arg, mv),
        "addSecurityGroup" | "removeSecurityGroup" => Ok(ServerCommand::SecurityGroup {
            name: security_group_name(arg)?,
            add: name == "addSecurityGroup",
        }),
        "os-migrateLive" | "evacuate" => Ok(ServerCommand::LiveMigrate {
            action: name.to_string(),
        }),
        _ => Err(NovaError::bad(format!("There is no such action: {name}"))),
    }
}

/// Nova's answer to each outcome.
fn render(svc: &ComputeService, c: &Caller, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Accepted => StatusCode::ACCEPTED.into_response(),
        Outcome::Done => StatusCode::NO_CONTENT.into_response(),
        Outcome::AdminPass(p) => json_resp(StatusCode::OK, json!({"adminPass": p})),
        Outcome::ConsoleOutput(text) => json_resp(StatusCode::OK, json!({"output": text})),
        Outcome::Console { kind, url } => json_resp(
            StatusCode::OK,
            json!({"console": {"type": kind, "url": url}}),
        ),
        Outcome::Image(image_id) if c.mv.at_least(45) => {
            json_resp(StatusCode::ACCEPTED, json!({"image_id": image_id}))
        }
        Outcome::Image(image_id) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(h) = HeaderValue::from_str(&format!("{}/images/{image_id}", svc.base_url)) {
                r.headers_mut().insert(header::LOCATION, h);
            }
            r
        }
        Outcome::Rebuilt {
            instance,
            admin_pass,
        } => {
            let mut v = super::servers::update_view(svc, c, &instance);
            if c.mv.at_least(57) {
                // Rebuild answers with the user data it was given (2.57), at the top level.
                if let Some(o) = v.as_object_mut() {
                    o.remove("OS-EXT-SRV-ATTR:user_data");
                }
                v["user_data"] = json!(instance.user_data);
            }
            v["adminPass"] = json!(admin_pass);
            json_resp(StatusCode::ACCEPTED, json!({"server": v}))
        }
    }
}

fn string(arg: &Value, key: &str) -> Option<String> {
    arg.get(key).and_then(Value::as_str).map(str::to_string)
}

fn reboot(arg: &Value) -> NResult<ServerCommand> {
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
    Ok(ServerCommand::Reboot { hard })
}

fn lock(arg: &Value, mv: Mv) -> NResult<ServerCommand> {
    let reason = match arg.get("locked_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if mv.at_least(73) && r.len() <= 255 => Some(r.clone()),
        Some(_) => {
            return Err(NovaError::bad(
                "Invalid input for field/attribute locked_reason.",
            ));
        }
    };
    Ok(ServerCommand::Lock { reason })
}

fn console_output(arg: &Value) -> NResult<ServerCommand> {
    let lines = match arg.get("length") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute length."))?;
            if n < -1 {
                return Err(NovaError::bad("Invalid input for field/attribute length."));
            }
            usize::try_from(n).ok()
        }
    };
    Ok(ServerCommand::ConsoleOutput { lines })
}

fn reset_state(arg: &Value) -> NResult<ServerCommand> {
    let state = arg.get("state").and_then(Value::as_str).unwrap_or("");
    let to = match state {
        "active" => ResetTo::Active,
        "error" => ResetTo::Error,
        _ => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute state. Value: {state}. '{state}' is not one of ['active', 'error']"
            )));
        }
    };
    Ok(ServerCommand::ResetState(to))
}

fn create_image(arg: &Value, backup: bool) -> NResult<ServerCommand> {
    let name = arg
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))?
        .to_string();
    let metadata = match arg.get("metadata") {
        Some(m) => super::servers::check_metadata(m)?,
        None => BTreeMap::new(),
    };
    let backup = if backup {
        let bt = arg.get("backup_type").and_then(Value::as_str);
        let rot = arg.get("rotation").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match (bt, rot.and_then(|r| usize::try_from(r).ok())) {
            (Some(b), Some(r)) => Some(Backup {
                backup_type: b.to_string(),
                rotation: r,
            }),
            _ => {
                return Err(NovaError::bad(
                    "Invalid input for field/attribute backup_type/rotation.",
                ));
            }
        }
    } else {
        None
    };
    Ok(ServerCommand::CreateImage(NewImage {
        name,
        metadata,
        backup,
    }))
}

/// `Some(None)` for an explicit `null`, `Some(Some(s))` for a string, at
/// or after microversion `since`; ignored before it.
fn nullable(o: &Map<String, Value>, key: &str, mv: Mv, since: u16) -> Option<Option<String>> {
    if !mv.at_least(since) {
        return None;
    }
    o.get(key).map(|v| v.as_str().map(str::to_string))
}

/// `unshelve`: no body before 2.77; then `null` or an availability zone;
/// from 2.91 also a host, and a null zone unpins the server.
fn unshelve(arg: &Value, mv: Mv) -> NResult<ServerCommand> {
    let none = ServerCommand::Unshelve {
        availability_zone: None,
        host: None,
    };
    if !mv.at_least(77) || arg.is_null() {
        return Ok(none);
    }
    let invalid = |why: String| {
        NovaError::bad(format!(
            "Invalid input for field/attribute unshelve. Value: {arg}. {why}"
        ))
    };
    let Some(o) = arg.as_object() else {
        return Err(invalid(format!("{arg} is not of type 'object', 'null'")));
    };
    let known: &[&str] = if mv.at_least(91) {
        &["availability_zone", "host"]
    } else {
        &["availability_zone"]
    };
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let availability_zone = match o.get("availability_zone") {
        None if !mv.at_least(91) => {
            return Err(invalid("'availability_zone' is a required property".into()));
        }
        None => None,
        Some(Value::Null) if mv.at_least(91) => Some(None),
        Some(Value::String(z)) if !z.trim().is_empty() && z.len() <= 255 => Some(Some(z.clone())),
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute availability_zone. Value: {v}."
            )));
        }
    };
    let host = match o.get("host") {
        None => None,
        Some(Value::String(h)) => Some(h.clone()),
        Some(v) => {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute host. Value: {v}. {v} is not of type 'string'"
            )));
        }
    };
    Ok(ServerCommand::Unshelve {
        availability_zone,
        host,
    })
}

fn rebuild(arg: &Value, mv: Mv) -> NResult<ServerCommand> {
    let o = arg
        .as_object()
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute rebuild."))?;
    for k in o.keys() {
        let known = match k.as_str() {
            "imageRef" | "name" | "adminPass" | "metadata" | "preserve_ephemeral"
            | "OS-DCF:diskConfig" | "accessIPv4" | "accessIPv6" => true,
            "personality" => !mv.at_least(57),
            "description" => mv.at_least(19),
            "key_name" => mv.at_least(54),
            "user_data" => mv.at_least(57),
            "trusted_image_certificates" => mv.at_least(63),
            "hostname" => mv.at_least(90),
            _ => false,
        };
        if !known {
            return Err(NovaError::bad(format!(
                "Invalid input for field/attribute rebuild. Value: {arg}. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
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
    let disk_config = super::servers::disk_config_of(o.get("OS-DCF:diskConfig"))?;
    let name = o
        .get("name")
        .map(|n| {
            n.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 255 && s.trim() == *s)
                .map(str::to_string)
                .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))
        })
        .transpose()?;
    let metadata = o
        .get("metadata")
        .map(super::servers::check_metadata)
        .transpose()?;
    let access_ip_v4 = string(arg, "accessIPv4");
    if let Some(x) = &access_ip_v4
        && !x.is_empty()
        && x.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute accessIPv4. Value: {x}."
        )));
    }
    let access_ip_v6 = string(arg, "accessIPv6");
    if let Some(x) = &access_ip_v6
        && !x.is_empty()
        && x.parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(NovaError::bad(format!(
            "Invalid input for field/attribute accessIPv6. Value: {x}."
        )));
    }
    Ok(ServerCommand::Rebuild(Box::new(Rebuild {
        image_ref,
        disk_config,
        name,
        metadata,
        access_ip_v4,
        access_ip_v6,
        description: nullable(o, "description", mv, 19),
        key_name: nullable(o, "key_name", mv, 54),
        user_data: nullable(o, "user_data", mv, 57),
        admin_pass: string(arg, "adminPass"),
        hostname: o
            .get("hostname")
            .map(|h| super::servers::check_hostname(h, mv))
            .transpose()?,
    })))
}

fn resize(arg: &Value) -> NResult<ServerCommand> {
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
    let disk_config = super::servers::disk_config_of(arg.get("OS-DCF:diskConfig"))?;
    Ok(ServerCommand::Resize {
        flavor_id: fref.rsplit('/').next().unwrap_or(&fref).to_string(),
        disk_config,
    })
}

fn security_group_name(arg: &Value) -> NResult<String> {
    arg.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| NovaError::bad("Invalid input for field/attribute name."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_body_key_parses_to_its_command() {
        let mv = Mv(2, 79);
        assert!(matches!(
            parse("os-stop", &Value::Null, mv),
            Ok(ServerCommand::Power(Power::Stop))
        ));
        assert!(matches!(
            parse("reboot", &json!({"type": "Hard"}), mv),
            Ok(ServerCommand::Reboot { hard: true })
        ));
        assert!(parse("reboot", &json!({"type": "warm"}), mv).is_err());
        assert!(matches!(
            parse("os-getConsoleOutput", &json!({"length": "-1"}), mv),
            Ok(ServerCommand::ConsoleOutput { lines: None })
        ));
        assert!(matches!(
            parse("os-getConsoleOutput", &json!({"length": 5}), mv),
            Ok(ServerCommand::ConsoleOutput { lines: Some(5) })
        ));
        assert!(parse("os-getConsoleOutput", &json!({"length": -2}), mv).is_err());
        assert!(matches!(
            parse(
                "createBackup",
                &json!({"name": "b", "backup_type": "daily", "rotation": 2}),
                mv
            ),
            Ok(ServerCommand::CreateImage(NewImage {
                backup: Some(Backup { rotation: 2, .. }),
                ..
            }))
        ));
        assert!(parse("createBackup", &json!({"name": "b", "rotation": 2}), mv).is_err());
        assert!(parse("lock", &json!({"locked_reason": "x"}), Mv(2, 72)).is_err());
        match parse(
            "rebuild",
            &json!({"imageRef": "http://x/images/abc", "key_name": null}),
            mv,
        ) {
            Ok(ServerCommand::Rebuild(r)) => {
                assert_eq!(r.image_ref, "abc");
                assert_eq!(r.key_name, Some(None));
                assert_eq!(r.description, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("frobnicate", &Value::Null, mv).is_err());
    }
}
