//! `rebuild`: a new image (or the same one) under the same server, on its host.
use super::Outcome;
use super::guard::begin;
use super::power::generated_password;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::ops;
use crate::state::now;
use ferro_rpc::compute::ComputeRequest;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A rebuild's arguments. `Some(None)` clears a field (2.19, 2.54, 2.57
/// allow `null`); `None` leaves it.
#[derive(Clone, Debug, Default)]
pub struct Rebuild {
    pub image_ref: String,
    pub disk_config: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    pub description: Option<Option<String>>,
    pub key_name: Option<Option<String>>,
    pub user_data: Option<Option<String>>,
    pub admin_pass: Option<String>,
}

pub(super) async fn rebuild(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    r: Rebuild,
) -> NResult<Outcome> {
    let Rebuild {
        image_ref,
        disk_config: dc,
        name,
        metadata: meta,
        access_ip_v4: v4,
        access_ip_v6: v6,
        description: desc,
        key_name: key,
        user_data,
        admin_pass,
    } = r;
    let image = svc
        .image
        .get(c.token(), &image_ref)
        .await?
        .ok_or_else(|| NovaError::bad("Invalid imageRef provided."))?;
    if image["status"] != "active" {
        return Err(NovaError::bad(format!("Image {image_ref} is not active.")));
    }
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
    let pass = admin_pass.unwrap_or_else(generated_password);
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
    let acting = c.acting();
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
                ops::spawn_request(&svc2, spec.clone(), &acting).await,
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
    Ok(Outcome::Rebuilt {
        instance: Box::new(i),
        admin_pass: pass,
    })
}
