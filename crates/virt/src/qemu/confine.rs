//! What keeps a guest's QEMU from reaching the host or another guest, as
//! libvirt sets it up for Nova: an unprivileged uid of the guest's own
//! (from a pool, never shared between guests that exist at the same time)
//! that owns only that guest's files; QEMU's seccomp sandbox; and a cgroup
//! per guest under a configurable parent holding the flavor's CPU share and
//! a memory limit of the flavor's RAM plus QEMU's own overhead. Cgroup v1
//! (a hierarchy per controller) and v2 (one unified tree) are both handled.
use crate::VirtError;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// QEMU's seccomp sandbox, as libvirt turns it on (`seccomp_sandbox = 1`):
/// no obsolete syscalls, no privilege changes, no new processes, no
/// scheduler or affinity changes.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The file in a guest's directory naming the uid its QEMU runs as.
pub const OWNER_FILE: &str = "owner";

/// The uids guests run as: `base`, `base + 1`, ... `base + count - 1`, each
/// with a group of the same number. The default range is one the Linux
/// distributions and systemd leave unused (above systemd-nspawn's container
/// range), so it names no user of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidPool {
    pub base: u32,
    pub count: u32,
}

impl Default for UidPool {
    fn default() -> UidPool {
        UidPool {
            base: 1_879_048_192,
            count: 65_536,
        }
    }
}

impl UidPool {
    /// The uid of the guest in `dir`: the one it was given, else the
    /// lowest one no other guest under `instances` holds (recorded in the
    /// guest's `owner` file). The caller serialises calls.
    pub fn assign(&self, instances: &Path, dir: &Path) -> Result<u32, VirtError> {
        if let Some(uid) = read_owner(dir) {
            return Ok(uid);
        }
        let mut taken = BTreeSet::new();
        if let Ok(rd) = std::fs::read_dir(instances) {
            for e in rd.filter_map(Result::ok) {
                if let Some(uid) = read_owner(&e.path()) {
                    taken.insert(uid);
                }
            }
        }
        let uid = (0..self.count)
            .map(|n| self.base.saturating_add(n))
            .find(|u| !taken.contains(u))
            .ok_or_else(|| {
                VirtError::Failed(format!(
                    "all {} guest uids from {} are in use",
                    self.count, self.base
                ))
            })?;
        let f = dir.join(OWNER_FILE);
        std::fs::write(&f, format!("{uid}\n"))
            .map_err(|e| VirtError::Failed(format!("{}: {e}", f.display())))?;
        Ok(uid)
    }
}

/// The uid recorded for the guest in `dir`.
pub fn read_owner(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(OWNER_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Gives `path` to `uid`, with the group `service_gid` of the service
/// that drives the guest: readable and writable by the two alone (libvirt's
/// DAC labelling of a guest's disks, with the service's group so that it
/// can read the console log, reach QEMU's sockets and copy a stopped disk
/// without root). A directory is setgid, so what QEMU creates in it keeps
/// the service's group (QEMU runs with umask 007).
pub fn hand_over(path: &Path, uid: u32, service_gid: u32) -> Result<(), VirtError> {
    let err = |e: std::io::Error| VirtError::Failed(format!("{}: {e}", path.display()));
    std::os::unix::fs::lchown(path, Some(uid), Some(service_gid)).map_err(err)?;
    let mode = if path.is_dir() { 0o2770 } else { 0o660 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Gives `path` back to the service, if `uid` holds it (a volume detached
/// from the guest that had it, a snapshot the guest's QEMU wrote).
pub fn take_back(path: &Path, uid: u32, service_uid: u32, service_gid: u32) {
    use std::os::unix::fs::MetadataExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid) {
        let _ = std::os::unix::fs::lchown(path, Some(service_uid), Some(service_gid));
    }
}

/// Whether this process may give guests uids of their own (it is root).
pub fn can_confine() -> bool {
    // The effective uid of this process, from /proc (no libc needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// The resource limits of one guest's cgroup.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    /// cgroup v1 `cpu.shares` (libvirt's `<shares>`; v2 gets the weight
    /// systemd and libvirt convert it to).
    pub cpu_shares: u64,
    /// `quota:cpu_quota` and `quota:cpu_period` (microseconds), if set.
    pub cpu_quota: Option<(i64, u64)>,
}

impl Limits {
    /// The limits of a guest of `vcpus` and `memory_mb` with QEMU's
    /// `overhead_mb`; the flavor's `quota:cpu_shares`, `quota:cpu_quota`
    /// and `quota:cpu_period` extra specs override the CPU defaults (1024
    /// shares per vCPU, no quota).
    pub fn for_guest(
        vcpus: u32,
        memory_mb: u64,
        overhead_mb: u64,
        extra_specs: &BTreeMap<String, String>,
    ) -> Result<Limits, VirtError> {
        let num = |k: &str| -> Result<Option<i64>, VirtError> {
            extra_specs
                .get(k)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        VirtError::Failed(format!("flavor extra spec {k}={v} is not a number"))
                    })
                })
                .transpose()
        };
        let shares = match num("quota:cpu_shares")? {
            Some(s) if s >= 2 => s as u64,
            Some(s) => {
                return Err(VirtError::Failed(format!(
                    "flavor extra spec quota:cpu_shares={s} is below 2"
                )));
            }
            None => 1024 * u64::from(vcpus.max(1)),
        };
        let period = num("quota:cpu_period")?.unwrap_or(100_000);
        let cpu_quota = match num("quota:cpu_quota")? {
            Some(q) if q > 0 => Some((q, period.clamp(1_000, 1_000_000) as u64)),
            _ => None,
        };
        Ok(Limits {
            memory_bytes: (memory_mb + overhead_mb) << 20,
            cpu_shares: shares,
            cpu_quota,
        })
    }

    /// cgroup v2's `cpu.weight` for these shares (systemd's and libvirt's
    /// conversion: 2..262144 onto 1..10000).
    pub fn cpu_weight(&self) -> u64 {
        let s = self.cpu_shares.clamp(2, 262_144);
        1 + ((s - 2) * 9_999) / 262_142
    }
}

/// Which cgroup hierarchy the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// A hierarchy per controller: `<root>/memory/...`, `<root>/cpu/...`.
    V1,
    /// One unified tree: `<root>/...`.
    V2,
}

/// The cgroups of guests: `<parent>/instance-<uuid>` under the host's
/// hierarchy mounted at `root` (`/sys/fs/cgroup`).
#[derive(Clone, Debug)]
pub struct Cgroups {
    pub root: PathBuf,
    pub version: Version,
    pub parent: String,
}

impl Cgroups {
    /// The host's hierarchy at `root`, if it has a memory and a cpu
    /// controller this process can use.
    pub fn detect(root: &Path, parent: &str) -> Option<Cgroups> {
        let parent = parent.trim_matches('/').to_string();
        if parent.is_empty() || parent.split('/').any(|p| p == "..") {
            return None;
        }
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        let version = match controllers {
            Ok(c) => {
                let have: BTreeSet<&str> = c.split_whitespace().collect();
                if !(have.contains("memory") && have.contains("cpu")) {
                    return None;
                }
                Version::V2
            }
            Err(_) => {
                if !(root.join("memory/cgroup.procs").is_file()
                    && root.join("cpu/cgroup.procs").is_file())
                {
                    return None;
                }
                Version::V1
            }
        };
        Some(Cgroups {
            root: root.to_path_buf(),
            version,
            parent,
        })
    }

    fn name(uuid: &str) -> String {
        format!("instance-{uuid}")
    }

    /// The directories of the guest's cgroup (one per controller on v1).
    pub fn dirs(&self, uuid: &str) -> Vec<PathBuf> {
        let rel = Path::new(&self.parent).join(Self::name(uuid));
        match self.version {
            Version::V1 => vec![
                self.root.join("memory").join(&rel),
                self.root.join("cpu").join(&rel),
            ],
            Version::V2 => vec![self.root.join(rel)],
        }
    }

    /// Creates the guest's cgroup with `limits`; returns the `cgroup.procs`
    /// files a process joins it through.
    pub fn create(&self, uuid: &str, limits: &Limits) -> Result<Vec<PathBuf>, VirtError> {
        let write = |p: PathBuf, v: String| {
            std::fs::write(&p, v).map_err(|e| VirtError::Failed(format!("{}: {e}", p.display())))
        };
        let mkdir = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| VirtError::Failed(format!("{}: {e}", p.display())))
        };
        match self.version {
            Version::V1 => {
                let [mem, cpu] = <[PathBuf; 2]>::try_from(self.dirs(uuid))
                    .map_err(|_| VirtError::Failed("cgroup v1 layout".into()))?;
                mkdir(&mem)?;
                mkdir(&cpu)?;
                write(
                    mem.join("memory.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                )?;
                write(cpu.join("cpu.shares"), limits.cpu_shares.to_string())?;
                let (quota, period) = match limits.cpu_quota {
                    Some((q, p)) => (q, p),
                    None => (-1, 100_000),
                };
                write(cpu.join("cpu.cfs_period_us"), period.to_string())?;
                write(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
                Ok(vec![mem.join("cgroup.procs"), cpu.join("cgroup.procs")])
            }
            Version::V2 => {
                // Each level down to the parent hands memory and cpu on.
                let mut at = self.root.clone();
                for part in Path::new(&self.parent).components() {
                    enable_controllers(&at)?;
                    at = at.join(part);
                    mkdir(&at)?;
                }
                enable_controllers(&at)?;
                let dir = at.join(Self::name(uuid));
                mkdir(&dir)?;
                write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                write(dir.join("cpu.weight"), limits.cpu_weight().to_string())?;
                let max = match limits.cpu_quota {
                    Some((q, p)) => format!("{q} {p}"),
                    None => "max 100000".into(),
                };
                write(dir.join("cpu.max"), max)?;
                Ok(vec![dir.join("cgroup.procs")])
            }
        }
    }

    /// The limits the guest's cgroup holds now.
    pub fn read(&self, uuid: &str) -> Option<Limits> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let dirs = self.dirs(uuid);
        match self.version {
            Version::V1 => {
                let memory_bytes = read(dirs[0].join("memory.limit_in_bytes"))?.parse().ok()?;
                let cpu_shares = read(dirs[1].join("cpu.shares"))?.parse().ok()?;
                let quota: i64 = read(dirs[1].join("cpu.cfs_quota_us"))?.parse().ok()?;
                let period: u64 = read(dirs[1].join("cpu.cfs_period_us"))?.parse().ok()?;
                Some(Limits {
                    memory_bytes,
                    cpu_shares,
                    cpu_quota: (quota > 0).then_some((quota, period)),
                })
            }
            Version::V2 => {
                let memory_bytes = read(dirs[0].join("memory.max"))?.parse().ok()?;
                let weight: u64 = read(dirs[0].join("cpu.weight"))?.parse().ok()?;
                let max = read(dirs[0].join("cpu.max"))?;
                let mut it = max.split_whitespace();
                let q = it.next()?;
                let p: u64 = it.next()?.parse().ok()?;
                // Shares are not kept on v2: report the weight's share value.
                let cpu_shares = 2 + ((weight.saturating_sub(1)) * 262_142).div_ceil(9_999);
                Some(Limits {
                    memory_bytes,
                    cpu_shares,
                    cpu_quota: q.parse::<i64>().ok().map(|q| (q, p)),
                })
            }
        }
    }

    /// Kills what still runs in the guest's cgroup (only that guest's QEMU
    /// is ever put there) and removes the cgroup.
    pub async fn kill_and_remove(&self, uuid: &str) {
        for _ in 0..50 {
            let pids: BTreeSet<i32> = self
                .dirs(uuid)
                .iter()
                .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
                .flat_map(|s| {
                    s.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<i32>>()
                })
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                tracing::warn!(instance = %uuid, pid, "killing a QEMU left in a deleted guest's cgroup");
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.remove(uuid);
    }

    /// Removes the guest's cgroup (its processes are gone).
    pub fn remove(&self, uuid: &str) {
        for d in self.dirs(uuid) {
            if d.exists()
                && let Err(e) = std::fs::remove_dir(&d)
            {
                tracing::warn!(cgroup = %d.display(), "removing a guest's cgroup: {e}");
            }
        }
    }
}

/// Makes `dir`'s children get the memory and cpu controllers (v2).
fn enable_controllers(dir: &Path) -> Result<(), VirtError> {
    let f = dir.join("cgroup.subtree_control");
    let now = std::fs::read_to_string(&f).unwrap_or_default();
    let have: BTreeSet<&str> = now.split_whitespace().collect();
    for c in ["memory", "cpu"] {
        if !have.contains(c) {
            std::fs::write(&f, format!("+{c}"))
                .map_err(|e| VirtError::Failed(format!("{}: {e}", f.display())))?;
        }
    }
    Ok(())
}

/// QEMU's memory beside the guest's RAM (`/proc/<pid>/smaps`: everything
/// resident but the RAM block, the one mapping of exactly the guest's
/// size), in MiB.
pub fn measured_overhead_mb(pid: u32, memory_mb: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let want_kb = memory_mb << 10;
    let (mut total, mut ram) = (0u64, 0u64);
    let mut size = 0u64;
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Size:") {
            size = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let rss: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            total += rss;
            if size == want_kb && ram == 0 {
                ram = rss;
            }
        }
    }
    Some(total.saturating_sub(ram) >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_never_shared_between_guests() {
        let inst = tempfile::tempdir().unwrap();
        let pool = UidPool {
            base: 5000,
            count: 2,
        };
        let dirs: Vec<PathBuf> = (0..3).map(|n| inst.path().join(format!("g{n}"))).collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        assert_eq!(pool.assign(inst.path(), &dirs[0]).unwrap(), 5000);
        assert_eq!(pool.assign(inst.path(), &dirs[1]).unwrap(), 5001);
        // A guest keeps its uid; a full pool refuses a third guest.
        assert_eq!(pool.assign(inst.path(), &dirs[0]).unwrap(), 5000);
        assert!(pool.assign(inst.path(), &dirs[2]).is_err());
        // A deleted guest's uid goes to the next one.
        std::fs::remove_dir_all(&dirs[0]).unwrap();
        assert_eq!(pool.assign(inst.path(), &dirs[2]).unwrap(), 5000);
    }

    #[test]
    fn limits_follow_the_flavor() {
        let none = BTreeMap::new();
        let l = Limits::for_guest(2, 512, 208, &none).unwrap();
        assert_eq!(l.memory_bytes, 720 << 20);
        assert_eq!(l.cpu_shares, 2048);
        assert_eq!(l.cpu_quota, None);
        assert_eq!(l.cpu_weight(), 79);
        let specs = BTreeMap::from([
            ("quota:cpu_shares".to_string(), "512".to_string()),
            ("quota:cpu_quota".to_string(), "50000".to_string()),
        ]);
        let l = Limits::for_guest(2, 512, 0, &specs).unwrap();
        assert_eq!((l.cpu_shares, l.cpu_quota), (512, Some((50_000, 100_000))));
        let bad = BTreeMap::from([("quota:cpu_shares".to_string(), "lots".to_string())]);
        assert!(Limits::for_guest(1, 64, 0, &bad).is_err());
    }

    /// The v2 path, on a fake unified tree in a temporary directory.
    #[test]
    fn cgroup_v2_on_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let cg = Cgroups::detect(root.path(), "machine.slice/ferrostack").unwrap();
        assert_eq!(cg.version, Version::V2);
        let l = Limits::for_guest(1, 256, 208, &BTreeMap::new()).unwrap();
        let procs = cg.create("u1", &l).unwrap();
        let dir = root.path().join("machine.slice/ferrostack/instance-u1");
        assert_eq!(procs, vec![dir.join("cgroup.procs")]);
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            (464u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.weight")).unwrap(),
            "39"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "max 100000"
        );
        for level in ["", "machine.slice", "machine.slice/ferrostack"] {
            let sc =
                std::fs::read_to_string(root.path().join(level).join("cgroup.subtree_control"))
                    .unwrap();
            assert!(sc.contains("+cpu"), "{level}: {sc}");
        }
        let back = cg.read("u1").unwrap();
        assert_eq!(back.memory_bytes, l.memory_bytes);
        assert_eq!(back.cpu_quota, None);
        // The fake tree keeps files a real one would not have: empty the
        // directory as the kernel would before removing it.
        for f in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        cg.remove("u1");
        assert!(!dir.exists());
        // A v2 tree without the memory controller is not used.
        std::fs::write(root.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        assert!(Cgroups::detect(root.path(), "ferrostack").is_none());
        assert!(Cgroups::detect(root.path(), "../escape").is_none());
    }

    #[test]
    fn cgroup_v1_on_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu"] {
            std::fs::create_dir(root.path().join(c)).unwrap();
            std::fs::write(root.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = Cgroups::detect(root.path(), "ferrostack").unwrap();
        assert_eq!(cg.version, Version::V1);
        let specs = BTreeMap::from([("quota:cpu_quota".to_string(), "20000".to_string())]);
        let l = Limits::for_guest(2, 128, 208, &specs).unwrap();
        let procs = cg.create("u2", &l).unwrap();
        assert_eq!(procs.len(), 2);
        assert_eq!(cg.read("u2").unwrap(), l);
    }

    /// On this host's real cgroups (as root): a process left in a guest's
    /// cgroup whose files are gone is killed and the cgroup removed.
    #[tokio::test]
    async fn a_left_over_guest_cgroup_is_emptied_and_removed() {
        let parent = format!("ferrostack-test-{}", std::process::id());
        let Some(cg) = Cgroups::detect(Path::new("/sys/fs/cgroup"), &parent)
            .filter(|_| crate::qemu::confine::can_confine())
        else {
            eprintln!("skipped: needs root and a writable /sys/fs/cgroup");
            return;
        };
        let l = Limits::for_guest(1, 64, 32, &BTreeMap::new()).unwrap();
        let procs = match cg.create("left", &l) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: cannot create a cgroup here: {e}");
                return;
            }
        };
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        for p in &procs {
            std::fs::write(p, child.id().to_string()).unwrap();
        }
        cg.kill_and_remove("left").await;
        let gone = child.wait().unwrap();
        assert!(!gone.success(), "killed: {gone:?}");
        for d in cg.dirs("left") {
            assert!(!d.exists(), "{} left", d.display());
            if let Some(p) = d.parent() {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}
