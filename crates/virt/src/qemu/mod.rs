//! The QEMU driver: one QEMU process per guest, driven over QMP, as Nova's
//! libvirt driver does through libvirt. Each guest lives in
//! `<instances_path>/<uuid>/` (Nova's layout): `spec.json` (what it was
//! built from), `disk` (a qcow2 overlay on the host's cached base image),
//! `disk.eph0`, `disk.swap`, `disk.config` (the config drive),
//! `console.log`, `qmp.sock`, `qemu.pid`, and `state.save` while it is
//! suspended (libvirt's managed save). The process is started with
//! `-daemonize`, in a session of its own, so it does not die with the agent.
mod cache;
pub mod housekeeping;
mod launch;
mod qmp;
mod volumes;

pub use cache::{ImageCache, ImageInfo, parse_info};
pub use launch::{Mode, argv};

use crate::{
    ConnectionInfo, GuestSpec, HostResources, ImageSource, PowerState, VirtDriver, VirtError,
};
use qmp::Qmp;
use std::path::{Path, PathBuf};
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

const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Nova's `MAX_CONSOLE_BYTES`: the console log answers with its last 100 KiB.
const MAX_CONSOLE_BYTES: u64 = 100 * 1024;

impl QemuDriver {
    /// Settles the accelerator (probing KVM once for `auto`) and measures
    /// the host.
    pub async fn new(cfg: QemuConfig) -> Result<QemuDriver, VirtError> {
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
        let resources = host_resources(&cfg.instances_path, &version).await;
        Ok(QemuDriver {
            cache: ImageCache::new(cfg.instances_path.join("_base"), cfg.qemu_img.clone()),
            cfg,
            accel,
            resources,
            last_cache_run: std::sync::Mutex::new(None),
        })
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
        let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let want = format!("{}\0", uuid);
        let text = String::from_utf8_lossy(&cmdline);
        (text.contains(&want) && text.contains("-uuid")).then_some(pid)
    }

    async fn qmp(&self, dir: &Path) -> Result<Qmp, VirtError> {
        Qmp::connect(&dir.join("qmp.sock"), QMP_TIMEOUT).await
    }

    /// Ends the guest's process: QMP `quit`, then SIGKILL if it lingers.
    async fn kill(&self, dir: &Path, uuid: &str) -> Result<(), VirtError> {
        let Some(pid) = self.pid(dir, uuid) else {
            return Ok(());
        };
        if let Ok(mut q) = self.qmp(dir).await {
            let _ = q.execute("quit", None).await;
        }
        if wait_gone(pid, Duration::from_secs(5)).await {
            return Ok(());
        }
        let _ = run("kill", &["-KILL", &pid.to_string()]).await;
        if wait_gone(pid, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(VirtError::Failed(format!(
                "QEMU process {pid} of {uuid} does not exit"
            )))
        }
    }

    /// Starts QEMU for the guest in `dir` and waits until QMP answers.
    async fn launch(&self, dir: &Path, spec: &GuestSpec, mode: Mode) -> Result<(), VirtError> {
        let _ = std::fs::remove_file(dir.join("qmp.sock"));
        let _ = std::fs::remove_file(dir.join("qemu.pid"));
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
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&self.cfg.qemu_binary, &refs).await?;
        let deadline = tokio::time::Instant::now() + QMP_TIMEOUT;
        loop {
            match self.qmp(dir).await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
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
            let md = launch::instance_metadata(spec);
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
            return Ok(());
        };
        let timeout = self.shutdown_timeout(spec);
        if !timeout.is_zero()
            && let Ok(mut q) = self.qmp(dir).await
            && q.execute("system_powerdown", None).await.is_ok()
            && wait_gone(pid, timeout).await
        {
            return Ok(());
        }
        self.kill(dir, &spec.uuid).await
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

/// Waits up to `within` for process `pid` to end.
async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                // A zombie has ended; field 3 is its state.
                s.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    != Some("Z")
            })
            .unwrap_or(false);
        if !alive {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Linux kernel to probe KVM with: the host's own, else the one the
/// project's guest image was built with.
fn probe_kernel() -> Option<PathBuf> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut candidates = vec![
        PathBuf::from(format!("/boot/vmlinuz-{}", release.trim())),
        PathBuf::from("/boot/vmlinuz"),
        PathBuf::from("/vmlinuz"),
    ];
    let cache = std::env::var_os("FERRO_GUEST_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ferrostack/guest"))
        });
    if let Some(dir) = cache
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        let mut found: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path().join("boot"))
            .filter_map(|b| std::fs::read_dir(b).ok())
            .flat_map(|rd| rd.filter_map(Result::ok).map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
            })
            .collect();
        found.sort();
        candidates.extend(found);
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Whether a KVM guest runs here: a Linux kernel started under KVM must
/// print its banner on the serial port within a few seconds (on hosts where
/// KVM guests hang, the firmware runs but the kernel never prints). Without
/// a kernel to try, KVM is not proven and TCG is used. The answer is kept in
/// the instances path for this kernel and QEMU.
async fn probe_kvm(cfg: &QemuConfig, qemu_version: &str) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Some(kernel) = probe_kernel() else {
        tracing::warn!(
            "virt_type auto: no Linux kernel to prove that KVM guests run here; using TCG (set compute.virt_type = \"kvm\" to use KVM)"
        );
        return false;
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!(
        "{} {}",
        host.trim(),
        qemu_version.lines().next().unwrap_or("")
    );
    let memo = cfg.instances_path.join("kvm-probe");
    if let Ok(s) = std::fs::read_to_string(&memo)
        && let Some((k, answer)) = s.rsplit_once('=')
        && k == key
    {
        return answer.trim() == "yes";
    }
    let log = cfg.instances_path.join("kvm-probe.log");
    let ok = kernel_runs(&cfg.qemu_binary, "kvm", &kernel, &log).await;
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::write(&memo, format!("{key}={}\n", if ok { "yes" } else { "no" }));
    tracing::info!(kernel = %kernel.display(), "virt_type auto: KVM guests {}", if ok { "run" } else { "do not run here; using TCG" });
    ok
}

/// Whether `kernel`, started by QEMU with accelerator `accel`, prints its
/// banner on the serial port (written to `log`) within 8 seconds.
pub async fn kernel_runs(qemu_binary: &str, accel: &str, kernel: &Path, log: &Path) -> bool {
    let _ = std::fs::remove_file(log);
    let mut args = vec!["-machine".to_string(), format!("pc,accel={accel}")];
    if accel == "kvm" {
        args.extend(["-cpu".to_string(), "host".to_string()]);
    }
    let child = tokio::process::Command::new(qemu_binary)
        .args(args)
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-m",
            "128",
            "-append",
            "console=ttyS0 earlyprintk=ttyS0 panic=-1",
            "-serial",
            &format!("file:{}", log.display()),
            "-kernel",
        ])
        .arg(kernel)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut ok = false;
    if let Ok(mut child) = child {
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if std::fs::read_to_string(log).is_ok_and(|s| s.contains("Linux version")) {
                ok = true;
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
        }
        let _ = child.kill().await;
    }
    ok
}

/// Nova's version number: major * 1,000,000 + minor * 1,000 + micro.
pub fn version_number(qemu_version: &str) -> u64 {
    let v = qemu_version
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("0");
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .unwrap_or(0)
    });
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a * 1_000_000 + b * 1_000 + c
}

/// The host as Placement should see it: its CPUs, memory, the disk under
/// the instances path, and QEMU's version.
async fn host_resources(path: &Path, qemu_version: &str) -> HostResources {
    let vcpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let local_gb = match path.to_str() {
        Some(p) => run("df", &["-B1", "--output=size", p])
            .await
            .ok()
            .and_then(|o| o.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()))
            .map(|b| b >> 30)
            .unwrap_or(0),
        None => 0,
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let cpu_info = serde_json::json!({
        "arch": std::env::consts::ARCH,
        "model": field("model name"),
        "vendor": field("vendor_id"),
        "topology": {"sockets": 1, "cores": vcpus, "threads": 1},
        "features": [],
    });
    HostResources {
        vcpus,
        memory_mb,
        local_gb,
        hypervisor_type: "QEMU".into(),
        hypervisor_version: version_number(qemu_version),
        cpu_info: cpu_info.to_string(),
    }
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

    async fn spawn(&self, spec: &GuestSpec) -> Result<(), VirtError> {
        let dir = self.dir(&spec.uuid)?;
        if self.pid(&dir, &spec.uuid).is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sp = dir.join("spec.json");
        let body = serde_json::to_vec_pretty(spec).map_err(|e| VirtError::Failed(e.to_string()))?;
        std::fs::write(&sp, body).map_err(io(&sp))?;
        let r = async {
            self.prepare_disks(&dir, spec).await?;
            volumes::from_spec(&dir, spec)?;
            self.launch(&dir, spec, Mode::Normal).await
        }
        .await;
        if r.is_err() && self.pid(&dir, &spec.uuid).is_none() {
            // Nothing of a guest that never ran is kept (a retry starts clean).
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    async fn destroy(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.dir(uuid)?;
        if !dir.exists() {
            return Ok(());
        }
        self.kill(&dir, uuid).await?;
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
        let save = dir.join("state.save");
        let tmp = dir.join("state.save.part");
        let tmp_s = cache::path_str(&tmp)?;
        if tmp_s.contains('\'') {
            return Err(VirtError::Failed("instances path contains a quote".into()));
        }
        q.execute("stop", None).await?;
        q.execute(
            "migrate",
            Some(serde_json::json!({"uri": format!("exec:cat > '{tmp_s}'")})),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let m = q.execute("query-migrate", None).await?;
            match m["status"].as_str().unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => {
                    let _ = q.execute("cont", None).await;
                    return Err(VirtError::Failed(format!(
                        "saving the guest's memory failed: {}",
                        m["error-desc"].as_str().unwrap_or("unknown")
                    )));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    let _ = q.execute("migrate_cancel", None).await;
                    let _ = q.execute("cont", None).await;
                    return Err(VirtError::Failed(
                        "saving the guest's memory timed out".into(),
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        std::fs::rename(&tmp, &save).map_err(io(&save))?;
        drop(q);
        self.kill(&dir, uuid).await
    }

    async fn resume(&self, uuid: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        if self.pid(&dir, uuid).is_some() {
            return Ok(());
        }
        let save = dir.join("state.save");
        if !save.exists() {
            return Err(VirtError::Failed(format!(
                "instance {uuid} is not suspended"
            )));
        }
        let spec = self.read_spec(&dir)?;
        self.launch(&dir, &spec, Mode::Incoming).await?;
        let mut q = self.qmp(&dir).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            match q.status().await?.as_str() {
                "running" => break,
                "inmigrate" | "prelaunch" | "restore-vm" | "finish-migrate" => {}
                // A guest paused when it was saved stays so: ask it to run.
                "paused" | "postmigrate" => {
                    let _ = q.execute("cont", None).await;
                }
                other => {
                    return Err(VirtError::Failed(format!(
                        "restoring the guest's memory: QEMU is {other}"
                    )));
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(VirtError::Failed("restoring the guest timed out".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::remove_file(&save).map_err(io(&save))
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
        let sp = dir.join("spec.json");
        let body = serde_json::to_vec_pretty(&new).map_err(|e| VirtError::Failed(e.to_string()))?;
        std::fs::write(&sp, body).map_err(io(&sp))?;
        self.prepare_disks(&dir, &new).await?;
        if was_running {
            self.launch(&dir, &new, Mode::Normal).await?;
        }
        Ok(())
    }

    /// Copies the root disk (with its base folded in) to `dest` as qcow2.
    /// A running guest is paused for the copy (QEMU flushes its disks when
    /// it stops), so the image is consistent.
    async fn snapshot(&self, uuid: &str, dest: &Path) -> Result<u64, VirtError> {
        let dir = self.existing(uuid)?;
        let disk = dir.join("disk");
        if !disk.exists() {
            return Err(VirtError::Failed(format!(
                "instance {uuid} has no local root disk to snapshot"
            )));
        }
        let mut paused = None;
        if self.pid(&dir, uuid).is_some() {
            let mut q = self.qmp(&dir).await?;
            let was_running = q.status().await? == "running";
            q.execute("stop", None).await?;
            paused = Some((q, was_running));
        }
        let (src, dst) = (cache::path_str(&disk)?, cache::path_str(dest)?);
        let r = run(
            &self.cfg.qemu_img,
            &["convert", "-U", "-f", "qcow2", "-O", "qcow2", &src, &dst],
        )
        .await;
        if let Some((mut q, true)) = paused {
            q.execute("cont", None).await?;
        }
        r?;
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
            "running" | "inmigrate" | "restore-vm" | "prelaunch" => PowerState::Running,
            "paused" | "suspended" => PowerState::Paused,
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
        let vol = volumes::from_connection(connection_info)?;
        let mut all = volumes::load(&dir);
        if all.get(device) == Some(&vol) {
            return Ok(());
        }
        if self.pid(&dir, uuid).is_some() {
            let mut q = self.qmp(&dir).await?;
            volumes::plug(&mut q, device, &vol).await?;
        }
        all.insert(device.to_string(), vol);
        volumes::save(&dir, &all)
    }

    /// Tells the guest its volume grew (`block_resize` to the file's new size).
    async fn extend_volume(&self, uuid: &str, device: &str) -> Result<(), VirtError> {
        let dir = self.existing(uuid)?;
        let all = volumes::load(&dir);
        let vol = all
            .get(device)
            .ok_or_else(|| VirtError::NotFound(format!("no volume at {device}")))?;
        if self.pid(&dir, uuid).is_none() {
            return Ok(());
        }
        let info = self.cache.info_shared(Path::new(&vol.path)).await?;
        let mut q = self.qmp(&dir).await?;
        q.execute(
            "block_resize",
            Some(serde_json::json!({
                "node-name": volumes::Attached::node(device),
                "size": info.virtual_size,
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
        all.remove(device);
        volumes::save(&dir, &all)
    }

    async fn volumes(&self, uuid: &str) -> Vec<String> {
        match self.existing(uuid) {
            Ok(dir) => volumes::load(&dir).into_keys().collect(),
            Err(_) => Vec::new(),
        }
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
        if state == PowerState::Running && self.pid(&dir, &spec.uuid).is_none() {
            return self.power_on(&spec.uuid).await;
        }
        Ok(())
    }
}
