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
    /// 2.90: the guest's new hostname.
    pub hostname: Option<String>,
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
        hostname,
    } = r;
    let image = svc
        .image
        .get(c.token(), &image_ref)
        .await?
        .ok_or_else(|| NovaError::bad("Invalid imageRef provided."))?;
    if image["status"] != "active" {
        return Err(NovaError::bad(format!("Image {image_ref} is not active.")));
    }
    let current = crate::servers::get_instance(svc, c, id)?;
    let volume_backed = crate::volumes::is_volume_backed(&current);
    // Nova checks the lock and state first (begin's errors), then this.
    let settled = matches!(current.vm_state.as_str(), "active" | "stopped" | "error")
        && current.task_state.is_none()
        && !current.locked;
    if settled && volume_backed {
        // Nova: a volume-backed server keeps its root volume; only the
        // image that volume was made from may be given (2.93 re-images it).
        let root = crate::volumes::volume_bdms(&current)
            .find(|b| b.boot_index == Some(0))
            .and_then(|b| b.volume_id.clone().or(b.uuid.clone()))
            .unwrap_or_default();
        let orig = svc
            .volumes
            .get(&c.project(), c.is_admin(svc), &root)
            .and_then(|v| {
                v["volume_image_metadata"]["image_id"]
                    .as_str()
                    .map(str::to_string)
            });
        if !c.mv.at_least(93) && orig.as_deref() != Some(image_ref.as_str()) {
            return Err(NovaError::bad(format!(
                "Image {image_ref} is unacceptable: Unable to rebuild with a different image for a volume-backed server."
            )));
        }
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
    // From 2.93 a volume-backed server's root volume is re-imaged (even
    // with the image it had), as Nova does.
    let reimage = (volume_backed && c.mv.at_least(93)).then(|| image_ref.clone());
    let i = svc
        .state
        .update_instance(id, move |i| {
            if dc.is_some() {
                i.disk_config = dc;
            }
            // A volume-backed server's image_ref stays empty (Nova's mark
            // of one).
            if !volume_backed {
                i.image_ref = image_ref;
            }
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
            if let Some(h) = hostname {
                i.hostname = h;
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
        let r = async {
            ops::call_agent(
                &svc2,
                &host,
                ComputeRequest::Destroy {
                    uuid: i2.uuid.to_string(),
                },
                Some(&rid),
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Some(image) = &reimage {
                crate::volumes::reimage_root_volume(&svc2, &i2.uuid, &host, image, &acting).await?;
            }
            // The mappings as they are now (a re-imaged root has a new attachment).
            let spec = {
                let st = svc2.state.read();
                let now = st.instances.get(&i2.uuid).unwrap_or(&i2);
                ops::guest_spec(&svc2, now)
            };
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
