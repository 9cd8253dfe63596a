//! A guest's QEMU process: started detached (its own session, its parent
//! init, in its own cgroup, under its own uid), so that neither `kill -9`
//! of ferrostack nor a restart of the service ends it; found again by a pid
//! file only this host's root writes, trusted only when the process's
//! command line and QMP's answer both name the instance (pids are reused).
use crate::VirtError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The launcher: joins the cgroups, records its pid (which QEMU keeps
/// through `exec`), sends its output to the log, drops to the guest's uid
/// and group, and becomes QEMU with umask 007 (its sockets and files, in
/// the setgid directories it is handed, stay reachable by the service's
/// group and by no one else). QEMU's own `-daemonize` cannot be used:
/// it forks after the seccomp sandbox is on, which the sandbox refuses.
const LAUNCHER: &str = r#"set -e
pidfile=$1 log=$2 uid=$3 procs=$4
shift 4
exec >>"$log" 2>&1 </dev/null
IFS=:
for f in $procs; do echo $$ > "$f"; done
unset IFS
echo $$ > "$pidfile"
umask 007
if [ -n "$uid" ]; then
  exec setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"
fi
exec "$@"
"#;

/// Where and as whom one QEMU runs.
pub struct Detached<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// Written by the launcher (root), not by QEMU.
    pub pidfile: &'a Path,
    /// QEMU's standard output and error.
    pub log: &'a Path,
    pub uid: Option<u32>,
    /// The `cgroup.procs` files of the guest's cgroup.
    pub cgroup_procs: &'a [PathBuf],
}

/// Starts the process and returns at once (`setsid -f`: the launcher's
/// parent exits, so QEMU's parent is init).
pub async fn spawn(d: &Detached<'_>) -> Result<(), VirtError> {
    let procs: Vec<String> = d
        .cgroup_procs
        .iter()
        .map(|p| super::cache::path_str(p))
        .collect::<Result<_, _>>()?;
    if procs.iter().any(|p| p.contains(':')) {
        return Err(VirtError::Failed("a cgroup path contains ':'".into()));
    }
    let _ = std::fs::remove_file(d.pidfile);
    let status = tokio::process::Command::new("setsid")
        .args(["-f", "sh", "-c", LAUNCHER, "ferrostack-qemu"])
        .arg(d.pidfile)
        .arg(d.log)
        .arg(d.uid.map(|u| u.to_string()).unwrap_or_default())
        .arg(procs.join(":"))
        .arg(d.program)
        .args(d.args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| VirtError::Failed(format!("starting QEMU (setsid): {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(VirtError::Failed(format!("starting QEMU: setsid {status}")))
    }
}

/// The pid recorded in `pidfile` when that process runs and its command
/// line names instance `uuid`.
pub fn verified_pid(pidfile: &Path, uuid: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    if !alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"-uuid" && w[1] == uuid.as_bytes())
        .then_some(pid)
}

/// Whether process `pid` exists and has not ended (a zombie has).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// Waits up to `within` for process `pid` to end.
pub async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real uid of process `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The last lines QEMU wrote to its log (why it did not start).
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("; ")
}

/// Creates the tap `name` owned by `uid` (the agent prepares it, QEMU only
/// opens it), recreating one owned by someone else, and sets it up.
pub async fn prepare_tap(name: &str, uid: u32) -> Result<(), VirtError> {
    let owner = tap_owner(name).await;
    if owner.is_some() && owner != Some(Some(i64::from(uid))) {
        super::run("ip", &["link", "del", name]).await?;
    }
    if owner != Some(Some(i64::from(uid))) {
        let u = uid.to_string();
        super::run(
            "ip",
            &[
                "tuntap", "add", "dev", name, "mode", "tap", "user", &u, "group", &u,
            ],
        )
        .await?;
    }
    super::run("ip", &["link", "set", name, "up"])
        .await
        .map(|_| ())
}

/// Whether the device `name` exists in this network namespace, and the
/// uid owning it when it is a tap owned by a uid. Asked of the kernel over
/// netlink: `/sys/class/net` shows the namespace sysfs was mounted in,
/// which is not this one in a host that runs in a namespace of its own.
async fn tap_owner(name: &str) -> Option<Option<i64>> {
    let out = super::run("ip", &["-j", "-d", "link", "show", "dev", name])
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some(v[0]["linkinfo"]["info_data"]["user"].as_i64())
}

/// Removes the tap `name` if it exists.
pub async fn remove_tap(name: &str) {
    if tap_owner(name).await.is_some()
        && let Err(e) = super::run("ip", &["link", "del", name]).await
    {
        tracing::warn!(tap = name, "removing a guest's tap: {e}");
    }
}
