//! Volume drivers (Cinder's): the `VolumeDriver` trait with `FakeDriver`
//! (in memory, for API tests and scale runs) and `FileDriver` (a qcow2 or
//! raw file per volume and per snapshot in one directory, driven by
//! `qemu-img`). The volume agent owns one and serves it over the bus. LVM
//! and Ceph RBD fit the same trait: every call names volumes and snapshots
//! by id, sizes are GiB, `export` returns the `connection_info` the
//! connector's host attaches and `unexport` closes it.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub type BResult<T> = Result<T, String>;

pub use ferro_rpc::volume::Capacity;

pub mod iscsi;
pub mod nbd;

#[async_trait::async_trait]
pub trait VolumeDriver: Send + Sync {
    /// `volume_backend_name` (also the pool name).
    fn name(&self) -> &str;
    /// `storage_protocol` as the capabilities report it.
    fn protocol(&self) -> &str;
    fn vendor(&self) -> &str {
        "ferrostack"
    }
    /// `backend_state` in the services list (3.49): `up` or `down`.
    fn state(&self) -> &'static str {
        "up"
    }
    async fn capacity(&self) -> Capacity;
    /// A blank volume of `size_gb`.
    async fn create(&self, id: &str, size_gb: u64) -> BResult<()>;
    /// A volume holding the image at `src` (any format qemu-img reads),
    /// grown to `size_gb`.
    async fn create_from_file(&self, id: &str, src: &Path, size_gb: u64) -> BResult<()>;
    async fn clone_volume(&self, src: &str, id: &str, size_gb: u64) -> BResult<()>;
    async fn create_snapshot(&self, vol: &str, snap: &str) -> BResult<()>;
    /// Where a snapshot's file goes and its format, for a backend whose
    /// snapshots of attached volumes the guest's hypervisor makes (a file
    /// a running QEMU holds open is copied by that QEMU); `None`: the
    /// backend snapshots by itself.
    fn snapshot_file(&self, _snap: &str) -> Option<(PathBuf, String)> {
        None
    }
    async fn create_from_snapshot(&self, snap: &str, id: &str, size_gb: u64) -> BResult<()>;
    /// Rolls the volume back to the snapshot's content (size unchanged).
    async fn revert_to_snapshot(&self, vol: &str, snap: &str) -> BResult<()>;
    /// Grows the volume; `Ok(false)` when a running guest's hypervisor
    /// holds it open, which grows it itself (QEMU's `block_resize`) when
    /// Compute is told of the new size.
    async fn extend(&self, id: &str, size_gb: u64) -> BResult<bool>;
    /// Idempotent: deleting what is not there succeeds.
    async fn delete(&self, id: &str) -> BResult<()>;
    async fn delete_snapshot(&self, snap: &str) -> BResult<()>;
    /// What the host of `connector` needs to attach the volume (Cinder's
    /// `initialize_connection`).
    async fn export(&self, id: &str, connector: &Value) -> BResult<Value>;
    /// Closes what `export` opened for `connector` (idempotent).
    async fn unexport(&self, _id: &str, _connector: &Value) -> BResult<()> {
        Ok(())
    }
    /// Writes the volume's content to `dst` in `format` (upload-to-image).
    async fn copy_to_file(&self, id: &str, dst: &Path, format: &str) -> BResult<()>;
    /// Ids of the volumes and of the snapshots the backend holds.
    async fn inventory(&self) -> BResult<(Vec<String>, Vec<String>)>;
}

/// In memory: records sizes, never touches the disk.
#[derive(Default)]
pub struct FakeDriver {
    vols: Mutex<HashMap<String, u64>>,
    snaps: Mutex<HashMap<String, u64>>,
    pub total_gb: u64,
}

impl FakeDriver {
    pub fn new(total_gb: u64) -> Self {
        FakeDriver {
            total_gb,
            ..Default::default()
        }
    }
    fn vols(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.vols.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn snaps(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.snaps.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn size_of(&self, id: &str) -> BResult<u64> {
        self.vols()
            .get(id)
            .copied()
            .ok_or_else(|| format!("volume {id} is not on the backend"))
    }
}

#[async_trait::async_trait]
impl VolumeDriver for FakeDriver {
    fn name(&self) -> &str {
        "fake"
    }
    fn protocol(&self) -> &str {
        "fake"
    }
    async fn capacity(&self) -> Capacity {
        Capacity {
            total_gb: self.total_gb as f64,
            free_gb: self.total_gb as f64,
        }
    }
    async fn create(&self, id: &str, size_gb: u64) -> BResult<()> {
        self.vols().insert(id.into(), size_gb);
        Ok(())
    }
    async fn create_from_file(&self, id: &str, src: &Path, size_gb: u64) -> BResult<()> {
        if !src.exists() {
            return Err(format!("{} does not exist", src.display()));
        }
        self.create(id, size_gb).await
    }
    async fn clone_volume(&self, src: &str, id: &str, size_gb: u64) -> BResult<()> {
        self.size_of(src)?;
        self.create(id, size_gb).await
    }
    async fn create_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        let size = self.size_of(vol)?;
        self.snaps().insert(snap.into(), size);
        Ok(())
    }
    async fn create_from_snapshot(&self, snap: &str, id: &str, size_gb: u64) -> BResult<()> {
        if !self.snaps().contains_key(snap) {
            return Err(format!("snapshot {snap} is not on the backend"));
        }
        self.create(id, size_gb).await
    }
    async fn revert_to_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        self.size_of(vol)?;
        if !self.snaps().contains_key(snap) {
            return Err(format!("snapshot {snap} is not on the backend"));
        }
        Ok(())
    }
    async fn extend(&self, id: &str, size_gb: u64) -> BResult<bool> {
        self.size_of(id)?;
        self.vols().insert(id.into(), size_gb);
        Ok(true)
    }
    async fn delete(&self, id: &str) -> BResult<()> {
        self.vols().remove(id);
        Ok(())
    }
    async fn delete_snapshot(&self, snap: &str) -> BResult<()> {
        self.snaps().remove(snap);
        Ok(())
    }
    async fn export(&self, id: &str, _connector: &Value) -> BResult<Value> {
        self.size_of(id)?;
        Ok(json!({"driver_volume_type": "fake", "data": {"volume_id": id}}))
    }
    async fn copy_to_file(&self, id: &str, dst: &Path, _format: &str) -> BResult<()> {
        self.size_of(id)?;
        std::fs::write(dst, b"").map_err(|e| e.to_string())
    }
    async fn inventory(&self) -> BResult<(Vec<String>, Vec<String>)> {
        Ok((
            self.vols().keys().cloned().collect(),
            self.snaps().keys().cloned().collect(),
        ))
    }
}

/// How volumes reach other hosts.
enum Remote {
    Nbd(nbd::NbdExports),
    Iscsi(std::sync::Arc<dyn iscsi::IscsiTargets>),
}

impl Remote {
    async fn export(&self, id: &str, file: &Path, format: &str, host: &str) -> BResult<Value> {
        match self {
            Remote::Nbd(n) => n.export(id, file, format, host).await,
            Remote::Iscsi(i) => i.export(id, file, host).await,
        }
    }
    async fn unexport(&self, id: &str, host: &str) -> BResult<()> {
        match self {
            Remote::Nbd(n) => n.unexport(id, host).await,
            Remote::Iscsi(i) => i.unexport(id, host).await,
        }
    }
    async fn exported(&self) -> Vec<(String, String)> {
        match self {
            Remote::Nbd(n) => n.exported(),
            Remote::Iscsi(i) => i.exported().await,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Remote::Nbd(_) => "NBD",
            Remote::Iscsi(_) => "iSCSI",
        }
    }
}

/// One file per volume (`volume-<id>`) and per snapshot (`snapshot-<id>`)
/// in `dir`, qcow2 (thin) or raw. Snapshots are full copies, so each file
/// stands alone and deleting in any order is safe. Every file is written
/// under a temporary name and renamed into place, so a failure leaves no
/// half-written volume behind.
pub struct FileDriver {
    pub dir: PathBuf,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Capacity to report; 0 means the filesystem's own size.
    pub capacity_gb: u64,
    /// This host, and how other hosts reach its volumes (`with_nbd`,
    /// `with_iscsi`); without it every host gets the file's path (a shared
    /// file system).
    remote: Option<(String, Remote)>,
}

const GIB: u64 = 1 << 30;

impl FileDriver {
    pub fn new(dir: PathBuf, format: &str, capacity_gb: u64) -> BResult<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Left-overs of an interrupted write are never a live volume.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(FileDriver {
            dir,
            format: if format == "raw" { "raw" } else { "qcow2" }.into(),
            capacity_gb,
            remote: None,
        })
    }

    /// Volumes attached from a host other than `host` are exported over NBD
    /// with a key per attachment, listening on `listen`.
    pub fn with_nbd(mut self, host: &str, listen: &str) -> Self {
        let exports = nbd::NbdExports {
            dir: self.dir.join(".exports"),
            listen: listen.to_string(),
        };
        self.remote = Some((host.to_string(), Remote::Nbd(exports)));
        self
    }

    /// Volumes attached from a host other than `host` are exported over
    /// iSCSI (a `tgtd` this driver runs, portal `listen:port`) with a CHAP
    /// account per attachment. A target serves a file as a disk of fixed
    /// size, so the volumes must be raw.
    pub fn with_iscsi(self, host: &str, listen: &str, port: u16) -> BResult<Self> {
        let exports = iscsi::IscsiExports::new(Self::iscsi_dir(&self.dir), listen, port);
        self.with_iscsi_targets(host, std::sync::Arc::new(exports))
    }

    /// As `with_iscsi`, with the targets made by `targets` (the privileged
    /// helper's, when the service runs without root).
    pub fn with_iscsi_targets(
        mut self,
        host: &str,
        targets: std::sync::Arc<dyn iscsi::IscsiTargets>,
    ) -> BResult<Self> {
        if self.format != "raw" {
            return Err(format!(
                "iSCSI exports need raw volumes (volume_format = raw), not {}",
                self.format
            ));
        }
        self.remote = Some((host.to_string(), Remote::Iscsi(targets)));
        Ok(self)
    }

    /// Where the iSCSI exports of volumes in `volumes_dir` keep their records.
    pub fn iscsi_dir(volumes_dir: &Path) -> PathBuf {
        volumes_dir.join(".exports").join("iscsi")
    }

    /// The exports, when the connector's host is another host.
    fn remote_for<'a>(&'a self, connector: &'a Value) -> Option<(&'a Remote, &'a str)> {
        let (own, exports) = self.remote.as_ref()?;
        let host = connector.get("host").and_then(Value::as_str)?;
        (host != own).then_some((exports, host))
    }
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("volume-{id}"))
    }
    pub fn snapshot_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{id}"))
    }
    fn tmp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".tmp-{id}"))
    }
    fn existing(&self, p: PathBuf) -> BResult<PathBuf> {
        if p.exists() {
            Ok(p)
        } else {
            Err(format!("{} does not exist", p.display()))
        }
    }
    /// Converts `src` into a new file at `dst` of `size_gb`, atomically.
    async fn convert_into(&self, src: &Path, dst: &Path, id: &str, size_gb: u64) -> BResult<()> {
        self.convert_from(src, None, dst, id, size_gb).await
    }

    /// `convert_into` from a file read as `src_format` (probed when None:
    /// only for files this driver wrote).
    async fn convert_from(
        &self,
        src: &Path,
        src_format: Option<&str>,
        dst: &Path,
        id: &str,
        size_gb: u64,
    ) -> BResult<()> {
        let tmp = self.tmp_path(id);
        let r = async {
            let src = src.to_string_lossy();
            let tmp_s = tmp.to_string_lossy();
            let mut args = vec!["convert"];
            if let Some(f) = src_format {
                args.extend(["-f", f]);
            }
            args.extend(["-O", &self.format, &src, &tmp_s]);
            qemu_img(&args).await?;
            grow(&tmp, &self.format, size_gb).await?;
            tokio::fs::rename(&tmp, dst)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }
}

async fn qemu_img(args: &[&str]) -> BResult<String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The format of a user's image file, from `qemu-img info` run under
/// Nova's and Cinder's limits (1 GiB of address space, 30 s of CPU); an
/// image that names another file (a backing or an external data file: a
/// qcow2 header can point at any file of the host) is refused, as
/// Cinder's `fetch_to_volume_format` refuses it.
pub async fn inspect_image(src: &Path) -> BResult<String> {
    let out = tokio::process::Command::new("prlimit")
        .args([
            "--as=1073741824",
            "--cpu=30",
            "qemu-img",
            "info",
            "--output=json",
        ])
        .arg(src)
        .output()
        .await
        .map_err(|e| format!("prlimit qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the image is not readable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    image_format(&String::from_utf8_lossy(&out.stdout))
}

/// The format from `qemu-img info --output=json`, refusing images that
/// name other files.
pub fn image_format(info: &str) -> BResult<String> {
    let v: Value = serde_json::from_str(info).map_err(|e| format!("qemu-img info: {e}"))?;
    if v.get("backing-filename").is_some() || v.get("full-backing-filename").is_some() {
        return Err("image refused: it names a backing file".into());
    }
    if v.pointer("/format-specific/data/data-file").is_some() {
        return Err("image refused: it names an external data file".into());
    }
    v["format"]
        .as_str()
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "qemu-img info names no format".to_string())
}

/// The virtual size of an image file, in bytes.
pub async fn virtual_size(p: &Path) -> BResult<u64> {
    // -U: reading the size of a file a running guest holds is safe.
    let out = qemu_img(&["info", "-U", "--output=json", &p.to_string_lossy()]).await?;
    let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| "qemu-img info: no virtual-size".to_string())
}

/// Grows the file to `size_gb` if it is smaller.
async fn grow(p: &Path, format: &str, size_gb: u64) -> BResult<()> {
    if virtual_size(p).await? < size_gb * GIB {
        qemu_img(&[
            "resize",
            "-f",
            format,
            &p.to_string_lossy(),
            &format!("{}", size_gb * GIB),
        ])
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl VolumeDriver for FileDriver {
    fn name(&self) -> &str {
        "file"
    }
    fn protocol(&self) -> &str {
        "file"
    }
    /// Down when the volume directory is gone or not writable.
    fn state(&self) -> &'static str {
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() && !m.permissions().readonly() => "up",
            _ => "down",
        }
    }
    async fn capacity(&self) -> Capacity {
        // Physical space only: what volumes promise (thin files) is counted
        // by the service from its records, not by reading every file.
        let (fs_total, fs_free) = fs_space(&self.dir);
        let total = if self.capacity_gb > 0 {
            self.capacity_gb as f64
        } else {
            fs_total
        };
        Capacity {
            total_gb: total,
            free_gb: fs_free.min(total).max(0.0),
        }
    }
    async fn create(&self, id: &str, size_gb: u64) -> BResult<()> {
        let tmp = self.tmp_path(id);
        let r = async {
            qemu_img(&[
                "create",
                "-q",
                "-f",
                &self.format,
                &tmp.to_string_lossy(),
                &format!("{}", size_gb * GIB),
            ])
            .await?;
            tokio::fs::rename(&tmp, self.volume_path(id))
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }
    async fn create_from_file(&self, id: &str, src: &Path, size_gb: u64) -> BResult<()> {
        // A user's image: inspected before it is read, and read only as
        // the format found.
        let format = inspect_image(src).await?;
        self.convert_from(src, Some(&format), &self.volume_path(id), id, size_gb)
            .await
    }
    async fn clone_volume(&self, src: &str, id: &str, size_gb: u64) -> BResult<()> {
        let src = self.existing(self.volume_path(src))?;
        self.convert_into(&src, &self.volume_path(id), id, size_gb)
            .await
    }
    fn snapshot_file(&self, snap: &str) -> Option<(PathBuf, String)> {
        Some((self.snapshot_path(snap), self.format.clone()))
    }
    async fn create_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        let src = self.existing(self.volume_path(vol))?;
        self.convert_into(&src, &self.snapshot_path(snap), snap, 0)
            .await
    }
    async fn create_from_snapshot(&self, snap: &str, id: &str, size_gb: u64) -> BResult<()> {
        let src = self.existing(self.snapshot_path(snap))?;
        self.convert_into(&src, &self.volume_path(id), id, size_gb)
            .await
    }
    async fn revert_to_snapshot(&self, vol: &str, snap: &str) -> BResult<()> {
        let dst = self.existing(self.volume_path(vol))?;
        let size = virtual_size(&dst).await? / GIB;
        let src = self.existing(self.snapshot_path(snap))?;
        self.convert_into(&src, &dst, vol, size).await
    }
    async fn extend(&self, id: &str, size_gb: u64) -> BResult<bool> {
        let p = self.existing(self.volume_path(id))?;
        if let Some((_, exports)) = &self.remote
            && exports.exported().await.iter().any(|(v, _)| v == id)
        {
            return Err(format!(
                "volume {id} is exported over {}: it grows once detached",
                exports.name()
            ));
        }
        match grow(&p, &self.format, size_gb).await {
            Ok(()) => Ok(true),
            // A running guest's QEMU holds the file (its write lock).
            Err(e) if e.contains("lock") => Ok(false),
            Err(e) => Err(e),
        }
    }
    async fn delete(&self, id: &str) -> BResult<()> {
        remove_if_exists(&self.volume_path(id)).await
    }
    async fn delete_snapshot(&self, snap: &str) -> BResult<()> {
        remove_if_exists(&self.snapshot_path(snap)).await
    }
    async fn export(&self, id: &str, connector: &Value) -> BResult<Value> {
        let p = self.existing(self.volume_path(id))?;
        if let Some((exports, host)) = self.remote_for(connector) {
            return exports.export(id, &p, &self.format, host).await;
        }
        Ok(json!({"driver_volume_type": "file",
                  "data": {"device_path": p.to_string_lossy(), "format": self.format,
                           "volume_id": id}}))
    }
    async fn unexport(&self, id: &str, connector: &Value) -> BResult<()> {
        match self.remote_for(connector) {
            Some((exports, host)) => exports.unexport(id, host).await,
            None => Ok(()),
        }
    }
    async fn copy_to_file(&self, id: &str, dst: &Path, format: &str) -> BResult<()> {
        let src = self.existing(self.volume_path(id))?;
        let fmt = if format == "raw" { "raw" } else { "qcow2" };
        qemu_img(&[
            "convert",
            "-O",
            fmt,
            &src.to_string_lossy(),
            &dst.to_string_lossy(),
        ])
        .await
        .map(|_| ())
    }
    async fn inventory(&self) -> BResult<(Vec<String>, Vec<String>)> {
        let mut vols = Vec::new();
        let mut snaps = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| e.to_string())?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("volume-") {
                vols.push(id.to_string());
            } else if let Some(id) = name.strip_prefix("snapshot-") {
                snaps.push(id.to_string());
            }
        }
        Ok((vols, snaps))
    }
}

async fn remove_if_exists(p: &Path) -> BResult<()> {
    match tokio::fs::remove_file(p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// (total, free) GiB of the filesystem holding `p`, from `df`.
fn fs_space(p: &Path) -> (f64, f64) {
    let out = std::process::Command::new("df")
        .args(["-k", "--output=size,avail"])
        .arg(p)
        .output();
    let Ok(out) = out else {
        return (0.0, 0.0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match nums.as_slice() {
        [t, a] => ((t / 1048576.0).floor(), (a / 1048576.0).floor()),
        _ => (0.0, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    async fn conformance(b: &dyn VolumeDriver) {
        b.create("v1", 1).await.unwrap();
        b.create_snapshot("v1", "s1").await.unwrap();
        b.create_from_snapshot("s1", "v2", 2).await.unwrap();
        b.clone_volume("v2", "v3", 3).await.unwrap();
        b.extend("v1", 2).await.unwrap();
        b.revert_to_snapshot("v1", "s1").await.unwrap();
        let host = json!({"host": "h1"});
        assert!(b.export("v1", &host).await.is_ok());
        b.unexport("v1", &host).await.unwrap();
        assert!(b.create_snapshot("nope", "s2").await.is_err());
        let (mut v, s) = b.inventory().await.unwrap();
        v.sort();
        assert_eq!(v, vec!["v1", "v2", "v3"]);
        assert_eq!(s, vec!["s1"]);
        b.delete_snapshot("s1").await.unwrap();
        for id in ["v1", "v2", "v3", "v3"] {
            b.delete(id).await.unwrap();
        }
        let (v, s) = b.inventory().await.unwrap();
        assert!(v.is_empty() && s.is_empty());
    }

    #[tokio::test]
    async fn fake_driver_conformance() {
        conformance(&FakeDriver::new(100)).await;
    }

    #[tokio::test]
    async fn file_driver_conformance() {
        if !have_qemu_img() {
            ferro_common::skip_or_fail("qemu-img is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let b = FileDriver::new(dir.path().to_path_buf(), "qcow2", 0).unwrap();
        conformance(&b).await;
        b.create("big", 1).await.unwrap();
        b.extend("big", 3).await.unwrap();
        assert_eq!(virtual_size(&b.volume_path("big")).await.unwrap(), 3 * GIB);
        assert!(b.capacity().await.total_gb > 0.0);
        // Nothing temporary is left behind by a failed copy.
        assert!(b.clone_volume("missing", "x", 1).await.is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["volume-big"]);
    }

    /// A user's image becomes a volume read as the format it is; one that
    /// names another file of the host is refused and leaves nothing.
    #[tokio::test]
    async fn images_naming_other_files_are_refused() {
        if !have_qemu_img() {
            ferro_common::skip_or_fail("qemu-img is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path().join("volumes");
        let b = FileDriver::new(vols.clone(), "raw", 0).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"another tenant's data").unwrap();
        let img = |name: &str, opts: &str| {
            let p = dir.path().join(name);
            let mut c = std::process::Command::new("qemu-img");
            c.args(["create", "-q", "-f", "qcow2"]);
            if !opts.is_empty() {
                c.args(["-o", opts]);
            }
            assert!(c.arg(&p).arg("1M").status().unwrap().success());
            p
        };
        let plain = img("plain.qcow2", "");
        b.create_from_file("ok", &plain, 1).await.unwrap();
        assert_eq!(virtual_size(&b.volume_path("ok")).await.unwrap(), GIB);
        let backed = img(
            "backed.qcow2",
            &format!("backing_file={},backing_fmt=raw", secret.display()),
        );
        let e = b.create_from_file("bad1", &backed, 1).await.unwrap_err();
        assert!(e.contains("backing file"), "{e}");
        let data = dir.path().join("data-file");
        let external = img("external.qcow2", &format!("data_file={}", data.display()));
        let e = b.create_from_file("bad2", &external, 1).await.unwrap_err();
        assert!(e.contains("data file"), "{e}");
        let (v, _) = b.inventory().await.unwrap();
        assert_eq!(v, vec!["ok"]);
        assert_eq!(std::fs::read_dir(&vols).unwrap().count(), 1);
    }

    /// A volume a running process holds (as a guest's QEMU does) is not
    /// grown here: `extend` says so, and the holder grows it.
    #[tokio::test]
    async fn a_held_volume_is_left_to_its_holder() {
        if !have_qemu_img() {
            ferro_common::skip_or_fail("qemu-img is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let b = FileDriver::new(dir.path().to_path_buf(), "qcow2", 0).unwrap();
        b.create("held", 1).await.unwrap();
        let file = b.volume_path("held");
        let holder = std::process::Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=f,filename={}",
                file.display()
            ))
            .arg("--blockdev")
            .arg("driver=qcow2,node-name=q,file=f")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut holder) = holder else {
            ferro_common::skip_or_fail("qemu-storage-daemon is not installed");
            return;
        };
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let held = b.extend("held", 2).await;
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(held, Ok(false), "a held file is left to its holder");
        assert_eq!(virtual_size(&file).await.unwrap(), GIB);
        assert_eq!(b.extend("held", 2).await, Ok(true));
        assert_eq!(virtual_size(&file).await.unwrap(), 2 * GIB);
    }
}
