//! The project's test guest (`scripts/build-guest-image.sh`) boots under
//! QEMU (TCG, as on this host) with a config drive as Nova writes one, and
//! does what a cirros guest does: it prints the instance uuid it read,
//! installs the public key for user `cirros`, runs `#!` user data (its
//! output reaches the serial console), and starts an SSH server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// QEMU killed and reaped even when an assertion fails.
struct Guest(Child);
impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An instance's metadata as the QEMU driver will pass it.
fn instance(name: &str) -> ferro_virt::configdrive::InstanceMetadata {
    ferro_virt::configdrive::InstanceMetadata {
        uuid: ferro_common::new_uuid(),
        name: name.into(),
        hostname: name.into(),
        ec2_id: "i-0000002a".into(),
        project_id: "p1".into(),
        availability_zone: Some("nova".into()),
        launch_index: 0,
        public_keys: vec![(
            "k".into(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuestImageTestKeyOnly test@ferrostack\n".into(),
        )],
        user_data: None,
        meta: [("role".to_string(), "test".to_string())].into(),
        network_data: serde_json::json!({"links": [], "networks": [], "services": []}),
        local_ipv4: Some("10.0.0.5".into()),
    }
}

/// Debian's cloud-init, with its own OpenStack config drive reader, reads
/// the tree ferrostack writes: the uuid, the key, the user data, the EC2
/// instance id.
#[test]
fn cloud_init_reads_our_config_drive() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/cloud-init-readers.sh"))
        .output()
        .unwrap();
    if !out.status.success() || !have("/usr/bin/python3") {
        ferro_common::skip_or_fail(&format!(
            "Debian's cloud-init readers are not available: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let pythonpath = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let md = ferro_virt::configdrive::InstanceMetadata {
        user_data: Some(b"#!/bin/sh\necho hi\n".to_vec()),
        ..instance("judged")
    };
    ferro_virt::configdrive::write_tree(&md, dir.path()).unwrap();
    let script = r#"
import json, sys
from cloudinit.sources.helpers import openstack
r = openstack.ConfigDriveReader(sys.argv[1])
res = r.read_v2()
m = res["metadata"]
ud = res["userdata"]
print(json.dumps({
    "uuid": m["uuid"], "name": m["name"], "hostname": m["hostname"],
    "keys": m["public_keys"], "userdata": ud.decode() if isinstance(ud, bytes) else ud,
    "ec2_id": res["ec2-metadata"]["instance-id"], "version": res["version"],
}))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.path())
        .env("PYTHONPATH", &pythonpath)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["uuid"], md.uuid.as_str());
    assert_eq!(v["hostname"], "judged");
    assert_eq!(v["keys"]["k"], md.public_keys[0].1.as_str());
    assert_eq!(v["userdata"], "#!/bin/sh\necho hi\n");
    assert_eq!(v["ec2_id"], "i-0000002a");
    assert_eq!(v["version"], 2);
}

#[test]
fn the_guest_image_boots_and_reads_its_config_drive() {
    for (cmd, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("genisoimage", "genisoimage"),
    ] {
        if !have(cmd) {
            ferro_common::skip_or_fail(&format!("{cmd} is not installed (apt-get install {pkg})"));
            return;
        }
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(repo.join("scripts/build-guest-image.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-guest-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(
        image.ends_with(".qcow2") && std::path::Path::new(&image).exists(),
        "{image}"
    );
    let built = t0.elapsed();

    // The config drive ferrostack writes (iso9660 labelled config-2).
    let dir = tempfile::tempdir().unwrap();
    let md = instance("g1");
    let uuid = md.uuid.clone();
    let word = format!("user-data-{}", &uuid[..8]);
    let md = ferro_virt::configdrive::InstanceMetadata {
        user_data: Some(format!("#!/bin/sh\necho {word}\n").into_bytes()),
        ..md
    };
    let iso = dir.path().join("config.iso");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ferro_virt::configdrive::build_iso(&md, &iso))
        .unwrap();
    let disk = dir.path().join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &image])
        .arg(&disk)
        .arg("1G")
        .status()
        .unwrap();
    assert!(st.success());
    let console = dir.path().join("console.log");
    let t1 = Instant::now();
    let _guest = Guest(
        Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "q35,accel=tcg",
                "-cpu",
                "qemu64",
                "-m",
                "256",
                "-smp",
                "1",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=root,format=qcow2",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=root,bootindex=0"])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=cd,format=raw,readonly=on",
                iso.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=cd"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut log = String::new();
    let mut uuid_at = None;
    while t1.elapsed() < Duration::from_secs(120) {
        log.clear();
        if let Ok(mut f) = std::fs::File::open(&console) {
            let _ = f.read_to_string(&mut log);
        }
        if uuid_at.is_none() && log.contains(&format!("INSTANCE-UUID {uuid}")) {
            uuid_at = Some(t1.elapsed());
        }
        if log.contains("GUEST-READY") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(log.contains("GUEST-BOOTED"), "{log}");
    assert!(log.contains("CONFIG-DRIVE /dev/vdb"), "{log}");
    assert!(log.contains(&format!("INSTANCE-UUID {uuid}")), "{log}");
    assert!(log.contains("SSH-KEYS 1"), "{log}");
    assert!(
        log.lines().any(|l| l.trim() == word),
        "user data did not run: {log}"
    );
    assert!(log.contains("USER-DATA-END status=0"), "{log}");
    assert!(log.contains("GUEST-READY"), "{log}");
    eprintln!(
        "image built (or cached) in {built:?}; QEMU start -> uuid line {:?}, -> GUEST-READY {:?}",
        uuid_at.unwrap_or_default(),
        t1.elapsed()
    );
}
