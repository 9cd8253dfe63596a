//! The QEMU driver: one QEMU process per guest, driven over QMP, as Nova's
//! libvirt driver does through libvirt. Each guest lives in
//! `<instances_path>/<uuid>/` (Nova's layout): `spec.json` (what it was
//! built from), `disk` (a qcow2 overlay on the host's cached base image),
//! `disk.eph0`, `disk.swap`, `disk.config` (the config drive),
//! `console.log`, `qemu.pid`, `qemu.log` (QEMU's own messages),
//! `state.save` while it is suspended (libvirt's managed save), and `run/`
//! (QMP and serial sockets). QEMU runs detached (its own session, parent
//! init), so it does not die with the agent, and confined: an uid of its
//! own that owns only this guest's files (the directory is `root:<uid>`
//! 0710), the seccomp sandbox, and a cgroup of its own (see `confine`).
mod backup;
mod cache;
pub mod confine;
mod diagnostics;
mod host;
pub mod housekeeping;
mod launch;
mod nics;
pub mod privileged;
mod process;
mod qmp;
mod save;
mod volumes;

pub use cache::{ImageCache, ImageInfo, parse_info};
use host::{host_resources, probe_kvm};
pub use host::{kernel_runs, version_number};
pub use launch::{Mode, argv};

use crate::{
    AssistedSnapshot, ConnectionInfo, GuestSpec, HostResources, ImageSource, PowerState, VifSpec,
    VirtDriver, VirtError,
};
use privileged::{HostCommand, Privileged};
use qmp::Qmp;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `virt_type` as Nova's libvirt driver names it, plus `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtType {
    Kvm,
    /// Plain emulation (TCG).
    Qemu,
    /// KVM if a KVM guest is seen to run (probed once, remembered), else TCG.
    Auto,
}

impl VirtType {
    pub fn parse(s: &str) -> Option<VirtType> {
        match s {
            "kvm" => Some(VirtType::Kvm),
            "qemu" => Some(VirtType::Qemu),
            "auto" => Some(VirtType::Auto),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// Nova's `instances_path`; the image cache is its `_base/`.
    pub instances_path: PathBuf,
    pub virt_type: VirtType,
    /// Seconds a guest gets to power off after an ACPI power-button press
    /// before it is stopped hard (Nova's `shutdown_timeout`, 60; an image's
    /// `os_shutdown_timeout` overrides it).
    pub shutdown_timeout: Duration,
    pub qemu_binary: String,
    pub qemu_img: String,
    /// Nova's `[image_cache]`: remove bases no guest uses...
    pub remove_unused_base_images: bool,
    /// ...once untouched this long (`remove_unused_original_minimum_age_seconds`)...
    pub remove_unused_original_minimum_age: Duration,
    /// ...checked this often (`manager_interval`).
    pub image_cache_manager_interval: Duration,
    /// The uids guests run under (used when the agent runs as root).
    pub uid_pool: confine::UidPool,
    /// The host's cgroup hierarchy and the parent of guests' cgroups.
    pub cgroup_root: PathBuf,
    pub cgroup_parent: String,
    /// QEMU's memory beside the guest's RAM, MiB (None: the estimate).
    pub memory_overhead_mb: Option<u64>,
    /// Start the guests that ran before a host reboot (Nova's option).
    pub resume_guests_state_on_host_boot: bool,
    /// Where the volumes attached to guests live (handed to their uids).
    pub volumes_dir: Option<PathBuf>,
}

impl QemuConfig {
    pub fn new(instances_path: PathBuf) -> QemuConfig {
        QemuConfig {
            instances_path,
            virt_type: VirtType::Auto,
            shutdown_timeout: Duration::from_secs(60),
            qemu_binary: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            remove_unused_base_images: true,
            remove_unused_original_minimum_age: Duration::from_secs(86_400),
            image_cache_manager_interval: Duration::from_secs(2400),
            uid_pool: confine::UidPool::default(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "ferrostack".into(),
            memory_overhead_mb: None,
            resume_guests_state_on_host_boot: false,
            volumes_dir: None,
        }
    }

    /// What a `LocalHost` serving this driver may touch, for a service
    /// running as `service_uid`:`service_gid`.
    pub fn host_scope(&self, service_uid: u32, service_gid: u32) -> privileged::HostScope {
        privileged::HostScope {
            instances_path: self.instances_path.clone(),
            volumes_dir: self.volumes_dir.clone(),
            qemu_binary: self.qemu_binary.clone(),
            uid_pool: self.uid_pool.clone(),
            cgroup_root: self.cgroup_root.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            service_uid,
            service_gid,
        }
    }
}

pub struct QemuDriver {
    cfg: QemuConfig,
    /// `kvm` or `tcg`, settled at start.
    accel: &'static str,
    cache: ImageCache,
    resources: HostResources,
    /// When the image cache was last aged.
    last_cache_run: std::sync::Mutex<Option<std::time::Instant>>,
    /// Runs what needs root (in this process, or in the privileged helper).
    host: Arc<dyn Privileged>,
    /// Guests get uids of their own (`host` confines).
    uids: Option<confine::UidPool>,
    /// Serialises uid assignment.
    uid_lock: std::sync::Mutex<()>,
    cgroups: Option<confine::Cgroups>,
    /// QEMU's memory beside each guest's RAM, MiB.
    overhead_mb: u64,
}

/// TCG's translation cache, MiB: bounded (QEMU's default is 1 GiB, grown
/// as guests run) so that QEMU's overhead, and the cgroup limit, are known.
pub const TCG_TB_SIZE_MB: u64 = 128;

/// The driver's estimate of QEMU's memory beside a guest's RAM: devices,
/// libraries and I/O buffers (about 45 MiB measured here, with margin),
/// and under TCG its translation cache.
pub fn overhead_estimate_mb(accel: &str) -> u64 {
    if accel == "tcg" {
        TCG_TB_SIZE_MB + 80
    } else {
        80
    }
}

/// Runs `prog args`; its stdout, or its stderr as the error.
pub(crate) async fn run(prog: &str, args: &[&str]) -> Result<String, VirtError> {
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| VirtError::Failed(format!("{prog}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(VirtError::Failed(format!(
            "{prog} {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> VirtError + '_ {
    move |e| VirtError::Failed(format!("{}: {e}", what.display()))
}

/// The privileged side and the uid of a confined guest.
pub(crate) type Owner<'a> = Option<(&'a dyn Privileged, u32)>;

const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Nova's `SHUTDOWN_RETRY_INTERVAL`: the power button is pressed again this often.
const SHUTDOWN_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// Nova's `MAX_CONSOLE_BYTES`: the console log answers with its last 100 KiB.
const MAX_CONSOLE_BYTES: u64 = 100 * 1024;
/// The guest's VNC server, relative to its directory.
const VNC_SOCKET: &str = "run/vnc.sock";

impl QemuDriver {
    /// The driver with its privileged commands run in this process.
    pub async fn new(cfg: QemuConfig) -> Result<QemuDriver, VirtError> {
        let (uid, gid) = privileged::effective_ids();
        let host = Arc::new(privileged::LocalHost::new(cfg.host_scope(uid, gid)));
        QemuDriver::with_host(cfg, host).await
    }

    /// Settles the accelerator (probing KVM once for `auto`) and measures
    /// the host; `host` runs what needs root.
    pub async fn with_host(
        cfg: QemuConfig,
        host: Arc<dyn Privileged>,
    ) -> Result<QemuDriver, VirtError> {
        std::fs::create_dir_all(&cfg.instances_path).map_err(io(&cfg.instances_path))?;
        let version = run(&cfg.qemu_binary, &["--version"]).await?;
        let accel = match cfg.virt_type {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "tcg",
            VirtType::Auto => {
                if probe_kvm(&cfg, &version).await {
                    "kvm"
                } else {
                    "tcg"
                }
            }
        };
        let overhead_mb = cfg
            .memory_overhead_mb
            .unwrap_or_else(|| overhead_estimate_mb(accel));
        let mut resources = host_resources(&cfg.instances_path, &version).await;
        resources.guest_memory_overhead_mb = overhead_mb;
        let (uids, cgroups) = if host.confines() {
            reachable_by_all(&cfg.instances_path)?;
            let cg = confine::Cgroups::detect(&cfg.cgroup_root, &cfg.cgroup_parent);
            (Some(cfg.uid_pool.clone()), cg)
        } else {
            tracing::warn!(
                "not running as root: guests' QEMU runs as this user, without uids or cgroups of their own (the seccomp sandbox is still on)"
            );
            (None, None)
        };
        Ok(QemuDriver {
            cache: ImageCache::new(cfg.instances_path.join("_base"), cfg.qemu_img.clone()),
            cfg,
            accel,
            resources,
            last_cache_run: std::sync::Mutex::new(None),
            host,
            uids,
            uid_lock: std::sync::Mutex::new(()),
            cgroups,
            overhead_mb,
        })
    }

    /// QEMU's memory beside each guest's RAM, MiB (in its cgroup limit
    /// and reserved in Placement).
    pub fn overhead_mb(&self) -> u64 {
        self.overhead_mb
    }

    /// The uid the guest's QEMU runs as, the limits of its cgroup, and
    /// the pid, for an operator's (and a test's) inspection.
    pub fn confinement(&self, uuid: &str) -> Option<(Option<u32>, Option<confine::Limits>, u32)> {
        let dir = self.existing(uuid).ok()?;
        let pid = self.pid(&dir, uuid)?;
        let limits = self.cgroups.as_ref().and_then(|c| c.read(uuid));
        Some((process::uid_of(pid), limits, pid))
    }

    /// `kvm` or `tcg`.
    pub fn accel(&self) -> &'static str {
        self.accel
    }

    fn dir(&self, uuid: &str) -> Result<PathBuf, VirtError> {
        if uuid.is_empty()
            || !uuid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(VirtError::NotFound(uuid.to_string()));
        }
        Ok(self.cfg.instances_path.join(uuid))
    }

    /// The guest's directory, which must exist.
    fn existing(&self, uuid: &str) -> Result<PathBuf, VirtError> {
        let d = self.dir(uuid)?;
        if d.join("spec.json").is_file() {
            Ok(d)
        } else {
            Err(VirtError::NotFound(uuid.to_string()))
        }
    }

    fn read_spec(&self, dir: &Path) -> Result<GuestSpec, VirtError> {
        let p = dir.join("spec.json");
        let raw = std::fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&raw).map_err(|e| VirtError::Failed(format!("{}: {e}", p.display())))
    }

    /// The QEMU process of the guest, if one runs: the pid file's pid, and
    /// only when that process's command line names this guest (pids are
    /// reused).
    fn pid(&self, dir: &Path, uuid: &str) -> Option<u32> {
        process::verified_pid(&dir.join("qemu.pid"), uuid)
    }

    async fn qmp(&self, dir: &Path) -> Result<Qmp, VirtError> {
        Qmp::connect(&dir.join("run/qmp.sock"), QMP_TIMEOUT).await
    }

    /// Whether the guest's QEMU runs and says over QMP that it is this
    /// instance (a pid and a command line can both be reused after a host
    /// reboot; QEMU's own answer cannot).
    async fn verified(&self, dir: &Path, uuid: &str) -> bool {
        if self.pid(dir, uuid).is_none() {
            return false;
        }
        match self.qmp(dir).await {
            Ok(mut q) => match q.execute("query-uuid", None).await {
                Ok(v) => v["UUID"].as_str() == Some(uuid),
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    /// Ends the guest's process: QMP `quit`, then SIGKILL if it lingers;
    /// then its taps go, as libvirt's do when a domain stops.
    async fn kill(&self, dir: &Path, uuid: &str) -> Result<(), VirtError> {
        self.kill_process(dir, uuid).await?;
        self.unplug(dir).await;
        Ok(())
    }

    /// Removes the taps prepared for the guest in `dir` (its ports go DOWN
    /// while it does not run); the next start prepares them again.
    async fn unplug(&self, dir: &Path) {
        let Ok(spec) = self.read_spec(dir) else {
            return;
        };
        for v in &spec.vifs {
            self.remove_tap(&v.tap_name).await;
        }
    }

    /// Removes a tap this driver prepared (guests confined: QEMU does not
    /// make its taps then).
    async fn remove_tap(&self, tap: &str) {
        if self.uids.is_none() {
            return;
        }
        let cmd = HostCommand::RemoveTap {
            name: tap.to_string(),
        };
        if let Err(e) = self.host.run(cmd).await {
            tracing::warn!(%tap, "removing a guest's tap: {e}");
        }
    }

    /// Replaces the guest's definition (`spec.json`) whole.
    fn write_spec(&self, dir: &Path, spec: &GuestSpec) -> Result<(), VirtError> {
        let (sp, tmp) = (dir.join("spec.json"), dir.join("spec.json.tmp"));
        let body = serde_json::to_vec_pretty(spec).map_err(|e| VirtError::Failed(e.to_string()))?;
        std::fs::write(&tmp, body)
            .and_then(|_| std::fs::rename(&tmp, &sp))
            .map_err(io(&sp))
    }

    async fn kill_process(&self, dir: &Path, uuid: &str) -> Result<(), VirtError> {
        let Some(pid) = self.pid(dir, uuid) else {
            return Ok(());
        };
        if let Ok(mut q) = self.qmp(dir).await {
            let _ = q.execute("quit", None).await;
        }
        if process::wait_gone(pid, Duration::from_secs(5)).await {
            return Ok(());
        }
        if let Err(e) = self
            .host
            .run(HostCommand::Kill {
                uuid: uuid.to_string(),
            })
            .await
        {
            tracing::warn!(instance = %uuid, "killing QEMU: {e}");
        }
        if process::wait_gone(pid, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(VirtError::Failed(format!(
                "QEMU process {pid} of {uuid} does not exit"
            )))
        }
    }

    /// Starts QEMU for the guest in `dir`, confined, and waits until QMP
    /// answers.
    async fn launch(&self, dir: &Path, spec: &GuestSpec, mode: Mode) -> Result<(), VirtError> {
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;
        for sock in [
            "qmp.sock",
            "serial.sock",
            "vnc.sock",
            save::RESTORE_SOCKET,
            save::SAVE_SOCKET,
        ] {
            let _ = std::fs::remove_file(run_dir.join(sock));
        }
        let firmware = launch::firmware(spec)?;
        let kernel = match spec.image_properties.get("kernel_id") {
            Some(k) => Some(self.cache.cached(k).ok_or_else(|| {
                VirtError::Failed(format!("kernel image {k} is not cached on this host"))
            })?),
            None => None,
        };
        let ramdisk = match spec.image_properties.get("ramdisk_id") {
            Some(r) => Some(self.cache.cached(r).ok_or_else(|| {
                VirtError::Failed(format!("ramdisk image {r} is not cached on this host"))
            })?),
            None => None,
        };
        let args = argv(&launch::Launch {
            spec,
            dir,
            accel: self.accel,
            mode,
            kernel: kernel.as_deref(),
            ramdisk: ramdisk.as_deref(),
            firmware: firmware.as_ref(),
        })?;
        let uid = self.hand_over(dir, spec).await?;
        if self.cgroups.is_some() {
            let limits = confine::Limits::for_guest(
                spec.vcpus,
                spec.memory_mb,
                self.overhead_mb,
                &spec.flavor_extra_specs,
            )?;
            self.host
                .run(HostCommand::CreateCgroup {
                    uuid: spec.uuid.clone(),
                    limits,
                })
                .await?;
        }
        let pidfile = dir.join("qemu.pid");
        let log = dir.join("qemu.log");
        self.host
            .run(HostCommand::Launch {
                uuid: spec.uuid.clone(),
                args,
                uid,
            })
            .await?;
        let deadline = tokio::time::Instant::now() + QMP_TIMEOUT;
        loop {
            match self.qmp(dir).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let pid: Option<u32> = std::fs::read_to_string(&pidfile)
                        .ok()
                        .and_then(|p| p.trim().parse().ok());
                    let exited = pid.is_some_and(|p| !process::alive(p));
                    if exited || tokio::time::Instant::now() > deadline {
                        let why = process::log_tail(&log);
                        return Err(VirtError::Failed(if why.is_empty() {
                            format!("QEMU did not start: {e}")
                        } else {
                            format!("QEMU did not start: {why}")
                        }));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Gives the guest's files to its uid (assigned on first use) and
    /// prepares its taps; `None` when guests are not confined.
    async fn hand_over(&self, dir: &Path, spec: &GuestSpec) -> Result<Option<u32>, VirtError> {
        let Some(pool) = &self.uids else {
            return Ok(None);
        };
        let uid = {
            let _g = self.uid_lock.lock().unwrap_or_else(|p| p.into_inner());
            pool.assign(&self.cfg.instances_path, dir)?
        };
        // <service>:<uid> 0710: the guest may reach its files, not list or
        // change what the agent keeps here; other guests may not enter.
        self.host
            .run(HostCommand::ShareGuestDir {
                uuid: spec.uuid.clone(),
                uid,
            })
            .await?;
        let console = dir.join("console.log");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console)
            .map_err(io(&console))?;
        for f in [
            "run",
            "console.log",
            "disk",
            "disk.eph0",
            "disk.swap",
            "disk.config",
            "disk.rescue",
            "nvram.fd",
        ] {
            let path = dir.join(f);
            if path.exists() {
                self.host.run(HostCommand::HandOver { path, uid }).await?;
            }
        }
        for vol in volumes::load(dir).values() {
            for path in vol.files() {
                self.host.run(HostCommand::HandOver { path, uid }).await?;
            }
        }
        for v in &spec.vifs {
            self.host
                .run(HostCommand::PrepareTap {
                    name: v.tap_name.clone(),
                    uid,
                })
                .await?;
        }
        Ok(Some(uid))
    }

    /// How the guest is started now: rescued while `disk.rescue` exists.
    fn mode_of(dir: &Path) -> Mode {
        if dir.join("disk.rescue").exists() {
            Mode::Rescue
        } else {
            Mode::Normal
        }
    }

    /// Creates what the guest's disks need and are missing.
    async fn prepare_disks(&self, dir: &Path, spec: &GuestSpec) -> Result<(), VirtError> {
        let disk = dir.join("disk");
        if let Some(image) = &spec.image_id
            && !disk.exists()
        {
            self.overlay(image, &disk, spec.root_gb).await?;
        }
        let eph = dir.join("disk.eph0");
        if spec.ephemeral_gb > 0 && !eph.exists() {
            let p = cache::path_str(&eph)?;
            run(
                &self.cfg.qemu_img,
                &[
                    "create",
                    "-f",
                    "qcow2",
                    &p,
                    &format!("{}G", spec.ephemeral_gb),
                ],
            )
            .await?;
        }
        let swap = dir.join("disk.swap");
        if spec.swap_mb > 0 && !swap.exists() {
            let p = cache::path_str(&swap)?;
            run(
                &self.cfg.qemu_img,
                &["create", "-f", "raw", &p, &format!("{}M", spec.swap_mb)],
            )
            .await?;
            run("mkswap", &[&p]).await?;
        }
        let cd = dir.join("disk.config");
        if spec.config_drive && !cd.exists() {
            let (_, placed) =
                launch::layout(&launch::Launch::plain(spec, dir, self.accel, Mode::Normal))?;
            let md = launch::instance_metadata(spec, &placed);
            crate::configdrive::build_iso(&md, &cd)
                .await
                .map_err(VirtError::Failed)?;
        }
        Ok(())
    }

    /// A qcow2 overlay at `disk` on the cached base of `image`, `root_gb`
    /// big (the image's own size when 0; smaller than the image is refused
    /// as Nova refuses it).
    async fn overlay(&self, image: &str, disk: &Path, root_gb: u64) -> Result<(), VirtError> {
        let base = self.cache.cached(image).ok_or_else(|| {
            VirtError::Failed(format!(
                "image {image} is not cached on this host and no image access came with the request"
            ))
        })?;
        let info = self.cache.info(&base).await?;
        let want = root_gb << 30;
        if want > 0 && want < info.virtual_size {
            return Err(VirtError::Failed(format!(
                "Flavor's disk is too small for requested image. Flavor disk is {want} bytes, image is {} bytes.",
                info.virtual_size
            )));
        }
        // A boot touches its base, so the cache manager keeps what is in use.
        if let Ok(f) = std::fs::File::options().write(true).open(&base) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        let (b, d) = (cache::path_str(&base)?, cache::path_str(disk)?);
        let size = want.max(info.virtual_size).to_string();
        run(
            &self.cfg.qemu_img,
            &[
                "create",
                "-f",
                "qcow2",
                "-F",
                &info.format,
                "-b",
                &b,
                &d,
                &size,
            ],
        )
        .await?;
        Ok(())
    }

    fn shutdown_timeout(&self, spec: &GuestSpec) -> Duration {
        spec.image_properties
            .get("os_shutdown_timeout")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.shutdown_timeout)
    }

    /// ACPI power-button press; the guest is stopped hard if it has not
    /// powered off within its shutdown timeout.
    async fn clean_shutdown(&self, dir: &Path, spec: &GuestSpec) -> Result<(), VirtError> {
        let Some(pid) = self.pid(dir, &spec.uuid) else {
            // It powered itself off: its taps go as well.
            self.unplug(dir).await;
            return Ok(());
        };
        // As Nova's libvirt driver: the button is pressed again every
        // `SHUTDOWN_RETRY_INTERVAL` (a guest still booting misses a press).
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout(spec);
        // A paused guest cannot see the button: it is stopped hard at once.
        let paused = match self.qmp(dir).await {
            Ok(mut q) => q.status().await.is_ok_and(|s| s != "running"),
            Err(_) => false,
        };
        while !paused && tokio::time::Instant::now() < deadline {
            let pressed = match self.qmp(dir).await {
                Ok(mut q) => q.execute("system_powerdown", None).await.is_ok(),
                Err(_) => false,
            };
            if !pressed {
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if process::wait_gone(pid, left.min(SHUTDOWN_RETRY_INTERVAL)).await {
                self.unplug(dir).await;
                return Ok(());
            }
        }
        self.kill(dir, &spec.uuid).await
    }

    /// Removes what a guest had outside its directory (taps, cgroup) and
    /// gives its volumes back to root (its uid goes to the next guest).
    async fn release(&self, dir: &Path, uuid: &str, spec: Option<&GuestSpec>) {
        if self.uids.is_some()
            && let Some(uid) = confine::read_owner(dir)
        {
            for vol in volumes::load(dir).values() {
                for path in vol.files() {
                    self.take_back(&path, uid).await;
                }
            }
        }
        if self.uids.is_some()
            && let Some(spec) = spec
        {
            for v in &spec.vifs {
                let cmd = HostCommand::RemoveTap {
                    name: v.tap_name.clone(),
                };
                if let Err(e) = self.host.run(cmd).await {
                    tracing::warn!(tap = %v.tap_name, "removing a guest's tap: {e}");
                }
            }
        }
        // Whatever is still in the guest's cgroup is that guest's: a QEMU
        // still exiting, or a launcher that had joined the cgroup when a
        // failed spawn gave up on it. It goes, and so does the cgroup.
        self.remove_cgroup(uuid).await;
    }

    async fn remove_cgroup(&self, uuid: &str) {
        if self.cgroups.is_some() {
            let cmd = HostCommand::RemoveCgroup {
                uuid: uuid.to_string(),
            };
            if let Err(e) = self.host.run(cmd).await {
                tracing::warn!(instance = %uuid, "removing a guest's cgroup: {e}");
            }
        }
    }

    /// Gives a file the guest held back to the service.
    async fn take_back(&self, path: &Path, uid: u32) {
        let cmd = HostCommand::TakeBack {
            path: path.to_path_buf(),
            uid,
        };
        if let Err(e) = self.host.run(cmd).await {
            tracing::warn!(path = %path.display(), "taking a file back from a guest: {e}");
        }
    }

    /// Who hands the guest's files to its uid, and that uid (when guests
    /// are confined).
    fn owner(&self, dir: &Path) -> Owner<'_> {
        self.uids.as_ref()?;
        Some((self.host.as_ref(), confine::read_owner(dir)?))
    }

    async fn running_guest(&self, uuid: &str) -> Result<(PathBuf, Qmp), VirtError> {
        let dir = self.existing(uuid)?;
        if self.pid(&dir, uuid).is_none() {
            return Err(VirtError::Failed(format!("instance {uuid} is not running")));
        }
        let q = self.qmp(&dir).await?;
        Ok((dir, q))
    }
}

/// Guests' QEMU, under uids of their own, opens files by path below the
/// instances path: every directory above it must let all users pass.
fn reachable_by_all(path: &Path) -> Result<(), VirtError> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(path);
    while let Some(dir) = p {
        if let Ok(m) = std::fs::metadata(dir)
            && m.permissions().mode() & 0o001 == 0
        {
            return Err(VirtError::Failed(format!(
                "guests run under uids of their own and cannot reach {}: {} is mode {:o}; set compute.instances_path to a path all users may traverse (as root the default is /var/lib/ferrostack/instances)",
                path.display(),
                dir.display(),
                m.permissions().mode() & 0o7777
            )));
        }
        p = dir.parent();
    }
    Ok(())
}

#[async_trait::async_trait]
impl VirtDriver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn host_resources(&self) -> HostResources {
        self.resources.clone()
    }

    async fn cache_images(&self, ids: &[&str], source: &dyn ImageSource) -> Result<(), VirtError> {
        for id in ids {
            self.cache.ensure(id, source).await?;
        }
        Ok(())
    }

    async fn precache_image(
        &self,
        id: &str,
        source: &dyn ImageSource,
    ) -> Result<Option<bool>, VirtError> {
        let had = self.cache.cached(id).is_some();
        self.cache.ensure(id, source).await?;
        Ok(Some(!had))
    }

    async fn spawn(&self, spec: &GuestSpec) -> Result<(), VirtError> {
        let dir = self.dir(&spec.uuid)?;
        if self.pid(&dir, &spec.uuid).is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Only this first start may be paused; later starts run at once.
        let kept = GuestSpec {
            start_paused: false,
            ..spec.clone()
        };
        self.write_spec(&dir, &kept)?;
        let r = async {
            // The boot volumes first: the config drive says where they are.
            volumes::from_spec(&dir, spec)?;
            self.prepare_disks(&dir, spec).await?;
            self.launch(&dir, spec, Mode::Normal).await
        }
        .await;
        if r.is_err() && self.pid(&dir, &spec.uuid).is_none() {
            // Nothing of a guest that never ran is kept (a retry starts clean).
            self.release(&dir, &spec.uuid, Some(spec)).await;
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    async fn destroy(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.dir(uuid)?;
        if !dir.exists() {
            // Its files are gone (removed by hand): what may be left is
            // its cgroup, with the QEMU that runs in it.
            self.remove_cgroup(uuid).await;
            return Ok(());
        }
        self.kill(&dir, uuid).await?;
        let spec = self.read_spec(&dir).ok();
        self.release(&dir, uuid, spec.as_ref()).await;
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    async fn power_off(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        self.clean_shutdown(&dir, &spec).await?;
        // A suspended guest powered off loses its saved memory, as with libvirt.
        let _ = std::fs::remove_file(dir.join("state.save"));
        Ok(())
    }

    async fn power_on(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        if self.pid(&dir, uuid).is_some() {
            return Ok(());
        }
        if dir.join("state.save").exists() {
            return self.resume(uuid).await;
        }
        let spec = self.read_spec(&dir)?;
        self.prepare_disks(&dir, &spec).await?;
        self.launch(&dir, &spec, Self::mode_of(&dir)).await
    }

    async fn reboot(&self, uuid: &str, hard: bool) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        if hard {
            self.kill(&dir, uuid).await?;
            let _ = std::fs::remove_file(dir.join("state.save"));
        } else {
            if self.pid(&dir, uuid).is_none() {
                return Err(VirtError::Failed(format!("instance {uuid} is not running")));
            }
            // Nova's soft reboot: a clean shutdown, then start again (hard
            // when the guest ignores the power button).
            self.clean_shutdown(&dir, &spec).await?;
        }
        self.prepare_disks(&dir, &spec).await?;
        self.launch(&dir, &spec, Self::mode_of(&dir)).await
    }

    async fn pause(&self, uuid: &str) -> Result<(), VirtError> {
        let (_, mut q) = self.running_guest(uuid).await?;
        q.execute("stop", None).await.map(|_| ())
    }

    async fn unpause(&self, uuid: &str) -> Result<(), VirtError> {
        let (_, mut q) = self.running_guest(uuid).await?;
        q.execute("cont", None).await.map(|_| ())
    }

    /// libvirt's managed save: the guest's memory is written to
    /// `state.save` and the process ends; resume restores it.
    async fn suspend(&self, uuid: &str) -> Result<(), VirtError> {
        let (dir, mut q) = self.running_guest(uuid).await?;
        save::save(&mut q, &dir, self.owner(&dir), &dir.join("state.save")).await?;
        drop(q);
        self.kill(&dir, uuid).await
    }

    async fn resume(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        if self.pid(&dir, uuid).is_some() {
            return Ok(());
        }
        let state = dir.join("state.save");
        if !state.exists() {
            return Err(VirtError::Failed(format!(
                "instance {uuid} is not suspended"
            )));
        }
        let spec = self.read_spec(&dir)?;
        self.launch(&dir, &spec, Mode::Incoming).await?;
        let mut q = self.qmp(&dir).await?;
        save::restore(&mut q, &dir, &state).await?;
        std::fs::remove_file(&state).map_err(io(&state))
    }

    /// Boots the rescue image (the instance's own when none is named) with
    /// the instance's disk attached second, as Nova's rescue does.
    async fn rescue(&self, uuid: &str, image_id: Option<&str>) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        let image = image_id
            .map(str::to_string)
            .or_else(|| spec.image_id.clone())
            .ok_or_else(|| VirtError::Failed("no rescue image".into()))?;
        self.kill(&dir, uuid).await?;
        let rescue = dir.join("disk.rescue");
        let _ = std::fs::remove_file(&rescue);
        self.overlay(&image, &rescue, 0).await?;
        let marker = dir.join("rescue_image");
        std::fs::write(&marker, &image).map_err(io(&marker))?;
        self.launch(&dir, &spec, Mode::Rescue).await
    }

    async fn unrescue(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        self.kill(&dir, uuid).await?;
        let _ = std::fs::remove_file(dir.join("disk.rescue"));
        let _ = std::fs::remove_file(dir.join("rescue_image"));
        self.launch(&dir, &spec, Mode::Normal).await
    }

    /// Resize on this host: the guest stops, its root disk grows to the
    /// new flavor (never shrinks), and it starts with the new CPUs and RAM.
    async fn resize(&self, spec: &GuestSpec) -> Result<(), VirtError> {
        let dir = self.existing(&spec.uuid)?;
        let old = self.read_spec(&dir)?;
        let was_running = self.pid(&dir, &spec.uuid).is_some();
        self.clean_shutdown(&dir, &old).await?;
        let disk = dir.join("disk");
        if disk.exists() && spec.root_gb > old.root_gb {
            let d = cache::path_str(&disk)?;
            run(
                &self.cfg.qemu_img,
                &["resize", &d, &format!("{}G", spec.root_gb)],
            )
            .await?;
        }
        let mut new = spec.clone();
        new.image_id = old.image_id.clone().or(new.image_id);
        self.write_spec(&dir, &new)?;
        self.prepare_disks(&dir, &new).await?;
        if was_running {
            self.launch(&dir, &new, Mode::Normal).await?;
        }
        Ok(())
    }

    /// Copies the root disk (with its base folded in) to `dest` as qcow2:
    /// from a running guest with QEMU's `blockdev-backup` while it runs on
    /// (see `backup`), from a stopped one with `qemu-img convert`.
    async fn snapshot(&self, uuid: &str, dest: &Path) -> Result<u64, VirtError> {
        let dir = self.existing(uuid)?;
        let disk = dir.join("disk");
        if !disk.exists() {
            return Err(VirtError::Failed(format!(
                "instance {uuid} has no local root disk to snapshot"
            )));
        }
        if self.pid(&dir, uuid).is_some() {
            let mut q = self.qmp(&dir).await?;
            let drive = if Self::mode_of(&dir) == Mode::Rescue {
                "drive1"
            } else {
                "drive0"
            };
            backup::run(
                &mut q,
                &backup::Backup {
                    dir: &dir,
                    owner: self.owner(&dir),
                    drive,
                    qemu_img: &self.cfg.qemu_img,
                    dest,
                },
            )
            .await?;
        } else {
            let (src, dst) = (cache::path_str(&disk)?, cache::path_str(dest)?);
            run(
                &self.cfg.qemu_img,
                &["convert", "-U", "-f", "qcow2", "-O", "qcow2", &src, &dst],
            )
            .await?;
        }
        std::fs::metadata(dest).map(|m| m.len()).map_err(io(dest))
    }

    async fn console_output(&self, uuid: &str) -> Result<String, VirtError> {
        let dir = self.existing(uuid)?;
        let p = dir.join("console.log");
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&p)(e)),
        };
        let start = data.len().saturating_sub(MAX_CONSOLE_BYTES as usize);
        Ok(String::from_utf8_lossy(&data[start..]).into_owned())
    }

    async fn diagnostics(&self, uuid: &str) -> Result<crate::Diagnostics, VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        // Nova's virt_type names: `kvm`, or `qemu` for TCG.
        let hypervisor = if self.accel == "kvm" { "kvm" } else { "qemu" };
        match self.pid(&dir, uuid) {
            Some(pid) => {
                let mut q = self.qmp(&dir).await?;
                diagnostics::running(&mut q, pid, &spec, hypervisor).await
            }
            None => Ok(diagnostics::stopped(&spec, hypervisor)),
        }
    }

    async fn vnc_socket(&self, uuid: &str) -> Result<PathBuf, VirtError> {
        let (dir, _) = self.running_guest(uuid).await?;
        let sock = dir.join(VNC_SOCKET);
        if !sock.exists() {
            // hw_video_model=none, or started by a release without VNC.
            return Err(VirtError::Unsupported(
                "a console for a guest without graphics",
            ));
        }
        Ok(sock)
    }

    async fn power_state(&self, uuid: &str) -> Result<PowerState, VirtError> {
        let dir = self.existing(uuid)?;
        if self.pid(&dir, uuid).is_none() {
            return Ok(if dir.join("state.save").exists() {
                PowerState::Suspended
            } else {
                PowerState::Shutdown
            });
        }
        let mut q = self.qmp(&dir).await?;
        Ok(match q.status().await?.as_str() {
            "running" | "inmigrate" | "restore-vm" => PowerState::Running,
            // `prelaunch`: started with `-S`, its CPUs wait for `cont`.
            "paused" | "suspended" | "prelaunch" => PowerState::Paused,
            "shutdown" | "guest-panicked" => PowerState::Shutdown,
            "internal-error" | "io-error" => PowerState::Crashed,
            _ => PowerState::Running,
        })
    }

    /// Hot-plugs a local file volume (cold-plugs it into a stopped guest:
    /// it is on the command line from the next start).
    async fn attach_volume(
        &self,
        uuid: &str,
        device: &str,
        connection_info: &ConnectionInfo,
    ) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let mut vol = volumes::from_connection(connection_info)?;
        let mut all = volumes::load(&dir);
        if all.get(device).is_some_and(|a| a.same_target(&vol)) {
            return Ok(());
        }
        vol.place_key(&dir, device)?;
        if self.pid(&dir, uuid).is_some() {
            // The guest's QEMU opens the volume under its own uid.
            if let Some((host, uid)) = self.owner(&dir) {
                for path in vol.files() {
                    host.run(HostCommand::HandOver { path, uid }).await?;
                }
            }
            let mut q = self.qmp(&dir).await?;
            volumes::plug(&mut q, device, &vol).await?;
        }
        all.insert(device.to_string(), vol);
        volumes::save(&dir, &all)
    }

    /// Tells the guest its volume grew: `block_resize` to the new size
    /// (which grows the file too when the volume host could not, the guest
    /// holding it), or to the file's size when none is given.
    async fn extend_volume(
        &self,
        uuid: &str,
        device: &str,
        size: Option<u64>,
    ) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let all = volumes::load(&dir);
        let vol = all
            .get(device)
            .ok_or_else(|| VirtError::NotFound(format!("no volume at {device}")))?;
        if self.pid(&dir, uuid).is_none() {
            return Ok(());
        }
        if vol.nbd.is_some() || vol.iscsi.is_some() {
            // Neither transport tells a client of a size change here (the
            // volume host refuses to grow an exported volume): the guest
            // sees a new size from its next start.
            tracing::info!(%uuid, %device, "a remote volume grew; the guest sees it when it starts again");
            return Ok(());
        }
        let info = self.cache.info_shared(Path::new(&vol.path)).await?;
        let size = size.unwrap_or(0).max(info.virtual_size);
        let mut q = self.qmp(&dir).await?;
        q.execute(
            "block_resize",
            Some(serde_json::json!({
                "node-name": volumes::Attached::node(device),
                "size": size,
            })),
        )
        .await
        .map(|_| ())
    }

    /// Unplugs the volume; one the guest will not release stays attached
    /// and the call fails (Nova's detach timeout).
    async fn detach_volume(&self, uuid: &str, device: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let mut all = volumes::load(&dir);
        if !all.contains_key(device) {
            return Ok(());
        }
        if self.pid(&dir, uuid).is_some() {
            let mut q = self.qmp(&dir).await?;
            volumes::unplug(&mut q, device, 8, Duration::from_secs(5)).await?;
        }
        if let (Some(vol), Some((_, uid))) = (all.get(device), self.owner(&dir)) {
            for path in vol.files() {
                self.take_back(&path, uid).await;
            }
        }
        if let Some(c) = all.get(device).and_then(volumes::Attached::credentials) {
            let _ = std::fs::remove_dir_all(&c);
            let _ = std::fs::remove_file(&c);
        }
        all.remove(device);
        volumes::save(&dir, &all)
    }

    /// Hot-plugs the port's NIC into a running guest; a guest that does
    /// not run has it from its next start. Either way it is in the guest's
    /// definition.
    async fn attach_interface(&self, uuid: &str, vif: &VifSpec) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let mut spec = self.read_spec(&dir)?;
        if spec.vifs.iter().any(|v| v.port_id == vif.port_id) {
            return Ok(());
        }
        if self.pid(&dir, uuid).is_some() {
            // The guest's QEMU opens the tap under its own uid.
            if let Some((host, uid)) = self.owner(&dir) {
                let name = vif.tap_name.clone();
                host.run(HostCommand::PrepareTap { name, uid }).await?;
            }
            let mut q = self.qmp(&dir).await?;
            if let Err(e) = nics::plug(&mut q, vif).await {
                self.remove_tap(&vif.tap_name).await;
                return Err(e);
            }
        }
        spec.vifs.push(vif.clone());
        self.write_spec(&dir, &spec)
    }

    /// Unplugs the port's NIC (the guest must release it, as for a
    /// volume) and removes its tap.
    async fn detach_interface(&self, uuid: &str, port_id: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let mut spec = self.read_spec(&dir)?;
        let Some(vif) = spec.vifs.iter().find(|v| v.port_id == port_id).cloned() else {
            return Ok(());
        };
        if self.pid(&dir, uuid).is_some() {
            let mut q = self.qmp(&dir).await?;
            nics::unplug(&mut q, &vif.tap_name, 8, Duration::from_secs(5)).await?;
        }
        self.remove_tap(&vif.tap_name).await;
        spec.vifs.retain(|v| v.port_id != port_id);
        self.write_spec(&dir, &spec)
    }

    /// A point-in-time copy of an attached file volume into
    /// `create_info.new_file`, in `create_info.format` (the volume's own
    /// when unset). While the guest runs, QEMU copies the volume's block
    /// node with `blockdev-backup` (copy-before-write: the volume as it was
    /// when the job started, every write the guest had flushed included)
    /// and the guest runs on; a stopped guest's file is copied directly.
    async fn volume_snapshot_create(
        &self,
        uuid: &str,
        volume_id: &str,
        create_info: &AssistedSnapshot,
    ) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let (device, vol) = volumes::load(&dir)
            .into_iter()
            .find(|(_, a)| a.volume_id == volume_id)
            .ok_or_else(|| VirtError::NotFound(format!("volume {volume_id} on {uuid}")))?;
        let dest = create_info.target(&vol.path).ok_or_else(|| {
            VirtError::Failed(
                "a volume snapshot needs a new_file in the volume's directory or an absolute one"
                    .into(),
            )
        })?;
        let format = create_info.format.clone().unwrap_or(vol.format.clone());
        if !matches!(format.as_str(), "raw" | "qcow2") {
            return Err(VirtError::Failed(format!(
                "volume snapshot format {format} is not supported"
            )));
        }
        let dest_s = cache::path_str(&dest)?;
        if self.pid(&dir, uuid).is_none() {
            let src = vol.path.clone();
            return run(
                &self.cfg.qemu_img,
                &[
                    "convert",
                    "-U",
                    "-f",
                    &vol.format,
                    "-O",
                    &format,
                    &src,
                    &dest_s,
                ],
            )
            .await
            .map(|_| ());
        }
        // QEMU writes a qcow2 copy in the guest's directory; it becomes
        // the snapshot file, converted when another format is asked for.
        let copy = dir.join(format!("volume-snapshot-{}.qcow2", create_info.snapshot_id));
        let mut q = self.qmp(&dir).await?;
        backup::run(
            &mut q,
            &backup::Backup {
                dir: &dir,
                owner: self.owner(&dir),
                drive: &volumes::Attached::node(&device),
                qemu_img: &self.cfg.qemu_img,
                dest: &copy,
            },
        )
        .await?;
        let copy_s = cache::path_str(&copy)?;
        let r = if format == "qcow2" {
            std::fs::rename(&copy, &dest)
                .or_else(|_| std::fs::copy(&copy, &dest).map(|_| ()))
                .map_err(|e| VirtError::Failed(format!("{}: {e}", dest.display())))
        } else {
            run(
                &self.cfg.qemu_img,
                &["convert", "-f", "qcow2", "-O", &format, &copy_s, &dest_s],
            )
            .await
            .map(|_| ())
        };
        let _ = std::fs::remove_file(&copy);
        r
    }

    async fn volumes(&self, uuid: &str) -> Vec<String> {
        match self.existing(uuid) {
            Ok(dir) => volumes::load(&dir).into_keys().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A running guest's devices as QEMU reports them on its PCI bus
    /// (`query-pci`: hot-plugged ones where QEMU put them); a stopped
    /// guest's where its command line will put them.
    async fn devices(&self, uuid: &str) -> Result<Vec<crate::GuestDevice>, VirtError> {
        let dir = self.existing(uuid)?;
        let spec = self.read_spec(&dir)?;
        let vols = volumes::load(&dir);
        if self.pid(&dir, uuid).is_none() {
            let (_, placed) = launch::layout(&launch::Launch::plain(
                &spec,
                &dir,
                self.accel,
                Self::mode_of(&dir),
            ))?;
            return Ok(placed);
        }
        let mut q = self.qmp(&dir).await?;
        let buses = q.execute("query-pci", None).await?;
        Ok(nics::on_pci_bus(&buses, &spec, &vols))
    }

    /// Rotates console logs; ages the image cache at its interval.
    async fn housekeeping(&self) {
        let inst = &self.cfg.instances_path;
        for uuid in self.list().await {
            let log = inst.join(&uuid).join("console.log");
            if let Err(e) = housekeeping::rotate_console(
                &log,
                housekeeping::LOG_MAX_SIZE,
                housekeeping::LOG_MAX_BACKUPS,
            ) {
                tracing::warn!(instance = %uuid, "rotating the console log: {e}");
            }
        }
        let due = {
            let mut last = self
                .last_cache_run
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= self.cfg.image_cache_manager_interval);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if !due || !self.cfg.remove_unused_base_images {
            return;
        }
        let used = housekeeping::images_in_use(inst);
        for base in housekeeping::unused_bases(
            &inst.join("_base"),
            &used,
            self.cfg.remove_unused_original_minimum_age,
            std::time::SystemTime::now(),
        ) {
            match std::fs::remove_file(&base) {
                Ok(()) => tracing::info!(base = %base.display(), "removed an unused base image"),
                Err(e) => {
                    tracing::warn!(base = %base.display(), "removing an unused base image: {e}")
                }
            }
        }
    }

    async fn list(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.cfg.instances_path) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().join("spec.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    /// A guest from before the agent restarted: its QEMU still runs (it is
    /// in a session of its own). One that should run but does not (the
    /// host rebooted) is started again.
    async fn adopt(&self, spec: &GuestSpec, state: PowerState) -> Result<(), VirtError> {
        let dir = self.existing(&spec.uuid)?;
        if self.pid(&dir, &spec.uuid).is_some() {
            if self.verified(&dir, &spec.uuid).await {
                return Ok(());
            }
            return Err(VirtError::Failed(format!(
                "a process holds instance {}'s pid file and command line but QMP does not answer as that instance",
                spec.uuid
            )));
        }
        if state == PowerState::Running {
            return self.power_on(&spec.uuid).await;
        }
        Ok(())
    }
}
