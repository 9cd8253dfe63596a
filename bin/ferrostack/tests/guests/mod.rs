//! What the tests that boot real guests through a cloud share: the
//! project's guest image, a directory guests' uids can traverse, and a
//! reaper of the QEMU processes a test started.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Kills, on the way out (a failed assertion included), every QEMU this
/// test's cloud started: the pids in its instances' pid files whose
/// command line names that instance.
pub struct Reaper(pub PathBuf);
impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let uuid = e.file_name().to_string_lossy().to_string();
            let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) else {
                continue;
            };
            let pid = pid.trim().to_string();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&uuid) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                std::thread::sleep(Duration::from_millis(300));
            }
            // The guest's cgroup goes with it.
            for c in ["memory/", "cpu/", ""] {
                let _ =
                    std::fs::remove_dir(format!("/sys/fs/cgroup/{c}ferrostack/instance-{uuid}"));
            }
        }
    }
}

pub fn guest_image() -> Option<String> {
    for (cmd, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("genisoimage", "genisoimage"),
        ("qemu-img", "qemu-utils"),
    ] {
        if !have(cmd) {
            ferro_common::skip_or_fail(&format!("{cmd} is not installed (apt-get install {pkg})"));
            return None;
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/build-guest-image.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string(),
    )
}

/// A directory for guests that every user may traverse (0711), under
/// /var/tmp, removed at the end.
pub fn guest_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("ferro-guests-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}
