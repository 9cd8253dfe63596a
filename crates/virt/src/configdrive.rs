//! The config drive as Nova writes it (`nova/virt/configdrive.py`,
//! `nova/api/metadata/base.py`): an iso9660 file system labelled
//! `config-2` holding `openstack/<version>/` (`meta_data.json`,
//! `user_data`, `network_data.json`, `vendor_data.json`,
//! `vendor_data2.json`) for every metadata version and `latest`, and the EC2
//! tree `ec2/<version>/` (`meta-data.json`, `user-data`). Guests read it
//! before they have a network (cloud-init's ConfigDrive datasource, the
//! project's test guest).
pub use ferro_rpc::metadata::{EC2_VERSIONS, InstanceMetadata, OPENSTACK_VERSIONS, TaggedDevice};
use ferro_rpc::metadata::{ec2_meta_data, meta_data};
use serde_json::Value;
use std::path::Path;

fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, data)
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
