//! Volumes in QEMU guests: a local file volume (Block Storage's `file`
//! transport) hot-plugged with QMP `blockdev-add` + `device_add`, unplugged
//! with `device_del` retried until the guest lets the device go (Nova's
//! rules: the block node goes only after the device, and a guest that never
//! lets go is an error that leaves the volume attached). The attachments are
//! kept in the guest's `volumes.json`, so a guest started again (start,
//! reboot, resize) has them on its command line. A volume of another host
//! comes over NBD (TLS with a pre-shared key) or iSCSI (QEMU's own
//! initiator, CHAP); its credentials are kept in the guest's directory,
//! readable by the guest's QEMU only.
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
    /// A volume of another host, over iSCSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiTarget>,
}

/// A volume exported by another host as an iSCSI target with a CHAP
/// account (Block Storage's `iscsi` transport).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IscsiTarget {
    /// `host:port`.
    pub portal: String,
    pub iqn: String,
    pub lun: u32,
    pub user: String,
    pub password: String,
    /// The file holding the password as QEMU's `secret` object reads it,
    /// in the guest's directory; set when the volume is placed there.
    #[serde(default)]
    pub secret_file: String,
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
                a.iscsi.as_ref().map(|i| {
                    (
                        i.portal.clone(),
                        i.iqn.clone(),
                        i.lun,
                        i.user.clone(),
                        i.password.clone(),
                    )
                }),
            )
        };
        target(self) == target(other)
    }
    /// The TLS credentials object of a volume over NBD.
    pub fn creds(device: &str) -> String {
        format!("tls-{}", Self::short(device))
    }
    /// The CHAP secret object of a volume over iSCSI.
    pub fn secret(device: &str) -> String {
        format!("sec-{}", Self::short(device))
    }
    /// What the guest's QEMU opens, to hand to its uid: a local file, or an
    /// NBD volume's key (directory and file).
    pub fn files(&self) -> Vec<PathBuf> {
        if let Some(i) = &self.iscsi {
            return if i.secret_file.is_empty() {
                Vec::new()
            } else {
                vec![PathBuf::from(&i.secret_file)]
            };
        }
        match &self.nbd {
            Some(n) if !n.psk_dir.is_empty() => {
                let d = PathBuf::from(&n.psk_dir);
                vec![d.join("keys.psk"), d]
            }
            Some(_) => Vec::new(),
            None => vec![PathBuf::from(&self.path)],
        }
    }
    /// What of the credentials to remove from the guest's directory when
    /// the volume goes.
    pub fn credentials(&self) -> Option<PathBuf> {
        if let Some(i) = &self.iscsi
            && !i.secret_file.is_empty()
        {
            return Some(PathBuf::from(&i.secret_file));
        }
        self.nbd
            .as_ref()
            .filter(|n| !n.psk_dir.is_empty())
            .map(|n| PathBuf::from(&n.psk_dir))
    }
    /// Writes an NBD volume's key into `guest_dir`, where only the guest's
    /// QEMU (and the service) read it.
    pub fn place_key(&mut self, guest_dir: &Path, device: &str) -> Result<(), VirtError> {
        if let Some(i) = self.iscsi.as_mut() {
            let p = guest_dir.join(format!("chap-{}", Self::short(device)));
            let err = |e: std::io::Error| VirtError::Failed(format!("{}: {e}", p.display()));
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&p)
                .map_err(err)?;
            std::io::Write::write_all(&mut f, i.password.as_bytes()).map_err(err)?;
            i.secret_file = p.to_string_lossy().into_owned();
            return Ok(());
        }
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
        if let Some(i) = &self.iscsi {
            return Some(json!({"qom-type": "secret", "id": Self::secret(device),
                               "format": "raw", "file": i.secret_file}));
        }
        let n = self.nbd.as_ref()?;
        Some(
            json!({"qom-type": "tls-creds-psk", "id": Self::creds(device),
                    "endpoint": "client", "dir": n.psk_dir, "username": n.identity}),
        )
    }
    /// `-blockdev` JSON and `-device` of a cold-plugged volume, at PCI
    /// `slot`.
    pub fn argv(&self, device: &str, slot: u8) -> Vec<String> {
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
        if let Some(i) = &self.iscsi {
            v.push("-object".into());
            v.push(format!(
                "secret,id={},format=raw,file={}",
                Self::secret(device),
                i.secret_file
            ));
        }
        v.extend([
            "-blockdev".into(),
            self.blockdev(device).to_string(),
            "-device".into(),
            format!(
                "virtio-blk-pci,drive={},id={},serial={}{},addr={slot:#x}",
                Self::node(device),
                Self::dev_id(device),
                self.serial(),
                if self.boot { ",bootindex=1" } else { "" }
            ),
        ]);
        v
    }
    fn blockdev(&self, device: &str) -> Value {
        if let Some(i) = &self.iscsi {
            return json!({
                "driver": "raw",
                "node-name": Self::node(device),
                "read-only": self.read_only,
                "file": {"driver": "iscsi", "transport": "tcp", "portal": i.portal,
                         "target": i.iqn, "lun": i.lun, "user": i.user,
                         "password-secret": Self::secret(device)},
            });
        }
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
/// another host over NBD or iSCSI.
pub fn from_connection(ci: &ConnectionInfo) -> Result<Attached, VirtError> {
    if ci.driver_volume_type == "iscsi" {
        return from_iscsi(ci);
    }
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
            iscsi: None,
        });
    }
    if ci.driver_volume_type != "file" && ci.driver_volume_type != "local" {
        return Err(VirtError::Failed(format!(
            "volume transport {} is not supported by the QEMU driver (file, nbd, iscsi)",
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
        iscsi: None,
    })
}

/// Cinder's iSCSI connection info: one portal, a target and a LUN, and
/// CHAP credentials (QEMU's initiator logs in with them).
fn from_iscsi(ci: &ConnectionInfo) -> Result<Attached, VirtError> {
    let x = &ci.data.extra;
    let s = |k: &str| {
        x.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| VirtError::Failed(format!("iscsi connection info has no {k}")))
    };
    let lun = x
        .get("target_lun")
        .and_then(Value::as_u64)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or_else(|| VirtError::Failed("iscsi connection info has no target_lun".into()))?;
    let (user, password) = match x.get("auth_method").and_then(Value::as_str) {
        Some(m) if m.eq_ignore_ascii_case("chap") => (s("auth_username")?, s("auth_password")?),
        _ => {
            return Err(VirtError::Failed(
                "iscsi connection info without CHAP credentials is refused".into(),
            ));
        }
    };
    let plain = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))
    };
    let (portal, iqn) = (s("target_portal")?, s("target_iqn")?);
    if ![&portal, &iqn, &user, &password].iter().all(|v| plain(v)) {
        return Err(VirtError::Failed(
            "iscsi connection info: a bad portal, target or credential".into(),
        ));
    }
    let format = ci.data.format.clone().unwrap_or_else(|| "raw".into());
    if format != "raw" {
        return Err(VirtError::Failed(format!(
            "an iscsi volume of format {format} is not supported"
        )));
    }
    Ok(Attached {
        volume_id: ci.data.volume_id.clone().unwrap_or_default(),
        path: String::new(),
        format,
        read_only: ci.data.access_mode.as_deref() == Some("ro"),
        boot: false,
        nbd: None,
        iscsi: Some(IscsiTarget {
            portal,
            iqn,
            lun,
            user,
            password,
            secret_file: String::new(),
        }),
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

/// Removes a remote volume's credentials object, if there is one.
async fn drop_creds(q: &mut Qmp, device: &str) {
    for id in [Attached::creds(device), Attached::secret(device)] {
        let _ = q.execute("object-del", Some(json!({"id": id}))).await;
    }
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
        let args = a.argv("/dev/vdb", 5).join(" ");
        assert!(args.contains(r#""node-name":"vol-vdb""#), "{args}");
        assert!(args.contains(r#""filename":"/v/vol.qcow2""#), "{args}");
        assert!(
            args.contains(
                "virtio-blk-pci,drive=vol-vdb,id=dev-vdb,serial=0123456789abcdef0123,addr=0x5"
            ),
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

    #[test]
    fn an_iscsi_volume_as_qemu_sees_it() {
        let info = |extra: serde_json::Value| ConnectionInfo {
            driver_volume_type: "iscsi".into(),
            data: ConnectionData {
                volume_id: Some("v1".into()),
                format: Some("raw".into()),
                extra: serde_json::from_value(extra).unwrap(),
                ..Default::default()
            },
        };
        let good = json!({"target_portal": "10.0.0.1:3260",
                          "target_iqn": "iqn.2010-10.org.openstack:volume-v1.h",
                          "target_lun": 1, "auth_method": "CHAP",
                          "auth_username": "att01", "auth_password": "0123abcd"});
        let mut a = from_connection(&info(good.clone())).unwrap();
        let d = tempfile::tempdir().unwrap();
        a.place_key(d.path(), "/dev/vdc").unwrap();
        let secret = d.path().join("chap-vdc");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "0123abcd");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(a.files(), vec![secret.clone()]);
        let args = a.argv("/dev/vdc", 6).join(" ");
        assert!(
            args.contains(&format!(
                "secret,id=sec-vdc,format=raw,file={}",
                secret.display()
            )),
            "{args}"
        );
        assert!(args.contains(r#""driver":"iscsi""#), "{args}");
        assert!(args.contains(r#""password-secret":"sec-vdc""#), "{args}");
        assert!(args.contains(r#""portal":"10.0.0.1:3260""#), "{args}");
        assert!(
            !args.contains("0123abcd"),
            "the password is never on the command line"
        );
        // No CHAP, or values that could smuggle options, are refused.
        let mut no_chap = good.clone();
        no_chap["auth_method"] = json!("None");
        assert!(from_connection(&info(no_chap)).is_err());
        let mut bad = good.clone();
        bad["target_iqn"] = json!("iqn.x,file=/etc/shadow");
        assert!(from_connection(&info(bad)).is_err());
        let mut qcow = good;
        qcow["auth_username"] = json!("att01");
        let mut ci = info(qcow);
        ci.data.format = Some("qcow2".into());
        assert!(from_connection(&ci).is_err());
    }
}
