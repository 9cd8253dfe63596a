//! `/servers`: create, list (filters, sorting, paging), show, update,
//! delete, and the sub-resources (metadata, tags, ips, instance actions,
//! password, remote consoles).
use super::{Caller, Mv, St, body, first, json_resp, link, paging, query};
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use crate::model::{Bdm, Flavor, Instance, status_of};
use crate::ops;
use crate::state::{Rec, State, iso_z, now};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<ComputeService>> {
    Router::new()
        .route("/servers", get(list).post(create))
        .route("/servers/detail", get(detail))
        .route("/servers/{id}", get(show).put(update).delete(delete))
        .route("/servers/{id}/ips", get(ips))
        .route("/servers/{id}/ips/{net}", get(ips_net))
        .route(
            "/servers/{id}/metadata",
            get(meta_list).put(meta_replace).post(meta_merge),
        )
        .route(
            "/servers/{id}/metadata/{key}",
            get(meta_get).put(meta_put).delete(meta_delete),
        )
        .route(
            "/servers/{id}/tags",
            get(tags_list).put(tags_replace).delete(tags_clear),
        )
        .route(
            "/servers/{id}/tags/{tag}",
            get(tag_check).put(tag_add).delete(tag_delete),
        )
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
}

/// The instance, if the caller may see it (404 otherwise, as Nova hides others' servers).
pub fn visible(svc: &ComputeService, c: &Caller, st: &State, id: &str) -> NResult<Instance> {
    match st.instances.get(id) {
        Some(i) if !i.deleted && (i.project_id == c.project() || c.is_admin(svc)) => Ok(i.clone()),
        _ => Err(NovaError::not_found(format!(
            "Instance {id} could not be found."
        ))),
    }
}

pub fn get_instance(svc: &ComputeService, c: &Caller, id: &str) -> NResult<Instance> {
    let st = svc.state.read();
    visible(svc, c, &st, id)
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
        json!({"id": i.image_ref, "links": [{"rel": "bookmark", "href": format!("{}/images/{}", base, i.image_ref)}]})
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

// ---------------------------------------------------------------- create

const CREATE_KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "networks",
    "security_groups",
    "key_name",
    "user_data",
    "metadata",
    "availability_zone",
    "block_device_mapping_v2",
    "block_device_mapping",
    "min_count",
    "max_count",
    "tags",
    "description",
    "return_reservation_id",
    "config_drive",
    "accessIPv4",
    "accessIPv6",
    "adminPass",
    "OS-DCF:diskConfig",
    "personality",
    "trusted_image_certificates",
    "host",
    "hypervisor_hostname",
    "hostname",
];

fn bad(m: impl Into<String>) -> NovaError {
    NovaError::bad(m)
}

fn check_name(v: &Value, what: &str) -> NResult<String> {
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

fn count(v: Option<&Value>, what: &str) -> NResult<Option<u32>> {
    match v {
        None => Ok(None),
        Some(x) => {
            let n = x
                .as_i64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    bad(format!(
                        "Invalid input for field/attribute {what}. Value: {x}."
                    ))
                })?;
            if n < 1 {
                return Err(bad(format!(
                    "Invalid input for field/attribute {what}. Value: {n}. {n} is less than the minimum of 1"
                )));
            }
            Ok(Some(n as u32))
        }
    }
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

fn last_segment(s: &str) -> String {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(s)
        .to_string()
}

fn new_reservation_id() -> String {
    let n: u64 = rand::random();
    format!("r-{:08x}", n as u32)
}

async fn create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    let b = body(&raw)?;
    let s = b.get("server").and_then(Value::as_object).ok_or_else(|| {
        bad("Invalid input for field/attribute server. 'server' is a required property")
    })?;
    c.require_member(&svc, &c.project(), "os_compute_api:servers:create")?;
    let mv = c.mv;
    for k in s.keys() {
        // Keys that exist only from (or until) a microversion.
        let allowed = CREATE_KEYS.contains(&k.as_str())
            && match k.as_str() {
                "description" => mv.at_least(19),
                "tags" => mv.at_least(52),
                "personality" => !mv.at_least(57),
                "trusted_image_certificates" => mv.at_least(63),
                "host" | "hypervisor_hostname" => mv.at_least(74),
                "hostname" => false,
                _ => true,
            };
        if !allowed {
            return Err(bad(format!(
                "Invalid input for field/attribute server. Value: {}. Additional properties are not allowed ('{k}' was unexpected)",
                Value::Object(s.clone())
            )));
        }
    }
    let name = check_name(
        s.get("name").ok_or_else(|| {
            bad("Invalid input for field/attribute server. 'name' is a required property")
        })?,
        "name",
    )?;
    let flavor_ref = match s.get("flavorRef") {
        Some(Value::String(f)) if !f.is_empty() => last_segment(f),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(bad(
                "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property",
            ));
        }
    };
    let disk_config = disk_config_of(s.get("OS-DCF:diskConfig"))?;
    let networks = match s.get("networks") {
        None if mv.at_least(37) => {
            return Err(bad(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        None => json!("auto"),
        Some(Value::String(x)) if (x == "auto" || x == "none") && mv.at_least(37) => json!(x),
        Some(Value::Array(a)) => {
            for n in a {
                let o = n
                    .as_object()
                    .ok_or_else(|| bad("Invalid input for field/attribute networks."))?;
                if let Some(u) = o.get("uuid").and_then(Value::as_str)
                    && !uuid_like(u)
                {
                    return Err(bad(format!(
                        "Bad networks format: network uuid is not in proper format ({u})"
                    )));
                }
                if let Some(ip) = o.get("fixed_ip").and_then(Value::as_str)
                    && ip.parse::<std::net::IpAddr>().is_err()
                {
                    return Err(bad(format!(
                        "Invalid input for field/attribute fixed_ip. Value: {ip}. '{ip}' is not a 'ipv4'"
                    )));
                }
            }
            Value::Array(a.clone())
        }
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute networks. Value: {other}."
            )));
        }
    };
    let min_count = count(s.get("min_count"), "min_count")?.unwrap_or(1);
    let max_count = count(s.get("max_count"), "max_count")?.unwrap_or(min_count);
    if min_count > max_count {
        return Err(bad("min_count must be <= max_count"));
    }
    let metadata = match s.get("metadata") {
        Some(m) => check_metadata(m)?,
        None => BTreeMap::new(),
    };
    {
        let st = svc.state.read();
        let lim = ops::quota_limits(&st, &c.project(), None)
            .get("metadata_items")
            .copied()
            .unwrap_or(-1);
        if lim >= 0 && metadata.len() as i64 > lim {
            return Err(NovaError::forbidden(format!(
                "Quota exceeded for metadata_items: Requested {}, but already used 0 of {lim} metadata_items",
                metadata.len()
            )));
        }
    }
    let description = match s.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.len() <= 255 => Some(d.clone()),
        Some(_) => return Err(bad("Invalid input for field/attribute description.")),
    };
    let tags: Vec<String> = match s.get("tags") {
        None => vec![],
        Some(Value::Array(a)) => {
            let t: Vec<String> = a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            if t.len() != a.len() || t.len() > 50 {
                return Err(bad("Invalid input for field/attribute tags."));
            }
            for x in &t {
                check_tag(x)?;
            }
            t
        }
        Some(_) => return Err(bad("Invalid input for field/attribute tags.")),
    };
    let user_data = match s.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            if u.len() > 65535 {
                return Err(bad(
                    "User data too large. User data must be no larger than 65535 bytes once base64 encoded.",
                ));
            }
            base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .map_err(|_| bad("User data needs to be valid base 64."))?;
            Some(u.clone())
        }
        Some(_) => return Err(bad("Invalid input for field/attribute user_data.")),
    };
    let az = match s.get("availability_zone") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if !a.is_empty() => Some(a.clone()),
        Some(_) => return Err(bad("Invalid input for field/attribute availability_zone.")),
    };
    let mut az = az;
    if mv.at_least(74) {
        let host = s.get("host").and_then(Value::as_str);
        let hh = s.get("hypervisor_hostname").and_then(Value::as_str);
        if host.is_some() || hh.is_some() {
            c.require_admin(&svc, "compute:servers:create:requested_destination")?;
            let h = host.or(hh).unwrap_or_default();
            let st = svc.state.read();
            if !st
                .services
                .values()
                .any(|x| x.binary == "nova-compute" && x.host == h)
            {
                return Err(bad(format!("Compute host {h} could not be found.")));
            }
            az = Some(format!("{}:{h}", az.unwrap_or_default()));
        }
    }
    if let Some(a) = &az
        && a.contains(':')
        && !a.split(':').nth(1).unwrap_or("").is_empty()
    {
        c.require_admin(&svc, "os_compute_api:servers:create:forced_host")?;
    } else if let Some(a) = &az {
        let st = svc.state.read();
        let known: std::collections::BTreeSet<String> = st
            .services
            .values()
            .filter(|x| x.binary == "nova-compute")
            .map(|x| ops::host_az(&svc, &st, &x.host))
            .collect();
        if !known.contains(a) {
            return Err(bad(
                "The requested availability zone is not available".to_string()
            ));
        }
    }
    let sgs: Vec<String> = match s.get("security_groups") {
        None => vec!["default".into()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.get("name").and_then(Value::as_str).map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("Invalid input for field/attribute security_groups."))?,
        Some(_) => return Err(bad("Invalid input for field/attribute security_groups.")),
    };
    let access_v4 = match s.get("accessIPv4") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => {
            if !x.is_empty() && x.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(bad(format!(
                    "Invalid input for field/attribute accessIPv4. Value: {x}. '{x}' is not a 'ipv4'"
                )));
            }
            x.clone()
        }
        Some(_) => return Err(bad("Invalid input for field/attribute accessIPv4.")),
    };
    let access_v6 = match s.get("accessIPv6") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) if x.is_empty() => String::new(),
        // Stored and shown in canonical form, as Nova (netaddr) does.
        Some(Value::String(x)) => x.parse::<std::net::Ipv6Addr>().map(|a| a.to_string()).map_err(|_| {
            bad(format!(
                "Invalid input for field/attribute accessIPv6. Value: {x}. '{x}' is not a 'ipv6'"
            ))
        })?,
        Some(_) => return Err(bad("Invalid input for field/attribute accessIPv6.")),
    };
    // Block devices: local image disks, and volumes when Block Storage is there.
    let mut bdms: Vec<Bdm> = Vec::new();
    if let Some(list) = s.get("block_device_mapping_v2") {
        let arr = list
            .as_array()
            .ok_or_else(|| bad("Invalid input for field/attribute block_device_mapping_v2."))?;
        for m in arr {
            let bdm: Bdm = serde_json::from_value(m.clone()).map_err(|e| {
                bad(format!(
                    "Invalid input for field/attribute block_device_mapping_v2: {e}"
                ))
            })?;
            bdms.push(bdm);
        }
    }
    if let Some(list) = s.get("block_device_mapping") {
        // The legacy (v1) form: volumes or snapshots by device name.
        let arr = list
            .as_array()
            .ok_or_else(|| bad("Invalid input for field/attribute block_device_mapping."))?;
        for m in arr {
            let dev = m["device_name"].as_str().map(str::to_string);
            let root = dev
                .as_deref()
                .is_some_and(|d| d.trim_start_matches("/dev/") == "vda");
            let (source, uuid) = match (m["volume_id"].as_str(), m["snapshot_id"].as_str()) {
                (Some(v), _) => ("volume", v),
                (None, Some(sn)) => ("snapshot", sn),
                _ => {
                    return Err(bad(
                        "Block Device Mapping is Invalid: a volume_id or snapshot_id is required.",
                    ));
                }
            };
            bdms.push(Bdm {
                source_type: source.into(),
                destination_type: "volume".into(),
                uuid: Some(uuid.to_string()),
                boot_index: root.then_some(0),
                volume_size: m["volume_size"].as_u64(),
                delete_on_termination: m["delete_on_termination"].as_bool().unwrap_or(false),
                device_name: dev,
                tag: None,
                volume_id: None,
                attachment_id: None,
                created_volume: false,
                connection_info: None,
            });
        }
    }
    for bdm in &bdms {
        let wants_volume = bdm.destination_type == "volume"
            || matches!(bdm.source_type.as_str(), "volume" | "snapshot");
        if !wants_volume {
            continue;
        }
        if !svc.volumes.present() {
            return Err(bad(
                "Block Device Mapping is Invalid: volumes need the Block Storage service, which this cloud does not run.",
            ));
        }
        if bdm.destination_type != "volume" {
            return Err(bad(format!(
                "Block Device Mapping is Invalid: a {} source needs destination_type volume.",
                bdm.source_type
            )));
        }
        match bdm.source_type.as_str() {
            "volume" => {
                let id = bdm.uuid.clone().unwrap_or_default();
                let vol = svc
                    .volumes
                    .get(&c.project(), c.is_admin(&svc), &id)
                    .ok_or_else(|| {
                        bad(format!(
                            "Block Device Mapping is Invalid: failed to get volume {id}."
                        ))
                    })?;
                let status = vol["status"].as_str().unwrap_or_default();
                if status != "available" {
                    return Err(bad(format!(
                        "Invalid volume: volume '{id}' status must be 'available'. Currently in '{status}'"
                    )));
                }
            }
            "image" | "blank" | "snapshot" => {
                if bdm.source_type != "snapshot" && bdm.volume_size.unwrap_or(0) == 0 {
                    return Err(bad(format!(
                        "Block Device Mapping is Invalid: {}s with destination_type 'volume' need to have a non-zero size specified",
                        bdm.source_type
                    )));
                }
                if bdm.source_type != "blank" && bdm.uuid.as_deref().is_none_or(|u| !uuid_like(u)) {
                    return Err(bad("Block Device Mapping is Invalid: a uuid is required."));
                }
            }
            other => {
                return Err(bad(format!(
                    "Block Device Mapping is Invalid: unknown source_type {other}."
                )));
            }
        }
    }
    let boot_volume = bdms
        .iter()
        .find(|b| b.boot_index == Some(0) && b.destination_type == "volume")
        .cloned();
    let image_ref = match s.get("imageRef") {
        Some(Value::String(i)) if !i.is_empty() => last_segment(i),
        Some(Value::String(_)) | None if boot_volume.is_some() => String::new(),
        Some(Value::String(_)) | None if !bdms.is_empty() => bdms
            .iter()
            .find(|b| b.source_type == "image" && b.boot_index == Some(0))
            .and_then(|b| b.uuid.clone())
            .unwrap_or_default(),
        Some(Value::String(_)) | None => return Err(bad("Invalid imageRef provided.")),
        Some(_) => return Err(bad("Invalid input for field/attribute imageRef.")),
    };
    // Booted from a volume: the server has no image (Nova shows "").
    let image_ref = if boot_volume.is_some() {
        String::new()
    } else {
        image_ref
    };
    if boot_volume.is_none() && (image_ref.is_empty() || !uuid_like(&image_ref)) {
        return Err(bad("Invalid imageRef provided."));
    }
    // The image a volume is made from is checked like a boot image.
    let check_image = match &boot_volume {
        Some(b) if b.source_type == "image" => b.uuid.clone().unwrap_or_default(),
        Some(_) => String::new(),
        None => image_ref.clone(),
    };
    // Flavor, key, image.
    let (flavor, key) = {
        let st = svc.state.read();
        let f = st
            .flavors
            .get(&flavor_ref)
            .cloned()
            .filter(|f| f.is_public || f.access.contains(&c.project()) || c.is_admin(&svc))
            .ok_or_else(|| bad("Invalid flavorRef provided."))?;
        if f.disabled {
            return Err(bad("Flavor is disabled."));
        }
        let key = match s.get("key_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(
                st.keypairs
                    .get(&(c.user(), k.clone()))
                    .cloned()
                    .ok_or_else(|| bad("Invalid key_name provided."))?,
            ),
            Some(_) => return Err(bad("Invalid input for field/attribute key_name.")),
        };
        (f, key)
    };
    let image = if check_image.is_empty() {
        json!({"status": "active"})
    } else {
        svc.image
            .get(c.token(), &check_image)
            .await?
            .ok_or_else(|| bad("Invalid imageRef provided."))?
    };
    if image["status"] != "active" {
        return Err(bad(format!("Image {check_image} is not active.")));
    }
    let min_disk = image["min_disk"].as_u64().unwrap_or(0);
    let min_ram = image["min_ram"].as_u64().unwrap_or(0);
    if min_ram > flavor.ram {
        return Err(bad("Flavor's memory is too small for requested image."));
    }
    if boot_volume.is_none() && flavor.disk > 0 && min_disk > flavor.disk {
        return Err(bad("Flavor's disk is too small for requested image."));
    }
    let size = image["size"].as_u64().unwrap_or(0);
    if boot_volume.is_none() && flavor.disk > 0 && size > flavor.disk * (1 << 30) {
        return Err(bad("Flavor's disk is too small for requested image."));
    }
    let mut image_properties: BTreeMap<String, String> = BTreeMap::new();
    if let Some(o) = image.as_object() {
        for (k, v) in o {
            if let Some(x) = v.as_str() {
                image_properties.insert(k.clone(), x.to_string());
            }
        }
    }
    svc.network
        .validate(c.token(), &c.project(), &networks, &sgs)
        .await?;
    let hints: BTreeMap<String, Value> = b
        .get("os:scheduler_hints")
        .or_else(|| b.get("OS-SCH-HNT:scheduler_hints"))
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let group_id = hints
        .get("group")
        .and_then(Value::as_str)
        .map(str::to_string);
    let return_resv = s
        .get("return_reservation_id")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reservation_id = new_reservation_id();
    let admin_pass = s
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n: u128 = rand::random();
            format!("{n:032x}")[..12].to_string()
        });
    let project = c.project();
    let user = c.user();
    let rid = c.request_id.clone();
    // Quota check and the records in one write (DESIGN.md §5).
    let created: Vec<Instance> = svc
        .state
        .write(|st| {
            if let Some(g) = &group_id {
                let grp = st
                    .groups
                    .get(g)
                    .ok_or_else(|| bad(format!("Invalid server group {g}")).into_error())?;
                let limits = ops::quota_limits(st, &project, None);
                let lim = limits.get("server_group_members").copied().unwrap_or(-1);
                if lim >= 0 && grp.members.len() as i64 + i64::from(min_count) > lim {
                    return Err(
                        NovaError::forbidden("Quota exceeded, too many servers in group")
                            .into_error(),
                    );
                }
            }
            let limits = ops::quota_limits(st, &project, Some(&user));
            let usage = ops::quota_usage(st, &project, None);
            let room = |k: &str, per: i64| -> i64 {
                let lim = limits.get(k).copied().unwrap_or(-1);
                if lim < 0 || per == 0 {
                    i64::MAX
                } else {
                    (lim - usage.get(k).copied().unwrap_or(0)) / per
                }
            };
            let allowed = room("instances", 1)
                .min(room("cores", i64::from(flavor.vcpus)))
                .min(room("ram", flavor.ram as i64));
            if allowed < i64::from(min_count) {
                ops::quota_check(
                    st,
                    &project,
                    &user,
                    &[
                        ("instances", i64::from(min_count)),
                        ("cores", i64::from(flavor.vcpus * min_count)),
                        ("ram", flavor.ram as i64 * i64::from(min_count)),
                    ],
                )
                .map_err(NovaError::into_error)?;
                return Err(NovaError::forbidden("Quota exceeded for instances").into_error());
            }
            let n = (i64::from(max_count).min(allowed)) as u32;
            let mut recs = Vec::new();
            let mut made = Vec::new();
            let t = now();
            let max_internal = st
                .instances
                .values()
                .map(|i| i.internal_id)
                .max()
                .unwrap_or(0);
            for k in 0..n {
                let uuid = ferro_common::new_uuid();
                let dname = if n > 1 {
                    format!("{name}-{}", k + 1)
                } else {
                    name.clone()
                };
                let inst = Instance {
                    disk_config: disk_config.clone(),
                    uuid: uuid.clone(),
                    name: dname.clone(),
                    project_id: project.clone(),
                    user_id: user.clone(),
                    description: description.clone(),
                    flavor: flavor.clone(),
                    old_flavor: None,
                    new_flavor: None,
                    image_ref: image_ref.clone(),
                    image_properties: image_properties.clone(),
                    key_name: key.as_ref().map(|k| k.name.clone()),
                    key_data: key.as_ref().map(|k| k.public_key.clone()),
                    user_data: user_data.clone(),
                    metadata: metadata.clone(),
                    tags: tags.clone(),
                    vm_state: "building".into(),
                    task_state: Some("scheduling".into()),
                    power_state: 0,
                    host: None,
                    node: None,
                    requested_az: az.clone(),
                    availability_zone: az.as_ref().and_then(|a| {
                        a.split(':')
                            .next()
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                    }),
                    created_at: t.clone(),
                    updated_at: t.clone(),
                    launched_at: None,
                    terminated_at: None,
                    deleted: false,
                    deleted_at: None,
                    locked: false,
                    locked_by: None,
                    locked_reason: None,
                    fault: None,
                    config_drive: s
                        .get("config_drive")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    access_ip_v4: access_v4.clone(),
                    access_ip_v6: access_v6.clone(),
                    security_groups: sgs.clone(),
                    hostname: dname
                        .to_lowercase()
                        .chars()
                        .map(|ch| {
                            if ch.is_ascii_alphanumeric() || ch == '-' {
                                ch
                            } else {
                                '-'
                            }
                        })
                        .collect(),
                    reservation_id: reservation_id.clone(),
                    launch_index: k,
                    server_group: group_id.clone(),
                    bdms: bdms.clone(),
                    addresses: BTreeMap::new(),
                    requested_networks: networks.clone(),
                    scheduler_hints: hints.clone(),
                    password: None,
                    shelved_image: None,
                    rescue_image: None,
                    previous_vm_state: None,
                    trusted_certs: s.get("trusted_image_certificates").cloned(),
                    seq: st.next_seq(&recs),
                    internal_id: max_internal + 1 + u64::from(k),
                };
                let action = ops::new_action(st, &recs, &inst, "create", &rid, &user, &project);
                recs.push(Rec::Instance(Box::new(inst.clone())));
                recs.push(Rec::Action(action));
                made.push(inst);
            }
            if let Some(g) = &group_id
                && let Some(grp) = st.groups.get(g)
            {
                let mut grp = grp.clone();
                grp.members.extend(made.iter().map(|i| i.uuid.clone()));
                recs.push(Rec::Group(grp));
            }
            Ok((made, recs))
        })
        .await
        .map_err(NovaError::from_error)?;
    for i in &created {
        crate::build::spawn_build(&svc, i.uuid.clone(), rid.clone(), Some(c.acting()));
    }
    if return_resv {
        return Ok(json_resp(
            StatusCode::ACCEPTED,
            json!({"reservation_id": reservation_id}),
        ));
    }
    let first_i = created
        .first()
        .ok_or_else(|| NovaError::new(500, "nothing created"))?;
    let mut sv = json!({
        "id": first_i.uuid,
        "links": link(&svc.base_url, &format!("servers/{}", first_i.uuid)),
        "OS-DCF:diskConfig": disk_config.as_deref().unwrap_or("MANUAL"),
        "security_groups": sgs.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
    });
    sv["adminPass"] = json!(admin_pass);
    let mut resp = json_resp(StatusCode::ACCEPTED, json!({"server": sv}));
    if let Ok(h) = HeaderValue::from_str(&format!("{}/v2.1/servers/{}", svc.base_url, first_i.uuid))
    {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

// ---------------------------------------------------------------- list

const STATUSES: &[&str] = &[
    "ACTIVE",
    "BUILD",
    "SHUTOFF",
    "ERROR",
    "PAUSED",
    "SUSPENDED",
    "RESCUE",
    "REBOOT",
    "HARD_REBOOT",
    "RESIZE",
    "VERIFY_RESIZE",
    "REVERT_RESIZE",
    "MIGRATING",
    "REBUILD",
    "PASSWORD",
    "DELETED",
    "SOFT_DELETED",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "UNKNOWN",
];

fn parse_time(s: &str) -> NResult<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map(|n| n.and_utc()))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map(|n| n.and_utc()))
        .map_err(|_| bad(format!("Invalid input for field/attribute changes-since. Value: {s}. '{s}' is not a 'date-time'")))?;
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
}

/// Nova filters names with a regular expression (Python `re.search`); an
/// invalid expression matches as a plain substring.
fn matches_regex_like(hay: &str, pat: &str) -> bool {
    match regex_lite::Regex::new(pat) {
        Ok(re) => re.is_match(hay),
        Err(_) => hay.contains(pat),
    }
}

const LIST_PARAMS: &[&str] = &[
    "name",
    "status",
    "image",
    "flavor",
    "host",
    "changes-since",
    "changes-before",
    "ip",
    "ip6",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "all_tenants",
    "project_id",
    "tenant_id",
    "user_id",
    "locked",
    "deleted",
    "reservation_id",
    "availability_zone",
    "key_name",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "launched_at",
    "terminated_at",
    "node",
    "config_drive",
    "description",
    "created_at",
    "uuid",
    "vm_state",
    "task_state",
    "power_state",
    "progress",
    "hostname",
    "access_ip_v4",
    "access_ip_v6",
    "locked_by",
    "launch_index",
    "kernel_id",
    "ramdisk_id",
    "root_device_name",
    "display_name",
    "display_description",
    "image_ref",
    "instance_type_id",
    "updated_at",
    "soft_deleted",
];

fn listing(svc: &ComputeService, c: &Caller, raw: Option<String>, detail: bool) -> NResult<Value> {
    let q = query(raw.clone());
    let admin = c.is_admin(svc);
    let mv = c.mv;
    if mv.at_least(75) {
        for k in q.keys() {
            if !LIST_PARAMS.contains(&k.as_str()) {
                return Err(bad(format!(
                    "Invalid input for query parameters {k}. Value: {:?}. Additional properties are not allowed ('{k}' was unexpected)",
                    q[k]
                )));
            }
        }
    }
    let (limit, marker) = paging(&q)?;
    let all_tenants = admin
        && q.get("all_tenants").is_some_and(|v| {
            v.last()
                .is_none_or(|x| !matches!(x.to_lowercase().as_str(), "0" | "false" | "off" | "no"))
        });
    let project_filter = q
        .get("project_id")
        .or_else(|| q.get("tenant_id"))
        .and_then(|v| v.last().cloned());
    // An admin sees every project (or the one named) only with all_tenants;
    // without it Nova ignores tenant_id and lists the caller's project.
    let want_project: Option<String> = if all_tenants {
        project_filter.clone()
    } else {
        Some(c.project())
    };
    let statuses: Vec<String> = q
        .get("status")
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s.to_uppercase())
        .collect();
    for s in &statuses {
        if !STATUSES.contains(&s.as_str()) && mv.at_least(38) {
            return Err(bad("Invalid status value".to_string()));
        }
    }
    let changes_since = first(&q, "changes-since").map(parse_time).transpose()?;
    let changes_before = first(&q, "changes-before").map(parse_time).transpose()?;
    if let (Some(a), Some(b)) = (&changes_since, &changes_before)
        && a > b
    {
        return Err(bad(
            "The value of changes-since must be less than or equal to changes-before.",
        ));
    }
    let deleted = admin
        && first(&q, "deleted")
            .is_some_and(|v| matches!(v.to_lowercase().as_str(), "true" | "1" | "yes" | "on"));
    let include_deleted = deleted
        || changes_since.is_some()
        || changes_before.is_some()
        || statuses.iter().any(|s| s == "DELETED");
    let locked = match first(&q, "locked") {
        Some(v) if mv.at_least(73) => match v.to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => {
                return Err(bad(format!(
                    "Unrecognized value '{v}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
                )));
            }
        },
        _ => None,
    };
    let tag_list = |k: &str| -> Vec<String> {
        first(&q, k)
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (tags_all, tags_any, not_tags, not_tags_any) = (
        tag_list("tags"),
        tag_list("tags-any"),
        tag_list("not-tags"),
        tag_list("not-tags-any"),
    );
    let st = svc.state.read();
    let mut items: Vec<&Instance> = st
        .instances
        .values()
        .filter(|i| include_deleted || !i.deleted)
        .filter(|i| !deleted || i.deleted)
        .filter(|i| want_project.as_ref().is_none_or(|p| &i.project_id == p))
        .filter(|i| {
            statuses.is_empty()
                || statuses
                    .iter()
                    .any(|s| s == status_of(&i.vm_state, i.task_state.as_deref()))
        })
        .filter(|i| first(&q, "name").is_none_or(|n| matches_regex_like(&i.name, n)))
        .filter(|i| first(&q, "image").is_none_or(|x| i.image_ref == last_segment(x)))
        .filter(|i| first(&q, "flavor").is_none_or(|x| i.flavor.id == last_segment(x)))
        .filter(|i| !admin || first(&q, "host").is_none_or(|x| i.host.as_deref() == Some(x)))
        .filter(|i| !admin || first(&q, "node").is_none_or(|x| i.host.as_deref() == Some(x)))
        .filter(|i| first(&q, "reservation_id").is_none_or(|x| i.reservation_id == x))
        .filter(|i| first(&q, "key_name").is_none_or(|x| i.key_name.as_deref() == Some(x)))
        .filter(|i| {
            first(&q, "availability_zone").is_none_or(|x| i.availability_zone.as_deref() == Some(x))
        })
        .filter(|i| !admin || first(&q, "user_id").is_none_or(|x| i.user_id == x))
        .filter(|i| first(&q, "ip").is_none_or(|x| addresses_match(i, x)))
        .filter(|i| first(&q, "ip6").is_none_or(|x| addresses_match(i, x)))
        .filter(|i| changes_since.as_ref().is_none_or(|t| &i.updated_at >= t))
        .filter(|i| changes_before.as_ref().is_none_or(|t| &i.updated_at <= t))
        .filter(|i| locked.is_none_or(|l| i.locked == l))
        .filter(|i| tags_all.iter().all(|t| i.tags.contains(t)))
        .filter(|i| tags_any.is_empty() || tags_any.iter().any(|t| i.tags.contains(t)))
        .filter(|i| not_tags.is_empty() || !not_tags.iter().all(|t| i.tags.contains(t)))
        .filter(|i| !not_tags_any.iter().any(|t| i.tags.contains(t)))
        .collect();
    let sort_keys: Vec<String> = q.get("sort_key").cloned().unwrap_or_default();
    let sort_dirs: Vec<String> = q.get("sort_dir").cloned().unwrap_or_default();
    for d in &sort_dirs {
        if d != "asc" && d != "desc" {
            return Err(bad(format!("Invalid sort direction {d}")));
        }
    }
    let key_of = |i: &Instance, k: &str| -> String {
        match k {
            "display_name" | "name" => i.name.clone(),
            "updated_at" => i.updated_at.clone(),
            "launched_at" => i.launched_at.clone().unwrap_or_default(),
            "vm_state" => i.vm_state.clone(),
            "uuid" | "id" => i.uuid.clone(),
            "host" => i.host.clone().unwrap_or_default(),
            "key_name" => i.key_name.clone().unwrap_or_default(),
            "project_id" => i.project_id.clone(),
            "user_id" => i.user_id.clone(),
            "availability_zone" => i.availability_zone.clone().unwrap_or_default(),
            "instance_type_id" => format!("{:020}", i.flavor.seq),
            _ => format!("{:020}", i.seq),
        }
    };
    if sort_keys.is_empty() {
        items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.seq.cmp(&a.seq)));
    } else {
        items.sort_by(|a, b| {
            for (n, k) in sort_keys.iter().enumerate() {
                let dir = sort_dirs
                    .get(n)
                    .or(sort_dirs.last())
                    .map(String::as_str)
                    .unwrap_or("desc");
                let o = key_of(a, k).cmp(&key_of(b, k));
                let o = if dir == "asc" { o } else { o.reverse() };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            b.seq.cmp(&a.seq)
        });
    }
    if let Some(m) = &marker {
        let pos = items
            .iter()
            .position(|i| &i.uuid == m)
            .ok_or_else(|| bad(format!("marker [{m}] not found")))?;
        items.drain(..=pos);
    }
    let total = items.len();
    if let Some(l) = limit {
        items.truncate(l);
    }
    let servers: Vec<Value> = items.iter().map(|i| view(svc, c, i, detail)).collect();
    let mut out = json!({"servers": servers});
    if let (Some(l), Some(last)) = (limit, items.last())
        && total > l
    {
        let mut params: Vec<String> = q
            .iter()
            .filter(|(k, _)| *k != "marker" && *k != "limit")
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
            .collect();
        params.push(format!("limit={l}"));
        params.push(format!("marker={}", last.uuid));
        let path = if detail { "servers/detail" } else { "servers" };
        out["servers_links"] = json!([{"rel": "next", "href": format!("{}/v2.1/{path}?{}", svc.base_url, params.join("&"))}]);
    }
    Ok(out)
}

fn addresses_match(i: &Instance, pat: &str) -> bool {
    i.addresses.values().any(|list| {
        list.as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["addr"]
                    .as_str()
                    .is_some_and(|ad| matches_regex_like(ad, pat))
            })
        })
    })
}

async fn list(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, false)?))
}

async fn detail(AxState(svc): St, c: Caller, RawQuery(q): RawQuery) -> NResult<Response> {
    Ok(json_resp(StatusCode::OK, listing(&svc, &c, q, true)?))
}

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
        ) || (k == "description" && c.mv.at_least(19));
        if !ok {
            return Err(bad(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let name = s.get("name").map(|n| check_name(n, "name")).transpose()?;
    let dc = disk_config_of(s.get("OS-DCF:diskConfig"))?;
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
            Ok(())
        })
        .await?;
    Ok(json_resp(
        StatusCode::OK,
        json!({"server": update_view(&svc, &c, &i)}),
    ))
}

pub fn check_locked(svc: &ComputeService, c: &Caller, i: &Instance) -> NResult<()> {
    if i.locked && !c.is_admin(svc) {
        return Err(NovaError::conflict(format!(
            "Instance {} is locked",
            i.uuid
        )));
    }
    Ok(())
}

pub async fn delete_instance(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    action: &str,
) -> NResult<()> {
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:servers:delete")?;
    check_locked(svc, c, &i)?;
    let rid = c.request_id.clone();
    let (user, project) = (c.user(), c.project());
    let building = svc
        .state
        .active_builds
        .lock()
        .map(|b| b.contains(id))
        .unwrap_or(false);
    svc.state
        .write(|st| {
            let Some(mut i) = st.instances.get(id).cloned() else {
                return Err(ferro_common::Error::not_found_msg(format!(
                    "Instance {id} could not be found."
                )));
            };
            let a = ops::new_action(st, &[], &i, action, &rid, &user, &project);
            i.task_state = Some("deleting".into());
            i.updated_at = now();
            Ok(((), vec![Rec::Instance(Box::new(i)), Rec::Action(a)]))
        })
        .await?;
    if !building {
        let svc = svc.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = crate::build::delete_now(&svc, &id, &rid).await {
                tracing::warn!(instance = %id, "delete failed: {}", e.log_message());
            }
        });
    }
    Ok(())
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

// ---------------------------------------------------------------- metadata

fn meta_quota(svc: &ComputeService, i: &Instance, n: usize) -> NResult<()> {
    let st = svc.state.read();
    let lim = ops::quota_limits(&st, &i.project_id, None)
        .get("metadata_items")
        .copied()
        .unwrap_or(-1);
    if lim >= 0 && n as i64 > lim {
        return Err(NovaError::forbidden(format!(
            "Quota exceeded for metadata_items: Requested {n}, but already used 0 of {lim} metadata_items"
        )));
    }
    Ok(())
}

async fn meta_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": i.metadata})))
}

async fn meta_write(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    raw: &[u8],
    replace: bool,
) -> NResult<Response> {
    let b = body(raw)?;
    let m = check_metadata(
        b.get("metadata")
            .ok_or_else(|| bad("Malformed request body: metadata is required"))?,
    )?;
    let i = get_instance(svc, c, id)?;
    c.require_member(svc, &i.project_id, "os_compute_api:server-metadata:update")?;
    check_locked(svc, c, &i)?;
    let mut next = if replace {
        BTreeMap::new()
    } else {
        i.metadata.clone()
    };
    next.extend(m);
    meta_quota(svc, &i, next.len())?;
    let i = svc
        .state
        .update_instance(id, move |i| {
            i.metadata = next;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"metadata": i.metadata})))
}

async fn meta_replace(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    meta_write(&svc, &c, &id, &raw, true).await
}

async fn meta_merge(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    meta_write(&svc, &c, &id, &raw, false).await
}

async fn meta_get(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    let v = i
        .metadata
        .get(&key)
        .ok_or_else(|| NovaError::not_found("Metadata item was not found"))?;
    Ok(json_resp(StatusCode::OK, json!({"meta": {key: v}})))
}

async fn meta_put(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    raw: Bytes,
) -> NResult<Response> {
    let b = body(&raw)?;
    let m = check_metadata(
        b.get("meta")
            .ok_or_else(|| bad("Malformed request body: meta is required"))?,
    )?;
    if m.len() != 1 {
        return Err(bad("Request body contains too many items"));
    }
    if !m.contains_key(&key) {
        return Err(bad("Request body and URI mismatch"));
    }
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:server-metadata:update")?;
    check_locked(&svc, &c, &i)?;
    let mut next = i.metadata.clone();
    next.extend(m.clone());
    meta_quota(&svc, &i, next.len())?;
    svc.state
        .update_instance(&id, move |i| {
            i.metadata = next;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"meta": m})))
}

async fn meta_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
) -> NResult<Response> {
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:server-metadata:delete")?;
    check_locked(&svc, &c, &i)?;
    if !i.metadata.contains_key(&key) {
        return Err(NovaError::not_found("Metadata item was not found"));
    }
    svc.state
        .update_instance(&id, move |i| {
            i.metadata.remove(&key);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- tags

fn tags_mv(c: &Caller) -> NResult<()> {
    if !c.mv.at_least(26) {
        return Err(NovaError::not_found("The resource could not be found."));
    }
    Ok(())
}

async fn tags_list(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    Ok(json_resp(StatusCode::OK, json!({"tags": i.tags})))
}

async fn tags_replace(
    AxState(svc): St,
    c: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> NResult<Response> {
    tags_mv(&c)?;
    let b = body(&raw)?;
    let arr = b
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Invalid input for field/attribute tags."))?;
    let mut tags = Vec::new();
    for t in arr {
        let t = t
            .as_str()
            .ok_or_else(|| bad("Invalid input for field/attribute tags."))?;
        check_tag(t)?;
        if !tags.contains(&t.to_string()) {
            tags.push(t.to_string());
        }
    }
    if tags.len() > 50 {
        return Err(bad("The number of tags exceeded the per-server limit 50"));
    }
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-server-tags:update_all",
    )?;
    let i = svc
        .state
        .update_instance(&id, move |i| {
            i.tags = tags;
            Ok(())
        })
        .await?;
    Ok(json_resp(StatusCode::OK, json!({"tags": i.tags})))
}

async fn tags_clear(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(
        &svc,
        &i.project_id,
        "os_compute_api:os-server-tags:delete_all",
    )?;
    svc.state
        .update_instance(&id, |i| {
            i.tags.clear();
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_check(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    if i.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(NovaError::not_found(format!(
            "Tag {tag} could not be found."
        )))
    }
}

async fn tag_add(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    check_tag(&tag)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:os-server-tags:update")?;
    if i.tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if i.tags.len() >= 50 {
        return Err(bad("The number of tags exceeded the per-server limit 50"));
    }
    let t2 = tag.clone();
    svc.state
        .update_instance(&id, move |i| {
            i.tags.push(t2);
            Ok(())
        })
        .await?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("{}/v2.1/servers/{id}/tags/{tag}", svc.base_url))
    {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

async fn tag_delete(
    AxState(svc): St,
    c: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> NResult<Response> {
    tags_mv(&c)?;
    let i = get_instance(&svc, &c, &id)?;
    c.require_member(&svc, &i.project_id, "os_compute_api:os-server-tags:delete")?;
    if !i.tags.contains(&tag) {
        return Err(NovaError::not_found(format!(
            "Tag {tag} could not be found."
        )));
    }
    svc.state
        .update_instance(&id, move |i| {
            i.tags.retain(|t| t != &tag);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
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

pub fn console_url(svc: &ComputeService, protocol: &str, kind: &str, id: &str) -> String {
    let token = ferro_common::new_uuid();
    let path = match kind {
        "novnc" => "vnc_auto.html",
        "xvpvnc" => "console",
        "spice-html5" => "spice_auto.html",
        "serial" => "serial",
        _ => "console",
    };
    let _ = protocol;
    format!(
        "{}/console/{path}?path=%3Ftoken%3D{token}&instance={id}",
        svc.cfg.public_url()
    )
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
    let rc = super::member(
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
    );
    if !ok {
        return Err(bad(format!(
            "Invalid input for field/attribute type. Value: {kind}."
        )));
    }
    let i = get_instance(&svc, &c, &id)?;
    if i.vm_state != "active" && i.vm_state != "rescued" && i.vm_state != "paused" {
        return Err(NovaError::conflict(format!("Instance {id} is not ready")));
    }
    Ok(json_resp(
        StatusCode::OK,
        json!({"remote_console": {"protocol": protocol, "type": kind, "url": console_url(&svc, protocol, kind, &id)}}),
    ))
}

async fn diagnostics(AxState(svc): St, c: Caller, Path(id): Path<String>) -> NResult<Response> {
    c.require_admin(&svc, "os_compute_api:os-server-diagnostics")?;
    let i = get_instance(&svc, &c, &id)?;
    if i.host.is_none() || i.vm_state == "building" {
        return Err(NovaError::conflict(format!(
            "Cannot 'get_diagnostics' instance {id} while it is in vm_state {}",
            i.vm_state
        )));
    }
    let state = match i.power_state {
        1 => "running",
        3 => "paused",
        4 => "shutdown",
        7 => "suspended",
        6 => "crashed",
        _ => "pending",
    };
    let v = if c.mv.at_least(48) {
        json!({
            "state": state, "driver": "libvirt", "hypervisor": "qemu", "hypervisor_os": "linux",
            "uptime": 46664, "config_drive": i.config_drive, "num_cpus": i.flavor.vcpus,
            "num_nics": i.addresses.len(), "num_disks": 1,
            "cpu_details": (0..i.flavor.vcpus).map(|n| json!({"id": n, "time": 17300000000u64, "utilisation": 15})).collect::<Vec<_>>(),
            "nic_details": [],
            "disk_details": [{"read_bytes": 262144, "read_requests": 112, "write_bytes": 5778432, "write_requests": 488, "errors_count": 1}],
            "memory_details": {"maximum": i.flavor.ram, "used": 0},
        })
    } else {
        let mut m = Map::new();
        m.insert("cpu0_time".into(), json!(17300000000u64));
        m.insert("memory".into(), json!(i.flavor.ram * 1024));
        Value::Object(m)
    };
    Ok(json_resp(StatusCode::OK, v))
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

/// `OS-DCF:diskConfig`: AUTO or MANUAL (400 otherwise).
pub fn disk_config_of(v: Option<&Value>) -> NResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(Value::String(x)) if x == "AUTO" || x == "MANUAL" => Ok(Some(x.clone())),
        Some(x) => Err(bad(format!(
            "Invalid input for field/attribute OS-DCF:diskConfig. Value: {x}. '{x}' is not one of ['AUTO', 'MANUAL']"
        ))),
    }
}
