//! Volumes in QEMU guests: a local file volume (Block Storage's `file`
//! transport) hot-plugged with QMP `blockdev-add` + `device_add`, unplugged
//! with `device_del` retried until the guest lets the device go (Nova's
//! rules: the block node goes only after the device, and a guest that never
//! lets go is an error that leaves the volume attached). The attachments are
//! kept in the guest's `volumes.json`, so a guest started again (start,
//! reboot, resize) has them on its command line.
use super::qmp::Qmp;
use crate::{ConnectionInfo, VirtError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One attached volume: where it is and what QEMU calls it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attached {
    pub volume_id: String,
    /// A local file's path (empty for a remote volume).
    pub path: String,
    pub format: String,
    pub read_only: bool,
    /// The boot disk of a server booted from volume.
    #[serde(default)]
    pub boot: bool,
    /// A volume of another host, over NBD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd: Option<NbdTarget>,
}

/// A volume exported by another host over NBD with TLS and a pre-shared
/// key (Block Storage's `nbd` transport).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NbdTarget {
    pub host: String,
    pub port: u16,
    pub export: String,
    pub identity: String,
    pub key: String,
    /// The directory holding the key as QEMU reads it (`keys.psk`), in the
    /// guest's directory; set when the volume is placed there.
    #[serde(default)]
    pub psk_dir: String,
}

impl Attached {
    /// A name QEMU accepts, unique per device name (`/dev/vdb` -> `vdb`).
    fn short(device: &str) -> String {
        device
            .rsplit('/')
            .next()
            .unwrap_or(device)
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    }
    pub fn node(device: &str) -> String {
        format!("vol-{}", Self::short(device))
    }
    pub fn dev_id(device: &str) -> String {
        format!("dev-{}", Self::short(device))
    }
    /// Whether `other` is this volume, reached the same way (an NBD key
    /// placed in a guest's directory is not part of it).
    pub fn same_target(&self, other: &Attached) -> bool {
        let target = |a: &Attached| {
            (
                a.volume_id.clone(),
                a.path.clone(),
                a.format.clone(),
                a.read_only,
                a.nbd
                    .as_ref()
                    .map(|n| (n.host.clone(), n.port, n.export.clone(), n.key.clone())),
            )
        };
        target(self) == target(other)
    }
    /// The TLS credentials object of a volume over NBD.
    pub fn creds(device: &str) -> String {
        format!("tls-{}", Self::short(device))
    }
    /// What the guest's QEMU opens, to hand to its uid: a local file, or an
    /// NBD volume's key (directory and file).
    pub fn files(&self) -> Vec<PathBuf> {
        match &self.nbd {
            Some(n) if !n.psk_dir.is_empty() => {
                let d = PathBuf::from(&n.psk_dir);
                vec![d.join("keys.psk"), d]
            }
            Some(_) => Vec::new(),
            None => vec![PathBuf::from(&self.path)],
        }
    }
    /// Writes an NBD volume's key into `guest_dir`, where only the guest's
    /// QEMU (and the service) read it.
    pub fn place_key(&mut self, guest_dir: &Path, device: &str) -> Result<(), VirtError> {
        let Some(n) = self.nbd.as_mut() else {
            return Ok(());
        };
        let d = guest_dir.join(format!("psk-{}", Self::short(device)));
        let err = |e: std::io::Error| VirtError::Failed(format!("{}: {e}", d.display()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(err)?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(d.join("keys.psk"))
                .map_err(err)?;
            std::io::Write::write_all(&mut f, format!("{}:{}\n", n.identity, n.key).as_bytes())
                .map_err(err)?;
        }
        n.psk_dir = d.to_string_lossy().into_owned();
        Ok(())
    }
    /// The `tls-creds-psk` object of an NBD volume.
    fn creds_object(&self, device: &str) -> Option<Value> {
        let n = self.nbd.as_ref()?;
        Some(
            json!({"qom-type": "tls-creds-psk", "id": Self::creds(device),
                    "endpoint": "client", "dir": n.psk_dir, "username": n.identity}),
        )
    }
    /// `-blockdev` JSON and `-device` of a cold-plugged volume.
    pub fn argv(&self, device: &str) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = &self.nbd {
            v.push("-object".into());
            v.push(format!(
                "tls-creds-psk,id={},endpoint=client,dir={},username={}",
                Self::creds(device),
                n.psk_dir,
                n.identity
            ));
        }
        v.extend([
            "-blockdev".into(),
            self.blockdev(device).to_string(),
            "-device".into(),
            format!(
                "virtio-blk-pci,drive={},id={},serial={}{}",
                Self::node(device),
                Self::dev_id(device),
                self.serial(),
                if self.boot { ",bootindex=1" } else { "" }
            ),
        ]);
        v
    }
    fn blockdev(&self, device: &str) -> Value {
        if let Some(n) = &self.nbd {
            return json!({
                "driver": "raw",
                "node-name": Self::node(device),
                "read-only": self.read_only,
                "file": {"driver": "nbd", "read-only": self.read_only,
                         "server": {"type": "inet", "host": n.host, "port": n.port.to_string()},
                         "export": n.export, "tls-creds": Self::creds(device)},
            });
        }
        json!({
            "driver": self.format,
            "node-name": Self::node(device),
            "read-only": self.read_only,
            "file": {"driver": "file", "filename": self.path, "read-only": self.read_only},
        })
    }
    /// Nova's virtio serial: the volume id, cut to the 20 bytes virtio-blk keeps.
    fn serial(&self) -> String {
        self.volume_id.chars().take(20).collect()
    }
}

/// What a connection info says of a volume: a local file, or a volume of
/// another host over NBD.
pub fn from_connection(ci: &ConnectionInfo) -> Result<Attached, VirtError> {
    if ci.driver_volume_type == "nbd" {
        let s = |k: &str| {
            ci.data
                .extra
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| VirtError::Failed(format!("nbd connection info has no {k}")))
        };
        let port = ci
            .data
            .extra
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| VirtError::Failed("nbd connection info has no port".into()))?;
        let key = s("tls_psk_key")?;
        let identity = s("tls_psk_identity")?;
        let safe = |x: &str| x.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !safe(&key) || !safe(&identity) {
            return Err(VirtError::Failed("nbd connection info: a bad key".into()));
        }
        return Ok(Attached {
            volume_id: ci.data.volume_id.clone().unwrap_or_default(),
            path: String::new(),
            format: "raw".into(),
            read_only: ci.data.access_mode.as_deref() == Some("ro"),
            boot: false,
            nbd: Some(NbdTarget {
                host: s("host")?,
                port,
                export: s("export_name")?,
                identity,
                key,
                psk_dir: String::new(),
            }),
        });
    }
    if ci.driver_volume_type != "file" && ci.driver_volume_type != "local" {
        return Err(VirtError::Failed(format!(
            "volume transport {} is not supported by the QEMU driver (file, nbd)",
            ci.driver_volume_type
        )));
    }
    let path = ci
        .data
        .device_path
        .clone()
        .ok_or_else(|| VirtError::Failed("connection info has no device_path".into()))?;
    let format = ci.data.format.clone().unwrap_or_else(|| "raw".into());
    if !matches!(format.as_str(), "raw" | "qcow2") {
        return Err(VirtError::Failed(format!(
            "volume format {format} is not supported"
        )));
    }
    Ok(Attached {
        volume_id: ci.data.volume_id.clone().unwrap_or_default(),
        path,
        format,
        read_only: ci.data.access_mode.as_deref() == Some("ro"),
        boot: false,
        nbd: None,
    })
}

/// The volumes a new guest boots with (its block device mappings, as
/// Nova's `block_device_info`), added to `volumes.json`; the one with boot
/// index 0 is the boot disk.
pub fn from_spec(dir: &Path, spec: &crate::GuestSpec) -> Result<(), VirtError> {
    let mut all = load(dir);
    let mut letter = b'b';
    for d in spec
        .disks
        .iter()
        .filter(|d| d.kind == crate::DiskKind::Volume)
    {
        let Some(ci) = &d.connection_info else {
            continue;
        };
        let mut vol = from_connection(ci)?;
        vol.boot = d.boot_index == Some(0);
        let device = match &d.device_name {
            Some(n) => n.clone(),
            None => {
                while all.contains_key(&format!("/dev/vd{}", letter as char)) {
                    letter += 1;
                }
                format!("/dev/vd{}", letter as char)
            }
        };
        vol.place_key(dir, &device)?;
        all.entry(device).or_insert(vol);
    }
    save(dir, &all)
}

fn file(dir: &Path) -> PathBuf {
    dir.join("volumes.json")
}

/// The guest's attachments, by device name.
pub fn load(dir: &Path) -> BTreeMap<String, Attached> {
    std::fs::read(file(dir))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

pub fn save(dir: &Path, v: &BTreeMap<String, Attached>) -> Result<(), VirtError> {
    let p = file(dir);
    let tmp = dir.join("volumes.json.tmp");
    let body = serde_json::to_vec_pretty(v).map_err(|e| VirtError::Failed(e.to_string()))?;
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| VirtError::Failed(format!("{}: {e}", p.display())))
}

/// Hot-plugs `a` at `device` into the running guest behind `q`.
pub async fn plug(q: &mut Qmp, device: &str, a: &Attached) -> Result<(), VirtError> {
    if let Some(obj) = a.creds_object(device) {
        q.execute("object-add", Some(obj)).await?;
    }
    if let Err(e) = q.execute("blockdev-add", Some(a.blockdev(device))).await {
        drop_creds(q, device).await;
        return Err(e);
    }
    let r = q
        .execute(
            "device_add",
            Some(json!({
                "driver": "virtio-blk-pci",
                "drive": Attached::node(device),
                "id": Attached::dev_id(device),
                "serial": a.serial(),
            })),
        )
        .await;
    if let Err(e) = r {
        let _ = q
            .execute(
                "blockdev-del",
                Some(json!({"node-name": Attached::node(device)})),
            )
            .await;
        drop_creds(q, device).await;
        return Err(e);
    }
    Ok(())
}

/// Removes an NBD volume's credentials object, if there is one.
async fn drop_creds(q: &mut Qmp, device: &str) {
    let _ = q
        .execute("object-del", Some(json!({"id": Attached::creds(device)})))
        .await;
}

/// Unplugs the device at `device`: `device_del`, asked again every
/// `interval` until the guest releases it or `attempts` run out; then the
/// block node is removed.
pub async fn unplug(
    q: &mut Qmp,
    device: &str,
    attempts: u32,
    interval: Duration,
) -> Result<(), VirtError> {
    let gone = q
        .remove_device(&Attached::dev_id(device), attempts, interval)
        .await?;
    if !gone {
        return Err(VirtError::Failed(format!(
            "the guest did not release the device {device} after {attempts} attempts"
        )));
    }
    remove_node(q, &Attached::node(device)).await?;
    drop_creds(q, device).await;
    Ok(())
}

/// Removes a block node once nothing holds it: just after the device that
/// used it is deleted, QEMU may still call it busy for a moment, and a
/// node left behind would refuse the next attach at the same device.
async fn remove_node(q: &mut Qmp, node: &str) -> Result<(), VirtError> {
    let mut last = String::new();
    for _ in 0..40 {
        match q
            .execute("blockdev-del", Some(json!({"node-name": node})))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("Failed to find node") => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(VirtError::Failed(format!(
        "removing the block node {node}: {last}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionData;

    #[test]
    fn a_file_volume_as_qemu_sees_it() {
        let ci = ConnectionInfo {
            driver_volume_type: "file".into(),
            data: ConnectionData {
                volume_id: Some("0123456789abcdef0123456789".into()),
                device_path: Some("/v/vol.qcow2".into()),
                format: Some("qcow2".into()),
                ..Default::default()
            },
        };
        let a = from_connection(&ci).unwrap();
        let args = a.argv("/dev/vdb").join(" ");
        assert!(args.contains(r#""node-name":"vol-vdb""#), "{args}");
        assert!(args.contains(r#""filename":"/v/vol.qcow2""#), "{args}");
        assert!(
            args.contains("virtio-blk-pci,drive=vol-vdb,id=dev-vdb,serial=0123456789abcdef0123"),
            "{args}"
        );
        let iscsi = ConnectionInfo {
            driver_volume_type: "iscsi".into(),
            data: ConnectionData::default(),
        };
        assert!(from_connection(&iscsi).is_err());
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).is_empty());
        save(
            d.path(),
            &BTreeMap::from([("/dev/vdb".to_string(), a.clone())]),
        )
        .unwrap();
        assert_eq!(load(d.path())["/dev/vdb"], a);
    }
}
