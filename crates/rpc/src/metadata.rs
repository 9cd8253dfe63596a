//! What a guest's metadata says (Nova's `InstanceMetadata`,
//! `nova/api/metadata/base.py`): the OpenStack tree's `meta_data.json` of
//! each version and the EC2 tree's `meta-data`. The config drive (written
//! by a host's driver) and the metadata service (answered by Compute) show
//! the same documents.
use crate::compute::{GuestDevice, GuestDeviceKind, GuestSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The OpenStack metadata versions Nova serves, oldest first.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
];
/// The EC2 metadata versions on a config drive.
pub const EC2_VERSIONS: &[&str] = &["2009-04-04"];

/// What the instance is, as its metadata shows it.
#[derive(Clone, Debug, Default)]
pub struct InstanceMetadata {
    pub uuid: String,
    pub name: String,
    /// The guest's host name (Nova: the sanitized display name).
    pub hostname: String,
    /// EC2's `i-%08x` id.
    pub ec2_id: String,
    pub project_id: String,
    pub availability_zone: Option<String>,
    pub launch_index: u32,
    /// (key pair name, public key).
    pub public_keys: Vec<(String, String)>,
    pub user_data: Option<Vec<u8>>,
    /// The server's metadata (`meta`).
    pub meta: BTreeMap<String, String>,
    /// `network_data.json` (links, networks, services).
    pub network_data: Value,
    /// The local IPv4 address, for the EC2 tree.
    pub local_ipv4: Option<String>,
    /// The floating IPv4 address, for the EC2 tree's `public-ipv4`.
    pub public_ipv4: Option<String>,
    /// The tagged devices and where the guest finds them (`devices`).
    pub devices: Vec<TaggedDevice>,
}

/// A device the user gave a role tag, where the hypervisor put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedDevice {
    pub device: GuestDevice,
    pub tags: Vec<String>,
}

/// The devices of `found` that the spec tags, with their tags: NICs by MAC,
/// volumes by id (Nova's `_build_device_metadata`: a device without a tag
/// is not shown).
pub fn tagged_devices(spec: &GuestSpec, found: &[GuestDevice]) -> Vec<TaggedDevice> {
    found
        .iter()
        .filter_map(|d| {
            let tag = match &d.kind {
                GuestDeviceKind::Nic { mac } => spec
                    .vifs
                    .iter()
                    .find(|v| v.mac_address.eq_ignore_ascii_case(mac))
                    .and_then(|v| v.tag.clone()),
                GuestDeviceKind::Disk { serial } => spec
                    .disks
                    .iter()
                    .find(|x| x.volume_id.as_deref() == Some(serial.as_str()))
                    .and_then(|x| x.tag.clone()),
            }?;
            Some(TaggedDevice {
                device: d.clone(),
                tags: vec![tag],
            })
        })
        .collect()
}

/// Whether the spec tags any device (else `devices` is empty whatever
/// the hypervisor has).
pub fn has_tags(spec: &GuestSpec) -> bool {
    spec.vifs.iter().any(|v| v.tag.is_some()) || spec.disks.iter().any(|d| d.tag.is_some())
}

/// One entry of `devices` as Nova's `_get_device_metadata` shows it in
/// `version` (`vf_trusted` from 2018-08-27).
fn device_json(d: &TaggedDevice, at_least: impl Fn(&str) -> bool) -> Value {
    let mut v = match &d.device.kind {
        GuestDeviceKind::Nic { mac } => {
            let mut v = json!({"type": "nic", "mac": mac});
            if at_least("2018-08-27") {
                v["vf_trusted"] = json!(false);
            }
            v
        }
        GuestDeviceKind::Disk { serial } => json!({"type": "disk", "serial": serial}),
    };
    v["bus"] = json!(d.device.bus);
    v["address"] = json!(d.device.address);
    v["tags"] = json!(d.tags);
    v
}

/// Nova's `meta_data.json` of one version (keys appear with the version
/// that introduced them).
pub fn meta_data(md: &InstanceMetadata, version: &str) -> Value {
    let at_least = |v: &str| version == "latest" || version >= v;
    let mut m = json!({
        "uuid": md.uuid,
        "name": md.name,
        "hostname": md.hostname,
        "launch_index": md.launch_index,
        "availability_zone": md.availability_zone,
        "meta": md.meta,
        "public_keys": md.public_keys.iter().cloned().collect::<BTreeMap<String, String>>(),
        "keys": md.public_keys.iter().map(|(n, k)| json!({"name": n, "type": "ssh", "data": k})).collect::<Vec<_>>(),
    });
    if at_least("2013-10-17") {
        let seed: [u8; 32] = rand::random();
        m["random_seed"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            seed
        ));
    }
    if at_least("2015-10-15") {
        m["project_id"] = json!(md.project_id);
    }
    if at_least("2016-06-30") {
        m["devices"] = Value::Array(
            md.devices
                .iter()
                .map(|d| device_json(d, at_least))
                .collect(),
        );
    }
    if at_least("2020-10-14") {
        m["dedicated_cpus"] = json!([]);
    }
    m
}

/// EC2's `meta-data.json`.
pub fn ec2_meta_data(md: &InstanceMetadata) -> Value {
    let mut keys = serde_json::Map::new();
    for (i, (_, k)) in md.public_keys.iter().enumerate() {
        keys.insert(i.to_string(), json!({"openssh-key": k}));
    }
    json!({
        "instance-id": md.ec2_id,
        "ami-launch-index": md.launch_index,
        "hostname": md.hostname,
        "local-hostname": md.hostname,
        "public-hostname": md.hostname,
        "local-ipv4": md.local_ipv4,
        "public-ipv4": md.public_ipv4,
        "placement": {"availability-zone": md.availability_zone},
        "public-keys": keys,
        "reservation-id": "",
        "security-groups": [],
        "instance-type": "",
        "ami-id": "",
    })
}

/// What the config drive shows of the guest (Nova's `InstanceMetadata`).
pub fn from_spec(s: &GuestSpec) -> InstanceMetadata {
    let links: Vec<_> = s
        .vifs
        .iter()
        .map(|v| {
            json!({
                "id": v.tap_name,
                "vif_id": v.port_id,
                "type": "bridge",
                "mtu": v.mtu,
                "ethernet_mac_address": v.mac_address,
            })
        })
        .collect();
    let mut networks = Vec::new();
    for v in &s.vifs {
        for (n, ip) in v.fixed_ips.iter().enumerate() {
            let v6 = ip.contains(':');
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "link": v.tap_name,
                "type": if v6 { "ipv6_dhcp" } else { "ipv4_dhcp" },
                "network_id": v.network_id,
                "_index": n,
            }));
        }
    }
    for n in networks.iter_mut() {
        if let Some(o) = n.as_object_mut() {
            o.remove("_index");
        }
    }
    let hex: String = s
        .uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    InstanceMetadata {
        uuid: s.uuid.clone(),
        name: s.name.clone(),
        hostname: if s.hostname.is_empty() {
            s.name.clone()
        } else {
            s.hostname.clone()
        },
        ec2_id: format!("i-{:0>8}", hex),
        project_id: s.project_id.clone(),
        availability_zone: s.availability_zone.clone(),
        launch_index: s.launch_index,
        public_keys: match (&s.key_name, &s.key_data) {
            (Some(n), Some(k)) => vec![(n.clone(), k.clone())],
            (None, Some(k)) => vec![("key".into(), k.clone())],
            _ => vec![],
        },
        user_data: s.user_data.as_ref().map(|u| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .unwrap_or_else(|_| u.as_bytes().to_vec())
        }),
        meta: s.metadata.clone(),
        network_data: json!({"links": links, "networks": networks, "services": []}),
        local_ipv4: s
            .vifs
            .iter()
            .flat_map(|v| v.fixed_ips.iter())
            .find(|ip| !ip.contains(':'))
            .cloned(),
        public_ipv4: None,
        devices: Vec::new(),
    }
}

/// One answer of the metadata service, as the guest gets it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetadataReply {
    pub status: u16,
    pub content_type: String,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

/// Compute's metadata queue: a network agent on a host without the
/// controller asks any controller (Nova's metadata API behind Neutron's
/// metadata agent). The instance is the agent's finding (the port the
/// request came from), never the guest's claim.
pub const TOPIC: &str = "metadata";

/// A guest's request to the metadata service, for Compute to answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename = "metadata")]
pub struct MetadataRequest {
    pub instance: String,
    /// The HTTP method (GET, or POST for the password).
    pub http_method: String,
    pub path: String,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

impl MetadataRequest {
    pub fn to_envelope(&self) -> Result<ferro_bus::Envelope, crate::RpcError> {
        crate::envelope(self, None)
    }

    pub fn from_envelope(env: &ferro_bus::Envelope) -> Result<MetadataRequest, crate::RpcError> {
        crate::open(env, "a network agent")
    }
}

/// Asks the controllers' metadata queue.
pub async fn ask(
    bus: &dyn ferro_bus::Bus,
    req: &MetadataRequest,
    timeout: std::time::Duration,
) -> Result<MetadataReply, crate::RpcError> {
    let v = bus
        .call(
            &ferro_bus::Target::topic(TOPIC),
            req.to_envelope()?,
            timeout,
        )
        .await
        .map_err(crate::RpcError::from_bus)?;
    serde_json::from_value(v).map_err(|e| crate::RpcError::BadMessage(format!("metadata: {e}")))
}

/// Bytes as base64 text on the wire.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn a_metadata_request_and_reply_cross_the_wire_intact() {
        let req = MetadataRequest {
            instance: "6f1c".into(),
            http_method: "POST".into(),
            path: "/openstack/latest/password".into(),
            body: b"secret\n\x00".to_vec(),
        };
        let env = req.to_envelope().unwrap();
        assert_eq!(env.method, "metadata");
        assert_eq!(MetadataRequest::from_envelope(&env).unwrap(), req);
        let reply = MetadataReply {
            status: 200,
            content_type: "application/json".into(),
            body: vec![0, 255, b'{'],
        };
        let v = serde_json::to_value(&reply).unwrap();
        assert_eq!(v["body"], "AP97");
        assert_eq!(serde_json::from_value::<MetadataReply>(v).unwrap(), reply);
    }
}
