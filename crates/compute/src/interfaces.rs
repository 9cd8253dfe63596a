//! `os-interface` on the host: an attached port's NIC is plugged into the
//! guest by its host's agent, and unplugged before the port leaves, as
//! Nova's `attach_interface`/`detach_interface` do. When the host cannot
//! plug it, the port is detached again and the request fails with Nova's
//! `InterfaceAttachFailed` (500); a NIC the guest will not release stays,
//! with Nova's `InterfaceDetachFailed` (400).
use crate::error::{NResult, NovaError};
use crate::model::Instance;
use crate::{ComputeService, ops};
use ferro_rpc::compute::ComputeRequest;
use serde_json::Value;

/// Attaches `nic` (`{"port": id}`, `{"uuid": net, "fixed_ip": ip}` or
/// `"auto"`) to the instance and plugs it; Nova's `interfaceAttachment`.
pub async fn attach(
    svc: &ComputeService,
    i: &Instance,
    nic: &Value,
    tag: Option<String>,
    request_id: &str,
) -> NResult<Value> {
    // The action's event, as Nova's compute manager records it.
    const EV: &str = "compute_attach_interface";
    let host = i.host.clone().unwrap_or_default();
    let on = Some(host.as_str()).filter(|h| !h.is_empty());
    ops::event(svc, &i.uuid, request_id, EV, on, None).await;
    let r = plug(svc, i, nic, tag, request_id, &host).await;
    let result = r.as_ref().map(|_| ()).map_err(|e| e.message.clone());
    ops::event(svc, &i.uuid, request_id, EV, on, Some(result)).await;
    r
}

async fn plug(
    svc: &ComputeService,
    i: &Instance,
    nic: &Value,
    tag: Option<String>,
    request_id: &str,
    host: &str,
) -> NResult<Value> {
    let host = host.to_string();
    let v = svc
        .network
        .attach_interface(&i.uuid, &i.project_id, &host, nic)
        .await?;
    let port = v["port_id"].as_str().unwrap_or_default().to_string();
    if let Some(t) = tag.clone() {
        let p = port.clone();
        svc.state
            .update_instance(&i.uuid, move |i| {
                i.vif_tags.insert(p, t);
                Ok(())
            })
            .await?;
    }
    let Some(mut vif) = ops::vif_specs(svc, i)
        .into_iter()
        .find(|x| x.port_id == port)
    else {
        return Ok(v);
    };
    vif.tag = tag;
    if host.is_empty() {
        return Ok(v);
    }
    let req = ComputeRequest::AttachInterface {
        uuid: i.uuid.clone(),
        vif,
    };
    if let Err(e) = ops::call_agent(svc, &host, req, Some(request_id)).await {
        tracing::warn!(instance = %i.uuid, %port, "plugging the NIC failed: {e}");
        if let Err(u) = svc.network.detach_interface(&i.uuid, &port).await {
            tracing::error!(instance = %i.uuid, %port, "undoing the attach: {}", u.log_message());
        }
        forget_tag(svc, &i.uuid, &port).await;
        return Err(NovaError::new(
            500,
            format!("Failed to attach network adapter device to {}", i.uuid),
        ));
    }
    Ok(v)
}

/// Unplugs the port's NIC, then detaches the port.
pub async fn detach(
    svc: &ComputeService,
    i: &Instance,
    port: &str,
    request_id: &str,
) -> NResult<()> {
    const EV: &str = "compute_detach_interface";
    let on = i.host.as_deref().filter(|h| !h.is_empty());
    ops::event(svc, &i.uuid, request_id, EV, on, None).await;
    let r = unplug(svc, i, port, request_id).await;
    let result = r.as_ref().map(|_| ()).map_err(|e| e.message.clone());
    ops::event(svc, &i.uuid, request_id, EV, on, Some(result)).await;
    r
}

async fn unplug(svc: &ComputeService, i: &Instance, port: &str, request_id: &str) -> NResult<()> {
    let attached = svc
        .network
        .interfaces(&i.uuid)
        .iter()
        .any(|v| v["port_id"].as_str() == Some(port));
    if let Some(host) = i.host.as_deref().filter(|h| attached && !h.is_empty()) {
        let req = ComputeRequest::DetachInterface {
            uuid: i.uuid.clone(),
            port_id: port.to_string(),
        };
        if let Err(e) = ops::call_agent(svc, host, req, Some(request_id)).await {
            tracing::warn!(instance = %i.uuid, %port, "unplugging the NIC failed: {e}");
            return Err(NovaError::bad(format!(
                "Failed to detach network adapter device from {}",
                i.uuid
            )));
        }
    }
    svc.network.detach_interface(&i.uuid, port).await?;
    forget_tag(svc, &i.uuid, port).await;
    Ok(())
}

/// Drops the device role tag of a port that left the instance.
async fn forget_tag(svc: &ComputeService, uuid: &str, port: &str) {
    let p = port.to_string();
    let r = svc
        .state
        .update_instance(uuid, move |i| {
            i.vif_tags.remove(&p);
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(instance = %uuid, %port, "forgetting the port's tag: {e}");
    }
}
