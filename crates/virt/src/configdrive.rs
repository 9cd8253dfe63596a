//! The config drive as Nova writes it (`nova/virt/configdrive.py`,
//! `nova/api/metadata/base.py`): an iso9660 file system labelled
//! `config-2` holding `openstack/<version>/` (`meta_data.json`,
//! `user_data`, `network_data.json`, `vendor_data.json`,
//! `vendor_data2.json`) for every metadata version and `latest`, and the EC2
//! tree `ec2/<version>/` (`meta-data.json`, `user-data`). Guests read it
//! before they have a network (cloud-init's ConfigDrive datasource, the
//! project's test guest).
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

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
}

fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, data)
}

/// Nova's `meta_data.json` of one version (keys appear with the version
/// that introduced them).
fn meta_data(md: &InstanceMetadata, version: &str) -> Value {
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
        m["devices"] = json!([]);
    }
    if at_least("2020-10-14") {
        m["dedicated_cpus"] = json!([]);
    }
    m
}

/// EC2's `meta-data.json`.
fn ec2_meta_data(md: &InstanceMetadata) -> Value {
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
        "placement": {"availability-zone": md.availability_zone},
        "public-keys": keys,
        "reservation-id": "",
        "security-groups": [],
        "instance-type": "",
        "ami-id": "",
    })
}

/// Writes the config drive's files under `dir`.
pub fn write_tree(md: &InstanceMetadata, dir: &Path) -> std::io::Result<()> {
    let enc = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    for v in OPENSTACK_VERSIONS.iter().copied().chain(["latest"]) {
        let base = dir.join("openstack").join(v);
        write(&base.join("meta_data.json"), &enc(&meta_data(md, v)))?;
        if let Some(u) = &md.user_data {
            write(&base.join("user_data"), u)?;
        }
        write(&base.join("vendor_data.json"), b"{}")?;
        if v == "latest" || v >= "2015-10-15" {
            write(&base.join("network_data.json"), &enc(&md.network_data))?;
        }
        if v == "latest" || v >= "2016-10-06" {
            write(&base.join("vendor_data2.json"), b"{}")?;
        }
    }
    for v in EC2_VERSIONS.iter().copied().chain(["latest"]) {
        let base = dir.join("ec2").join(v);
        write(&base.join("meta-data.json"), &enc(&ec2_meta_data(md)))?;
        if let Some(u) = &md.user_data {
            write(&base.join("user-data"), u)?;
        }
    }
    Ok(())
}

/// Writes the tree and makes the iso9660 image at `iso` with Nova's
/// `genisoimage` arguments (volume id `config-2`, Rock Ridge and Joliet).
pub async fn build_iso(md: &InstanceMetadata, iso: &Path) -> Result<(), String> {
    let tree = iso.with_extension("tree");
    let _stale = std::fs::remove_dir_all(&tree);
    write_tree(md, &tree).map_err(|e| format!("writing the config drive: {e}"))?;
    let out = tokio::process::Command::new("genisoimage")
        .args([
            "-o",
            &iso.to_string_lossy(),
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            "ferrostack",
            "-quiet",
            "-J",
            "-r",
            "-V",
            "config-2",
        ])
        .arg(&tree)
        .output()
        .await
        .map_err(|e| format!("genisoimage: {e}"))?;
    let _removed = std::fs::remove_dir_all(&tree);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "genisoimage failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
