//! The file driver's iSCSI exports against the real `tgtd` and QEMU's own
//! initiator (`qemu-img` with libiscsi): a target per attachment that only
//! its CHAP account opens, restored when the daemon dies, gone after
//! `unexport` with the daemon stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use ferro_voldriver::{FileDriver, VolumeDriver};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

fn tools() -> bool {
    let ok = |c: &str, a: &str| Command::new(c).arg(a).output().is_ok();
    if !ok("tgtd", "--version") {
        ferro_common::skip_or_fail("tgtd is not installed (Debian's tgt)");
        return false;
    }
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so").exists() {
        ferro_common::skip_or_fail("QEMU's iSCSI initiator is not installed (qemu-block-extra)");
        return false;
    }
    if !nix_root() {
        ferro_common::skip_or_fail("tgtd needs root");
        return false;
    }
    true
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether QEMU's initiator logs in to the target of `info` as `user`
/// with `password`, and the size it reads.
fn open_with(info: &Value, user: Option<&str>, password: &str) -> Option<u64> {
    let d = &info["data"];
    let mut c = Command::new("qemu-img");
    c.args(["info", "--output=json"]);
    let mut opts = format!(
        "driver=iscsi,transport=tcp,portal={},target={},lun={}",
        d["target_portal"].as_str().unwrap(),
        d["target_iqn"].as_str().unwrap(),
        d["target_lun"]
    );
    if let Some(u) = user {
        c.arg("--object")
            .arg(format!("secret,id=s0,data={password}"));
        opts.push_str(&format!(",user={u},password-secret=s0"));
    }
    let out = c
        .arg("--image-opts")
        .arg(opts)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["virtual-size"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iscsi_export_opens_only_with_its_account_and_is_gone_after_unexport() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    assert!(
        FileDriver::new(dir.path().join("q"), "qcow2", 0)
            .unwrap()
            .with_iscsi("vh", "127.0.0.1", port)
            .is_err(),
        "qcow2 volumes over iSCSI are refused"
    );
    let d = FileDriver::new(dir.path().join("v"), "raw", 0)
        .unwrap()
        .with_iscsi("vh", "127.0.0.1", port)
        .unwrap();
    d.create("v1", 1).await.unwrap();
    d.create("v2", 1).await.unwrap();
    // The volume host's own connector gets the file.
    let own = d.export("v1", &json!({"host": "vh"})).await.unwrap();
    assert_eq!(own["driver_volume_type"], "file", "{own}");

    let b = json!({"host": "host-b"});
    let c = json!({"host": "host-c"});
    let info = d.export("v1", &b).await.unwrap();
    assert_eq!(info["driver_volume_type"], "iscsi", "{info}");
    assert_eq!(info["data"]["auth_method"], "CHAP", "{info}");
    assert_eq!(info["data"]["target_portal"], format!("127.0.0.1:{port}"));
    // Idempotent: the same target and account again.
    assert_eq!(d.export("v1", &b).await.unwrap(), info);
    let other = d.export("v2", &c).await.unwrap();
    assert_ne!(other["data"]["target_iqn"], info["data"]["target_iqn"]);

    let user = info["data"]["auth_username"].as_str().unwrap();
    let password = info["data"]["auth_password"].as_str().unwrap();
    assert_eq!(open_with(&info, Some(user), password), Some(1 << 30));
    assert_eq!(open_with(&info, None, ""), None, "opened without CHAP");
    assert_eq!(
        open_with(&info, Some(user), "0123456789abcdef"),
        None,
        "opened with another password"
    );
    // Another attachment's account does not open this target.
    let (ou, op) = (
        other["data"]["auth_username"].as_str().unwrap(),
        other["data"]["auth_password"].as_str().unwrap(),
    );
    assert_eq!(
        open_with(&info, Some(ou), op),
        None,
        "opened with v2's account"
    );
    // An exported volume does not grow under its target.
    assert!(d.extend("v1", 2).await.is_err());

    // tgtd dies: the next export starts it again with every target.
    let pid = std::fs::read_to_string(dir.path().join("v/.exports/iscsi/tgtd.pid")).unwrap();
    Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{}/cmdline", pid.trim())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(d.export("v2", &c).await.unwrap(), other);
    assert_eq!(open_with(&info, Some(user), password), Some(1 << 30));

    d.unexport("v1", &b).await.unwrap();
    assert_eq!(
        open_with(&info, Some(user), password),
        None,
        "the target is still there after unexport"
    );
    assert_eq!(open_with(&other, Some(ou), op), Some(1 << 30));
    d.unexport("v2", &c).await.unwrap();
    d.unexport("v2", &c).await.unwrap();
    // The last export gone, the daemon is stopped and the portal closed.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the portal still listens"
    );
    assert!(d.extend("v1", 2).await.unwrap());
}
