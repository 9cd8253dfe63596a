//! `/servers`: create, list (filters, sorting, paging), show, update,
//! delete, and the sub-resources (metadata, tags, ips, instance actions,
//! password, remote consoles).
use super::request::{Caller, Mv, St, body, json_resp, link};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Flavor, Instance, status_of};
use crate::state::iso_z;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::servers::{check_locked, delete_instance, get_instance, visible};

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/servers/{id}", get(show).put(update).delete(delete))
        .route("/servers/{id}/ips", get(ips))
        .route("/servers/{id}/ips/{net}", get(ips_net))
}

pub fn host_id(project: &str, host: Option<&str>) -> String {
    match host {
        Some(h) if !h.is_empty() => hex::encode(Sha224::digest(format!("{project}{h}").as_bytes())),
        _ => String::new(),
    }
}

pub fn flavor_embed(f: &Flavor, mv: Mv, admin: bool) -> Value {
    let _ = admin;
    let mut v = json!({
        "vcpus": f.vcpus, "ram": f.ram, "disk": f.disk, "ephemeral": f.ephemeral,
        "swap": f.swap, "original_name": f.name,
    });
    if mv.at_least(47) {
        v["extra_specs"] = json!(f.extra_specs);
    }
    v
}

/// Nova's server view (`detail` = the full one; else id/name/links).
pub fn view(svc: &ComputeService, c: &Caller, i: &Instance, detail: bool) -> Value {
    let base = &svc.base_url;
    let links = link(base, &format!("servers/{}", i.uuid));
    if !detail {
        return json!({"id": i.uuid, "name": i.name, "links": links});
    }
    let mv = c.mv;
    let admin = c.is_admin(svc);
    let image = if i.image_ref.is_empty() {
        json!("")
    } else {
        let mut im = json!({"id": i.image_ref, "links": [{"rel": "bookmark", "href": format!("{}/images/{}", base, i.image_ref)}]});
        if mv.at_least(98) {
            im["properties"] = json!(image_meta_props(&i.image_properties));
        }
        im
    };
    let flavor = if mv.at_least(47) {
        flavor_embed(&i.flavor, mv, admin)
    } else {
        json!({"id": i.flavor.id, "links": [{"rel": "bookmark", "href": format!("{}/flavors/{}", base, i.flavor.id)}]})
    };
    let status = status_of(&i.vm_state, i.task_state.as_deref());
    let mut v = json!({
        "id": i.uuid,
        "name": i.name,
        "status": status,
        "tenant_id": i.project_id,
        "user_id": i.user_id,
        "metadata": i.metadata,
        "hostId": host_id(&i.project_id, i.host.as_deref()),
        "image": image,
        "flavor": flavor,
        "created": iso_z(&i.created_at),
        "updated": iso_z(&i.updated_at),
        "addresses": svc.network.addresses(&i.uuid).map(Value::Object).unwrap_or_else(|| json!(i.addresses)),
        "accessIPv4": i.access_ip_v4,
        "accessIPv6": i.access_ip_v6,
        "links": links,
        "OS-DCF:diskConfig": i.disk_config.as_deref().unwrap_or("MANUAL"),
        "OS-EXT-AZ:availability_zone": i.availability_zone.clone().unwrap_or_default(),
        "config_drive": if i.config_drive { "True" } else { "" },
        "key_name": i.key_name,
        "OS-SRV-USG:launched_at": i.launched_at,
        "OS-SRV-USG:terminated_at": i.terminated_at,
        "OS-EXT-STS:task_state": i.task_state,
        "OS-EXT-STS:vm_state": i.vm_state,
        "OS-EXT-STS:power_state": i.power_state,
        "os-extended-volumes:volumes_attached": i.bdms.iter().filter(|b| b.destination_type == "volume").map(|b| {
            let mut x = json!({"id": b.volume_id.clone().or(b.uuid.clone())});
            if mv.at_least(3) { x["delete_on_termination"] = json!(b.delete_on_termination); }
            x
        }).collect::<Vec<_>>(),
    });
    // Nova shows progress only while it means something.
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        v["progress"] = json!(0);
    }
    if !i.security_groups.is_empty() {
        v["security_groups"] = json!(
            i.security_groups
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        );
    }
    if admin {
        v["OS-EXT-SRV-ATTR:host"] = json!(i.host);
        v["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{:08x}", i.internal_id));
        v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(i.host);
        if mv.at_least(3) {
            v["OS-EXT-SRV-ATTR:reservation_id"] = json!(i.reservation_id);
            v["OS-EXT-SRV-ATTR:launch_index"] = json!(i.launch_index);
            v["OS-EXT-SRV-ATTR:hostname"] = json!(i.hostname);
            v["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            v["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            v["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            v["OS-EXT-SRV-ATTR:user_data"] = json!(i.user_data);
        }
    }
    if mv.at_least(90) {
        // From 2.90 everyone sees the hostname.
        v["OS-EXT-SRV-ATTR:hostname"] = json!(i.hostname);
    }
    if mv.at_least(96) {
        v["pinned_availability_zone"] = json!(crate::servers::pinned_az(i));
    }
    if mv.at_least(100) {
        v["scheduler_hints"] = scheduler_hints(i);
    }
    if mv.at_least(9) {
        v["locked"] = json!(i.locked);
    }
    if mv.at_least(16) && admin {
        v["host_status"] = json!(if i.host.is_some() { "UP" } else { "" });
    }
    if mv.at_least(19) {
        v["description"] = json!(i.description);
    }
    if mv.at_least(26) {
        v["tags"] = json!(i.tags);
    }
    if mv.at_least(63) {
        v["trusted_image_certificates"] = i.trusted_certs.clone().unwrap_or(Value::Null);
    }
    if mv.at_least(73) {
        v["locked_reason"] = json!(i.locked_reason);
    }
    if let Some(f) = &i.fault
        && (status == "ERROR" || status == "DELETED")
    {
        let mut fv = json!({"code": f.code, "message": f.message, "created": iso_z(&f.created)});
        if admin || f.code != 500 {
            fv["details"] = json!(f.details);
        }
        v["fault"] = fv;
    }
    v
}

/// The scheduler hints as Nova's request spec keeps them: each a list of
/// strings.
fn scheduler_hints(i: &Instance) -> Value {
    let as_str = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    };
    let m: serde_json::Map<String, Value> = i
        .scheduler_hints
        .iter()
        .map(|(k, v)| {
            let list: Vec<String> = match v {
                Value::Array(a) => a.iter().map(as_str).collect(),
                other => vec![as_str(other)],
            };
            (k.clone(), json!(list))
        })
        .collect();
    Value::Object(m)
}

/// The image properties a server shows from 2.98: those of its image Nova
/// knows as `ImageMetaProps` (or their legacy names), as recorded at boot.
fn image_meta_props(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .filter(|(k, _)| {
            IMAGE_META_PROPS.contains(&k.as_str()) || LEGACY_IMAGE_PROPS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Nova's `ImageMetaProps` fields.
const IMAGE_META_PROPS: &[&str] = &[
    "hw_architecture",
    "hw_emulation_architecture",
    "hw_auto_disk_config",
    "hw_boot_menu",
    "hw_cdrom_bus",
    "hw_cpu_cores",
    "hw_cpu_sockets",
    "hw_cpu_max_cores",
    "hw_cpu_max_sockets",
    "hw_cpu_max_threads",
    "hw_cpu_policy",
    "hw_cpu_thread_policy",
    "hw_cpu_realtime_mask",
    "hw_cpu_threads",
    "hw_device_id",
    "hw_disk_bus",
    "hw_disk_type",
    "hw_floppy_bus",
    "hw_firmware_type",
    "hw_firmware_stateless",
    "hw_input_bus",
    "hw_ipxe_boot",
    "hw_locked_memory",
    "hw_machine_type",
    "hw_mem_encryption",
    "hw_mem_encryption_model",
    "hw_mem_page_size",
    "hw_numa_nodes",
    "hw_numa_cpus",
    "hw_numa_mem",
    "hw_pci_numa_affinity_policy",
    "hw_pointer_model",
    "hw_pmu",
    "hw_qemu_guest_agent",
    "hw_rescue_bus",
    "hw_rescue_device",
    "hw_rng_model",
    "hw_time_hpet",
    "hw_serial_port_count",
    "hw_scsi_model",
    "hw_video_model",
    "hw_video_ram",
    "hw_vif_model",
    "hw_viommu_model",
    "hw_vm_mode",
    "hw_watchdog_action",
    "hw_vif_multiqueue_enabled",
    "hw_tpm_model",
    "hw_tpm_version",
    "hw_ephemeral_encryption",
    "hw_ephemeral_encryption_secret_uuid",
    "hw_virtio_packed_ring",
    "hw_maxphysaddr_mode",
    "hw_maxphysaddr_bits",
    "hw_sound_model",
    "hw_usb_model",
    "hw_redirected_usb_ports",
    "img_bittorrent",
    "img_bdm_v2",
    "img_cache_in_nova",
    "img_compression_level",
    "img_hv_requested_version",
    "img_hv_type",
    "img_config_drive",
    "img_linked_clone",
    "img_mappings",
    "img_owner_id",
    "img_root_device_name",
    "img_use_agent",
    "img_version",
    "img_signature",
    "img_signature_hash_method",
    "img_signature_certificate_uuid",
    "img_signature_key_type",
    "img_hide_hypervisor_id",
    "os_admin_user",
    "os_command_line",
    "os_distro",
    "os_require_quiesce",
    "os_secure_boot",
    "os_skip_agent_inject_files_at_boot",
    "os_skip_agent_inject_ssh",
    "os_type",
    "traits_required",
];

/// The legacy names `ImageMetaProps` still reads.
const LEGACY_IMAGE_PROPS: &[&str] = &[
    "architecture",
    "owner_id",
    "vmware_disktype",
    "vmware_image_version",
    "vmware_ostype",
    "auto_disk_config",
    "ipxe_boot",
    "xenapi_device_id",
    "xenapi_image_compression_level",
    "vmware_linked_clone",
    "xenapi_use_agent",
    "xenapi_skip_agent_inject_ssh",
    "xenapi_skip_agent_inject_files_at_boot",
    "cache_in_nova",
    "vm_mode",
    "bittorrent",
    "mappings",
    "block_device_mapping",
    "bdm_v2",
    "root_device_name",
    "hypervisor_version_requires",
    "hypervisor_type",
];

/// Before 2.75, PUT and rebuild answer with the basic server view (no
/// extended attributes); from 2.75 with everything `show` has.
pub fn update_view(svc: &ComputeService, c: &Caller, i: &Instance) -> Value {
    let mut v = view(svc, c, i, true);
    if !c.mv.at_least(75)
        && let Some(o) = v.as_object_mut()
    {
        o.retain(|k, _| {
            let extended = k.starts_with("OS-EXT-") || k.starts_with("OS-SRV-USG:");
            !extended
                && !matches!(
                    k.as_str(),
                    "config_drive"
                        | "key_name"
                        | "os-extended-volumes:volumes_attached"
                        | "security_groups"
                        | "host_status"
                        | "fault"
                )
        });
        // Before 2.75 the addresses carry only `version` and `addr` here.
        if let Some(Value::Object(nets)) = o.get_mut("addresses") {
            for list in nets.values_mut() {
                if let Some(a) = list.as_array_mut() {
                    for x in a.iter_mut().filter_map(Value::as_object_mut) {
                        x.retain(|k, _| k == "version" || k == "addr");
                    }
                }
            }
        }
        if c.mv.at_least(54) {
            o.insert("key_name".into(), json!(i.key_name));
        }
    }
    if c.mv.at_least(71) {
        v["server_groups"] = json!(i.server_group.iter().collect::<Vec<_>>());
    }
    v
}

/// A requested `hostname`: Nova's `hostname` schema from 2.90, its `fqdn`
/// one from 2.94.
pub(super) fn check_hostname(v: &Value, mv: Mv) -> NResult<String> {
    let invalid = |why: String| {
        bad(format!(
            "Invalid input for field/attribute hostname. Value: {v}. {why}"
        ))
    };
    let Value::String(h) = v else {
        return Err(invalid(format!("{v} is not of type 'string'")));
    };
    let n = h.chars().count();
    if mv.at_least(94) {
        if n < 1 {
            return Err(invalid(format!("{v} should be non-empty")));
        }
        if n > 255 {
            return Err(invalid(format!("{v} is too long")));
        }
        if !h
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(invalid(format!("{v} does not match '^[a-zA-Z0-9-._]*$'")));
        }
    } else {
        if n < 2 {
            return Err(invalid(format!("{v} is too short")));
        }
        if n > 63 {
            return Err(invalid(format!("{v} is too long")));
        }
        let b = h.as_bytes();
        let ok = b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(invalid(format!(
                "{v} does not match '^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$'"
            )));
        }
    }
    Ok(h.clone())
}

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

pub(super) fn check_name(v: &Value, what: &str) -> NResult<String> {
    let s = v.as_str().ok_or_else(|| {
        bad(format!(
            "Invalid input for field/attribute {what}. Value: {v}. {v} is not of type 'string'"
        ))
    })?;
    if s.is_empty() || s.len() > 255 {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Value: {s}. '{s}' is too long or empty"
        )));
    }
    if s.trim() != s {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Value: {s}. '{s}' does not match '^(?! )[a-zA-Z0-9]...'"
        )));
    }
    Ok(s.to_string())
}

pub fn check_metadata(v: &Value) -> NResult<BTreeMap<String, String>> {
    let obj = v.as_object().ok_or_else(|| {
        bad("Invalid input for field/attribute metadata. Value must be an object.")
    })?;
    let mut out = BTreeMap::new();
    for (k, val) in obj {
        if k.is_empty() || k.len() > 255 {
            return Err(bad(format!(
                "Invalid input for field/attribute metadata. Value: {k}. Key length must be 1-255."
            )));
        }
        let s = val.as_str().ok_or_else(|| {
            bad(format!(
                "Invalid input for field/attribute {k}. Value: {val}. {val} is not of type 'string'"
            ))
        })?;
        if s.len() > 255 {
            return Err(bad(format!(
                "Invalid input for field/attribute {k}. Value is too long."
            )));
        }
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

pub fn check_tag(t: &str) -> NResult<()> {
    if t.is_empty() || t.len() > 60 || t.contains('/') || t.contains(',') {
        return Err(bad(format!(
            "Invalid input for field/attribute tags. Value: {t}. Tags must be 1-60 characters without '/' or ','."
        )));
    }
    Ok(())
}

pub fn uuid_like(s: &str) -> bool {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------- list

async fn show(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let mut v = view(&svc, &c, &i, true);
    if c.mv.at_least(71) {
        v["server_groups"] = json!(i.server_group.iter().collect::<Vec<_>>());
    }
    Ok(json_resp(StatusCode::OK, json!({"server": v})))
}

async fn update(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let s = b
        .get("server")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            bad("Invalid input for field/attribute server. 'server' is a required property")
        })?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:servers:update")?;
    for k in s.keys() {
        let ok = matches!(
            k.as_str(),
            "name" | "accessIPv4" | "accessIPv6" | "OS-DCF:diskConfig"
        ) || (k == "description" && c.mv.at_least(19))
            || (k == "hostname" && c.mv.at_least(90));
        if !ok {
            return Err(bad(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let name = s.get("name").map(|n| check_name(n, "name")).transpose()?;
    let dc = disk_config_of(s.get("OS-DCF:diskConfig"))?;
    let hostname = s
        .get("hostname")
        .map(|h| check_hostname(h, c.mv))
        .transpose()?;
    let desc = match s.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(d)) if d.len() <= 255 => Some(Some(d.clone())),
        Some(_) => return Err(bad("Invalid input for field/attribute description.")),
    };
    let v4 = match s.get("accessIPv4") {
        None => None,
        Some(Value::String(x)) if x.is_empty() || x.parse::<std::net::Ipv4Addr>().is_ok() => {
            Some(x.clone())
        }
        Some(Value::Null) => Some(String::new()),
        Some(x) => {
            return Err(bad(format!(
                "Invalid input for field/attribute accessIPv4. Value: {x}. is not a 'ipv4'"
            )));
        }
    };
    let v6 = match s.get("accessIPv6") {
        None => None,
        Some(Value::String(x)) if x.is_empty() => Some(String::new()),
        Some(Value::String(x)) if x.parse::<std::net::Ipv6Addr>().is_ok() => {
            x.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string())
        }
        Some(Value::Null) => Some(String::new()),
        Some(x) => {
            return Err(bad(format!(
                "Invalid input for field/attribute accessIPv6. Value: {x}. is not a 'ipv6'"
            )));
        }
    };
    let i = svc
        .state
        .update_instance(&id, |i| {
            if let Some(n) = name {
                i.name = n;
            }
            if dc.is_some() {
                i.disk_config = dc;
            }
            if let Some(d) = desc {
                i.description = d;
            }
            if let Some(x) = v4 {
                i.access_ip_v4 = x;
            }
            if let Some(x) = v6 {
                i.access_ip_v6 = x;
            }
            if let Some(h) = hostname {
                i.hostname = h;
            }
            Ok(())
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server": update_view(&svc, &c, &i)}),
    ))
}

async fn delete(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    delete_instance(&svc, &c, &id, "delete").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ips(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let addrs = svc
        .network
        .addresses(&i.uuid)
        .map(Value::Object)
        .unwrap_or_else(|| json!(i.addresses));
    Ok(json_resp(StatusCode::OK, json!({ "addresses": addrs })))
}

async fn ips_net(
    AxState(svc): St,
    c: Caller,
    Path((id, net)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let live = svc.network.addresses(&i.uuid);
    let a = live
        .as_ref()
        .map(|m| m.get(&net))
        .unwrap_or_else(|| i.addresses.get(&net))
        .ok_or_else(|| {
            NovaError::not_found("Network could not be found in the instance's addresses.")
        })?;
    Ok(json_resp(StatusCode::OK, json!({ net: a })))
}

/// `OS-DCF:diskConfig`: AUTO or MANUAL (400 otherwise).
pub(super) fn last_segment(s: &str) -> String {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(s)
        .to_string()
}

pub fn disk_config_of(v: Option<&Value>) -> NResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(Value::String(x)) if x == "AUTO" || x == "MANUAL" => Ok(Some(x.clone())),
        Some(x) => Err(bad(format!(
            "Invalid input for field/attribute OS-DCF:diskConfig. Value: {x}. '{x}' is not one of ['AUTO', 'MANUAL']"
        ))),
    }
}
