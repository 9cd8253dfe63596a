//! What the driver learns of its host at start: whether KVM guests run
//! (probed once with a real kernel, remembered), and the CPUs, memory,
//! disk and QEMU version Placement and `os-hypervisors` report.
use super::{QemuConfig, run};
use crate::HostResources;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
pub(super) async fn probe_kvm(cfg: &QemuConfig, qemu_version: &str) -> bool {
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
pub(super) async fn host_resources(path: &Path, qemu_version: &str) -> HostResources {
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
        guest_memory_overhead_mb: 0,
    }
}
