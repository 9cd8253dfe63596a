//! `POST /servers`: parse the request (syntax and microversions), validate
//! what it names (flavor, image, key, zone, volumes, networks, quotas on
//! metadata), then the service layer records the servers and starts their
//! builds; the answer is rendered here.
use super::request::{Caller, St, body, json_resp, link};
use super::servers::{
    check_metadata, check_name, check_tag, disk_config_of, last_segment, uuid_like,
};
use crate::error::{NResult, NovaError};
use crate::model::Bdm;
use crate::{ComputeService, ops, servers};
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

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

fn new_reservation_id() -> String {
    let n: u64 = rand::random();
    format!("r-{:08x}", n as u32)
}

/// A server-create request as written.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub name: String,
    pub flavor_ref: String,
    pub disk_config: Option<String>,
    pub networks: Value,
    pub min_count: u32,
    pub max_count: u32,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub user_data: Option<String>,
    pub az: Option<String>,
    pub host_req: Option<String>,
    pub sgs: Vec<String>,
    pub access_v4: String,
    pub access_v6: String,
    pub bdms: Vec<Bdm>,
    pub boot_volume: Option<Bdm>,
    pub image_ref: String,
    pub check_image: String,
    pub hints: BTreeMap<String, Value>,
    pub group_id: Option<String>,
    pub return_resv: bool,
    pub admin_pass: String,
    pub key_name: Option<Value>,
    pub config_drive: bool,
    pub trusted_certs: Option<Value>,
    pub hostname: Option<String>,
}

/// The request as written: every syntax and microversion check, nothing
/// looked up yet.
fn parse(c: &Caller, b: &Value, s: &Map<String, Value>) -> NResult<Parsed> {
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
                "hostname" => mv.at_least(90),
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
    let host_req = if mv.at_least(74) {
        s.get("host")
            .and_then(Value::as_str)
            .or_else(|| s.get("hypervisor_hostname").and_then(Value::as_str))
            .map(str::to_string)
    } else {
        None
    };
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
                bdm_uuid: Some(ferro_common::new_uuid()),
                ..Default::default()
            });
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
    let _reservation_id = new_reservation_id();
    let admin_pass = s
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let n: u128 = rand::random();
            format!("{n:032x}")[..12].to_string()
        });
    Ok(Parsed {
        name,
        flavor_ref,
        disk_config,
        networks,
        min_count,
        max_count,
        metadata,
        description,
        tags,
        user_data,
        az,
        host_req,
        sgs,
        access_v4,
        access_v6,
        bdms,
        boot_volume,
        image_ref,
        check_image,
        hints,
        group_id,
        return_resv,
        admin_pass,
        key_name: s.get("key_name").cloned(),
        config_drive: s
            .get("config_drive")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        trusted_certs: s.get("trusted_image_certificates").cloned(),
        hostname: s
            .get("hostname")
            .map(|h| super::servers::check_hostname(h, mv))
            .transpose()?,
    })
}

/// What the request names, looked up: quotas on metadata, the zone or
/// host, the volumes, flavor, key and image, the networks. The result is
/// what the service layer records.
async fn validate(
    svc: &Arc<ComputeService>,
    c: &Caller,
    p: Parsed,
) -> NResult<servers::NewServers> {
    let Parsed {
        name,
        flavor_ref,
        disk_config,
        networks,
        min_count,
        max_count,
        metadata,
        description,
        tags,
        user_data,
        az,
        host_req,
        sgs,
        access_v4,
        access_v6,
        bdms,
        boot_volume,
        image_ref,
        check_image,
        hints,
        group_id,
        return_resv: _,
        admin_pass: _,
        key_name,
        config_drive,
        trusted_certs,
        hostname,
    } = p;
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
    let mut az = az;
    if let Some(h) = &host_req {
        c.require_admin(svc, "compute:servers:create:requested_destination")?;
        let st = svc.state.read();
        if !st
            .services
            .values()
            .any(|x| x.binary == "nova-compute" && x.host == *h)
        {
            return Err(bad(format!("Compute host {h} could not be found.")));
        }
        az = Some(format!("{}:{h}", az.unwrap_or_default()));
    }
    if let Some(a) = &az
        && a.contains(':')
        && !a.split(':').nth(1).unwrap_or("").is_empty()
    {
        c.require_admin(svc, "os_compute_api:servers:create:forced_host")?;
    } else if let Some(a) = &az {
        let st = svc.state.read();
        let known: std::collections::BTreeSet<String> = st
            .services
            .values()
            .filter(|x| x.binary == "nova-compute")
            .map(|x| ops::host_az(svc, &st, &x.host))
            .collect();
        if !known.contains(a) {
            return Err(bad(
                "The requested availability zone is not available".to_string()
            ));
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
                    .get(&c.project(), c.is_admin(svc), &id)
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
    // Flavor, key, image.
    let (flavor, key) = {
        let st = svc.state.read();
        let f = st
            .flavors
            .get(&flavor_ref)
            .cloned()
            .filter(|f| f.is_public || f.access.contains(&c.project()) || c.is_admin(svc))
            .ok_or_else(|| bad("Invalid flavorRef provided."))?;
        if f.disabled {
            return Err(bad("Flavor is disabled."));
        }
        let key = match key_name.as_ref() {
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
    // An image made from a volume-backed server holds no data, only the
    // block device mapping that boots from its volumes' snapshots (Nova's
    // image-defined mappings); requested mappings win on the same device.
    let (bdms, image_ref) = match image["block_device_mapping"].as_str() {
        Some(list) if boot_volume.is_none() => {
            let defined: Vec<Value> = serde_json::from_str(list).map_err(|_| {
                bad(format!(
                    "Image {check_image} has an invalid block_device_mapping."
                ))
            })?;
            let mut bdms = bdms;
            for m in defined {
                let dev = m["device_name"].as_str().map(str::to_string);
                if dev.is_some() && bdms.iter().any(|b| b.device_name == dev) {
                    continue;
                }
                let uuid = ["snapshot_id", "volume_id", "image_id"]
                    .iter()
                    .find_map(|k| m[*k].as_str().map(str::to_string));
                bdms.push(Bdm {
                    source_type: m["source_type"].as_str().unwrap_or("snapshot").into(),
                    destination_type: m["destination_type"].as_str().unwrap_or("volume").into(),
                    uuid,
                    boot_index: m["boot_index"].as_i64(),
                    volume_size: m["volume_size"].as_u64(),
                    delete_on_termination: m["delete_on_termination"].as_bool().unwrap_or(false),
                    device_name: dev,
                    bdm_uuid: Some(ferro_common::new_uuid()),
                    ..Default::default()
                });
            }
            let root_volume = bdms
                .iter()
                .any(|b| b.boot_index == Some(0) && b.destination_type == "volume");
            (
                bdms,
                if root_volume {
                    String::new()
                } else {
                    image_ref
                },
            )
        }
        _ => (bdms, image_ref),
    };
    let min_disk = image["min_disk"].as_u64().unwrap_or(0);
    let min_ram = image["min_ram"].as_u64().unwrap_or(0);
    if min_ram > flavor.ram {
        return Err(bad("Flavor's memory is too small for requested image."));
    }
    if boot_volume.is_none() && flavor.disk > 0 && min_disk > flavor.disk {
        return Err(bad("Flavor's disk is too small for requested image."));
    }
    // Nova compares both the image's bytes and the disk it unpacks to.
    let size = image["size"]
        .as_u64()
        .unwrap_or(0)
        .max(image["virtual_size"].as_u64().unwrap_or(0));
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
    Ok(servers::NewServers {
        name,
        min_count,
        max_count,
        flavor,
        image_ref,
        image_properties,
        key,
        disk_config,
        description,
        tags,
        metadata,
        user_data,
        az,
        networks,
        sgs,
        access_v4,
        access_v6,
        bdms,
        hints,
        group_id,
        config_drive,
        trusted_certs,
        reservation_id: new_reservation_id(),
        hostname,
    })
}

pub(super) async fn create(AxState(svc): St, c: Caller, raw: Bytes) -> NResult<Response> {
    let b = body(&raw)?;
    let s = b.get("server").and_then(Value::as_object).ok_or_else(|| {
        bad("Invalid input for field/attribute server. 'server' is a required property")
    })?;
    c.require_member(&svc, &c.project(), "os_compute_api:servers:create")?;
    let p = parse(&c, &b, s)?;
    let (return_resv, admin_pass, disk_config, sgs) = (
        p.return_resv,
        p.admin_pass.clone(),
        p.disk_config.clone(),
        p.sgs.clone(),
    );
    let req = validate(&svc, &c, p).await?;
    let reservation_id = req.reservation_id.clone();
    let who = servers::Requester {
        project: c.project(),
        user: c.user(),
        request_id: c.request_id.clone(),
        acting: c.acting(),
    };
    let created = servers::create(&svc, &who, req).await?;
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
