//! `rebuild`: a new image (or the same one) under the same server, on its host.
use super::action_support::begin;
use super::request::{Caller, json_resp};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::ops;
use crate::state::now;
use axum::http::StatusCode;
use axum::response::Response;
use ferro_rpc::compute::ComputeRequest;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) async fn rebuild(
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
