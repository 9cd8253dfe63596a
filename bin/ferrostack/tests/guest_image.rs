//! The project's test guest (`scripts/build-guest-image.sh`) boots under
//! QEMU (TCG, as on this host) with a config drive as Nova writes one, and
//! does what a cirros guest does: it prints the instance uuid it read,
//! installs the public key for user `cirros`, runs `#!` user data (its
//! output reaches the serial console), and starts an SSH server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_virt::{GuestSpec, ImageSource, QemuConfig, QemuDriver, VirtDriver, VirtError, VirtType};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
        public_ipv4: None,
        devices: vec![ferro_virt::configdrive::TaggedDevice {
            device: ferro_virt::GuestDevice {
                kind: ferro_virt::GuestDeviceKind::Nic {
                    mac: "fa:16:3e:00:00:05".into(),
                },
                bus: "pci".into(),
                address: "0000:00:04.0".into(),
            },
            tags: vec!["port-1".into()],
        }],
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

/// The guest image, built (or taken from the cache) by the project's script.
fn guest_image() -> Option<String> {
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
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    Some(image)
}

/// Hands the driver a local file as the Image service would (and counts
/// the downloads).
struct FileSource {
    file: String,
    fetches: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ImageSource for FileSource {
    async fn fetch(&self, _id: &str, dest: &Path) -> Result<String, VirtError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::fs::copy(&self.file, dest)
            .await
            .map_err(|e| VirtError::Failed(e.to_string()))?;
        Ok("qcow2".into())
    }
}

fn console_until(log: &Path, want: &[&str], within: Duration) -> String {
    let t = Instant::now();
    let mut text = String::new();
    while t.elapsed() < within {
        text.clear();
        if let Ok(mut f) = std::fs::File::open(log) {
            let _ = f.read_to_string(&mut text);
        }
        if want.iter().all(|w| text.contains(w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    text
}

/// A runtime and a QEMU driver under TCG whose guests live in a fresh
/// directory. Guests run under uids of their own (as root): their files
/// must be reachable by every user, which a private temporary directory is not.
fn tcg_driver(
    tune: impl FnOnce(&mut QemuConfig),
) -> (tokio::runtime::Runtime, tempfile::TempDir, QemuDriver) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = reachable_tempdir();
    let mut cfg = QemuConfig::new(dir.path().join("instances"));
    cfg.virt_type = VirtType::Qemu;
    // Volumes handed to guests must live here (the privileged commands
    // give nothing else to a guest's uid).
    cfg.volumes_dir = Some(dir.path().to_path_buf());
    tune(&mut cfg);
    let driver = rt.block_on(QemuDriver::new(cfg)).unwrap();
    (rt, dir, driver)
}

/// A temporary directory under /var/tmp that every user may traverse (0711).
fn reachable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("ferro-guests-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}

/// The QEMU driver (TCG here) boots the project's guest image as Nova
/// would: a qcow2 overlay on the host's cached base (fetched once for two
/// concurrent boots), SMBIOS saying OpenStack Nova, the config drive on an
/// IDE CD-ROM. The guest reads its uuid, key and user data from it. Then
/// the conformance suite the fake driver passes runs on a real guest.
#[test]
fn the_qemu_driver_boots_the_guest_image() {
    let Some(image) = guest_image() else { return };
    let (rt, dir, driver) = tcg_driver(|cfg| cfg.shutdown_timeout = Duration::from_secs(8));
    assert_eq!(driver.accel(), "tcg");
    assert_eq!(driver.host_resources().hypervisor_type, "QEMU");
    let source = FileSource {
        file: image,
        fetches: 0.into(),
    };
    let img = "7b5f3c1e-0000-4000-8000-000000000001";
    rt.block_on(async {
        let ids = [img];
        let (a, b) = tokio::join!(
            driver.cache_images(&ids, &source),
            driver.cache_images(&ids, &source)
        );
        a.unwrap();
        b.unwrap();
    });
    assert_eq!(
        source.fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "two concurrent boots share one download"
    );
    let md = instance("g1");
    let word = format!("user-data-{}", &md.uuid[..8]);
    // A data volume the guest boots with, tagged: the config drive says
    // where it is (device role tags) before QEMU starts.
    let data_vol = dir.path().join("data.qcow2");
    assert!(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&data_vol)
            .arg("16M")
            .status()
            .unwrap()
            .success()
    );
    let data_id = "da7a0000-1111-2222-3333-444455556666";
    let data_disk = ferro_virt::DiskSpec {
        kind: ferro_virt::DiskKind::Volume,
        device_name: Some("/dev/vdd".into()),
        bus: None,
        boot_index: Some(1),
        size: 0,
        image_id: None,
        volume_id: Some(data_id.into()),
        connection_info: Some(ferro_virt::ConnectionInfo {
            driver_volume_type: "file".into(),
            data: ferro_virt::ConnectionData {
                volume_id: Some(data_id.into()),
                device_path: Some(data_vol.to_string_lossy().into()),
                format: Some("qcow2".into()),
                ..Default::default()
            },
        }),
        delete_on_termination: false,
        tag: Some("data".into()),
    };
    let spec = GuestSpec {
        disks: vec![data_disk],
        uuid: md.uuid.clone(),
        name: "g1".into(),
        hostname: "g1".into(),
        vcpus: 1,
        memory_mb: 192,
        root_gb: 1,
        image_id: Some(img.into()),
        key_name: Some("k".into()),
        key_data: Some(md.public_keys[0].1.clone()),
        user_data: Some(base64_of(&format!("#!/bin/sh\necho {word}\n"))),
        project_id: "p1".into(),
        config_drive: true,
        ..Default::default()
    };
    let t1 = Instant::now();
    rt.block_on(driver.spawn(&spec)).unwrap();
    let guest_dir = dir.path().join("instances").join(&spec.uuid);
    let log = console_until(
        &guest_dir.join("console.log"),
        &["GUEST-READY"],
        Duration::from_secs(120),
    );
    let ready = t1.elapsed();
    let cleanup = |d: &QemuDriver, u: &str| {
        let _ = rt.block_on(d.destroy(u));
    };
    if !log.contains("GUEST-READY") {
        cleanup(&driver, &spec.uuid);
        panic!("the guest did not get ready: {log}");
    }
    let checks = [
        "GUEST-BOOTED".to_string(),
        "CONFIG-DRIVE /dev/sr0".to_string(),
        format!("INSTANCE-UUID {}", spec.uuid),
        "SSH-KEYS 1".to_string(),
        "USER-DATA-END status=0".to_string(),
    ];
    let missing: Vec<_> = checks
        .iter()
        .filter(|c| !log.contains(c.as_str()))
        .collect();
    let ran = log.lines().any(|l| l.trim() == word);
    // The overlay sits on the cached base, sized to the flavor.
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(guest_dir.join("disk"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let console = rt.block_on(driver.console_output(&spec.uuid)).unwrap();
    // The config drive's device metadata and QEMU's own PCI bus agree.
    let iso = Command::new("isoinfo")
        .arg("-i")
        .arg(guest_dir.join("disk.config"))
        .args(["-R", "-x", "/openstack/latest/meta_data.json"])
        .output()
        .unwrap();
    let drive_md: serde_json::Value = serde_json::from_slice(&iso.stdout).unwrap_or_default();
    let live = rt.block_on(driver.devices(&spec.uuid));
    // A file volume hot-plugged into the running guest, and out again.
    let vol = dir.path().join("vol1.qcow2");
    assert!(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&vol)
            .arg("64M")
            .status()
            .unwrap()
            .success()
    );
    let ci = ferro_virt::ConnectionInfo {
        driver_volume_type: "file".into(),
        data: ferro_virt::ConnectionData {
            volume_id: Some("0a0b0c0d-1111-2222-3333-444455556666".into()),
            device_path: Some(vol.to_string_lossy().into()),
            format: Some("qcow2".into()),
            ..Default::default()
        },
    };
    let volume = rt.block_on(ferro_virt::conformance::volume(
        &driver, &spec.uuid, "/dev/vdb", &ci,
    ));
    // An attached volume with data in it, snapshotted while the guest runs
    // (QEMU's blockdev-backup), in its own format and as raw.
    assert!(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", "write -P 0x5a 1M 64k"])
            .arg(&vol)
            .output()
            .unwrap()
            .status
            .success()
    );
    let snapshot = rt.block_on(ferro_virt::conformance::volume_snapshot(
        &driver, &spec.uuid, "/dev/vdc", &ci,
    ));
    let raw = dir.path().join("raw-copy");
    let raw_snapshot = rt.block_on(async {
        driver.attach_volume(&spec.uuid, "/dev/vdc", &ci).await?;
        let info = ferro_virt::AssistedSnapshot {
            snapshot_id: "s2".into(),
            format: Some("raw".into()),
            new_file: Some("raw-copy".into()),
        };
        let r = driver
            .volume_snapshot_create(&spec.uuid, "0a0b0c0d-1111-2222-3333-444455556666", &info)
            .await;
        driver.detach_volume(&spec.uuid, "/dev/vdc").await?;
        r
    });
    cleanup(&driver, &spec.uuid);
    volume.unwrap();
    snapshot.unwrap();
    raw_snapshot.unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    assert_eq!(bytes.len(), 64 << 20, "the raw copy has the volume's size");
    assert!(
        bytes[1 << 20..(1 << 20) + (64 << 10)]
            .iter()
            .all(|b| *b == 0x5a),
        "the raw copy holds what was written"
    );
    assert!(missing.is_empty(), "missing {missing:?} in: {log}");
    assert!(ran, "user data did not run: {log}");
    let tagged = &drive_md["devices"];
    assert_eq!(tagged.as_array().map(Vec::len), Some(1), "{drive_md}");
    assert_eq!(tagged[0]["type"], "disk");
    assert_eq!(tagged[0]["serial"], data_id);
    assert_eq!(tagged[0]["tags"], serde_json::json!(["data"]));
    let live = live.unwrap();
    assert!(
        live.iter().any(|d| d.kind
            == ferro_virt::GuestDeviceKind::Disk {
                serial: data_id.into()
            }
            && d.address == tagged[0]["address"].as_str().unwrap_or("?")),
        "QEMU has {live:?}; the config drive says {tagged}"
    );
    assert_eq!(info["virtual-size"], 1u64 << 30, "{info}");
    assert!(
        info["backing-filename"]
            .as_str()
            .is_some_and(|b| b.ends_with(&format!("_base/{img}"))),
        "{info}"
    );
    assert!(console.contains("GUEST-READY"));
    assert!(!guest_dir.exists(), "destroy removes the guest's files");
    eprintln!("QEMU driver: spawn -> GUEST-READY in {ready:?}");

    // The conformance suite on a real guest.
    let spec2 = GuestSpec {
        uuid: ferro_common::new_uuid(),
        name: "g2".into(),
        config_drive: false,
        user_data: None,
        disks: Vec::new(),
        ..spec
    };
    let scratch = reachable_tempdir();
    let t2 = Instant::now();
    let r = rt.block_on(ferro_virt::conformance::lifecycle(
        &driver,
        &spec2,
        scratch.path(),
    ));
    cleanup(&driver, &spec2.uuid);
    r.unwrap();
    eprintln!("QEMU driver: conformance lifecycle in {:?}", t2.elapsed());
    let spec3 = GuestSpec {
        uuid: ferro_common::new_uuid(),
        ..spec2
    };
    let r = rt.block_on(ferro_virt::conformance::paused_start(&driver, &spec3));
    cleanup(&driver, &spec3.uuid);
    r.unwrap();
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The KVM probe of `virt_type = auto` sees a kernel run: here under TCG
/// (always possible), so a negative answer under KVM means KVM guests hang.
#[test]
fn the_kvm_probe_sees_a_kernel_run() {
    let Some(image) = guest_image() else { return };
    let dir = Path::new(&image).parent().unwrap();
    let kernel = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("boot"))
        .filter_map(|b| std::fs::read_dir(b).ok())
        .flat_map(|rd| rd.filter_map(Result::ok).map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz")
        })
        .expect("the guest image's kernel");
    let t = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(ferro_virt::qemu::kernel_runs(
        "qemu-system-x86_64",
        "tcg",
        &kernel,
        &t.path().join("probe.log"),
    )));
}

/// Hands the driver local files by image id, each with its disk format.
struct Files(Vec<(&'static str, String, &'static str)>);

#[async_trait::async_trait]
impl ImageSource for Files {
    async fn fetch(&self, id: &str, dest: &Path) -> Result<String, VirtError> {
        let (_, file, format) = self
            .0
            .iter()
            .find(|(i, _, _)| *i == id)
            .ok_or_else(|| VirtError::Failed(format!("no image {id}")))?;
        tokio::fs::copy(file, dest)
            .await
            .map_err(|e| VirtError::Failed(e.to_string()))?;
        Ok(format.to_string())
    }
}

/// An image asking for UEFI (`hw_firmware_type=uefi`) boots under OVMF
/// (Debian's `ovmf`, which QEMU's package pulls in) with its own NVRAM: the
/// project's guest as Glance's kernel/ramdisk/root trio, the kernel started
/// by the firmware through its EFI stub. No config drive: under OVMF on the
/// `pc` machine this Debian kernel never finds a device on the PIIX IDE
/// channels (seen here under TCG), where Nova's layout puts the CD-ROM.
#[test]
fn a_uefi_guest_boots_under_ovmf() {
    let Some(image) = guest_image() else { return };
    if !Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists()
        && !Path::new("/usr/share/OVMF/OVMF_CODE.fd").exists()
    {
        ferro_common::skip_or_fail("OVMF is not installed (apt-get install ovmf)");
        return;
    }
    let stem = image.trim_end_matches(".qcow2").to_string();
    let (k, r, root) = (
        "7b5f3c1e-0000-4000-8000-0000000000a1",
        "7b5f3c1e-0000-4000-8000-0000000000a2",
        "7b5f3c1e-0000-4000-8000-0000000000a3",
    );
    let source = Files(vec![
        (k, format!("{stem}.vmlinuz"), "aki"),
        (r, format!("{stem}.initrd.gz"), "ari"),
        (root, format!("{stem}.root.qcow2"), "qcow2"),
    ]);
    let (rt, dir, driver) = tcg_driver(|_| {});
    rt.block_on(driver.cache_images(&[k, r, root], &source))
        .unwrap();
    let md = instance("uefi1");
    let spec = GuestSpec {
        uuid: md.uuid.clone(),
        name: "uefi1".into(),
        hostname: "uefi1".into(),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        image_id: Some(root.into()),
        image_properties: [
            ("kernel_id", k),
            ("ramdisk_id", r),
            ("os_command_line", "root=/dev/vda console=ttyS0"),
            ("hw_firmware_type", "uefi"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
        project_id: "p1".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let spawned = rt.block_on(driver.spawn(&spec));
    let guest_dir = dir.path().join("instances").join(&spec.uuid);
    let log = console_until(
        &guest_dir.join("console.log"),
        &["GUEST-READY"],
        Duration::from_secs(180),
    );
    let cmdline = std::fs::read_to_string(guest_dir.join("qemu.log")).unwrap_or_default();
    let nvram = guest_dir.join("nvram.fd").exists();
    let _ = rt.block_on(driver.destroy(&spec.uuid));
    spawned.unwrap();
    assert!(nvram, "the guest has its own UEFI variables");
    assert!(
        log.contains("GUEST-BOOTED") && log.contains("GUEST-READY"),
        "the UEFI guest did not get ready: {log}\n{cmdline}"
    );
    assert!(
        log.contains("efi: EFI v") && log.contains("by EDK II"),
        "the kernel was not started by UEFI firmware: {log}"
    );
    eprintln!(
        "QEMU driver: UEFI spawn -> GUEST-READY in {:?}",
        t.elapsed()
    );
}

/// A volume of another host, over NBD (`volume.remote_transport = nbd`):
/// the volume host's file driver exports it with a key that only the
/// attachment's connection info carries; without that key, or with
/// another, the export does not open. The QEMU driver attaches it to a
/// running guest, which writes to it; after detach the export is gone and
/// the data is in the volume's file.
/// The raw `file` begins with what the guest wrote.
fn assert_holds(file: &Path, marker: &str) {
    let mut head = vec![0u8; 64];
    std::fs::File::open(file)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&head).starts_with(marker),
        "the volume's file holds what the guest wrote: {:?}",
        String::from_utf8_lossy(&head)
    );
}

/// A new guest writes a marker to the volume of `info` hot-plugged at
/// /dev/vdb and syncs it; the volume is detached and the guest destroyed.
/// Returns the marker.
fn guest_writes_to_vdb(
    rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    driver: &QemuDriver,
    image: String,
    name: &str,
    info: &serde_json::Value,
) -> String {
    let source = FileSource {
        file: image,
        fetches: 0.into(),
    };
    let img = "7b5f3c1e-0000-4000-8000-000000000003";
    rt.block_on(driver.cache_images(&[img], &source)).unwrap();
    let md = instance(name);
    let marker = format!("{name}-marker-{}", &md.uuid[..8]);
    let script = format!(
        "#!/bin/sh\ni=0; while [ ! -b /dev/vdb ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done\n\
         echo {marker} | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null && echo VOL-WROTE\n"
    );
    let spec = GuestSpec {
        uuid: md.uuid.clone(),
        name: name.into(),
        hostname: name.into(),
        vcpus: 1,
        memory_mb: 192,
        root_gb: 1,
        image_id: Some(img.into()),
        user_data: Some(base64_of(&script)),
        project_id: "p1".into(),
        config_drive: true,
        ..Default::default()
    };
    rt.block_on(driver.spawn(&spec)).unwrap();
    let ci = ferro_virt::ConnectionInfo::from_json(info).unwrap();
    let attached = rt.block_on(driver.attach_volume(&spec.uuid, "/dev/vdb", &ci));
    let guest_dir = dir.path().join("instances").join(&spec.uuid);
    let log = console_until(
        &guest_dir.join("console.log"),
        &["VOL-WROTE"],
        Duration::from_secs(150),
    );
    let creds: Vec<_> = std::fs::read_dir(&guest_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("psk-") || n.starts_with("chap-"))
        .collect();
    let detached = rt.block_on(driver.detach_volume(&spec.uuid, "/dev/vdb"));
    let left: Vec<_> = std::fs::read_dir(&guest_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("psk-") || n.starts_with("chap-"))
        .collect();
    let _ = rt.block_on(driver.destroy(&spec.uuid));
    attached.unwrap();
    detached.unwrap();
    assert!(log.contains("VOL-WROTE"), "the guest did not write: {log}");
    assert_eq!(
        creds.len(),
        1,
        "the attachment's credentials in the guest's directory"
    );
    assert!(left.is_empty(), "credentials left after detach: {left:?}");
    marker
}

#[test]
fn a_volume_of_another_host_attaches_over_nbd_with_its_key() {
    use ferro_voldriver::VolumeDriver;
    let Some(image) = guest_image() else { return };
    if Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .is_err()
    {
        ferro_common::skip_or_fail("qemu-storage-daemon is not installed (qemu-system-common)");
        return;
    }
    let (rt, dir, driver) = tcg_driver(|_| {});
    let vdir = dir.path().join("volume-host");
    let vd = ferro_voldriver::FileDriver::new(vdir.clone(), "qcow2", 0)
        .unwrap()
        .with_nbd("volume-host", "127.0.0.1");
    rt.block_on(vd.create("v1", 1)).unwrap();
    let connector = serde_json::json!({"host": "compute-host"});
    let info = rt.block_on(vd.export("v1", &connector)).unwrap();
    assert_eq!(info["driver_volume_type"], "nbd", "{info}");
    let port = info["data"]["port"].as_u64().unwrap();
    // Idempotent: the same export again.
    assert_eq!(rt.block_on(vd.export("v1", &connector)).unwrap(), info);
    let open_with = |identity: Option<&str>, key: &str| {
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(
            keys.path().join("keys.psk"),
            format!("{}:{key}\n", identity.unwrap_or("x")),
        )
        .unwrap();
        let mut c = Command::new("qemu-img");
        c.arg("info");
        let mut opts = format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export=v1"
        );
        if let Some(id) = identity {
            c.arg("--object").arg(format!(
                "tls-creds-psk,id=t0,endpoint=client,dir={},username={id}",
                keys.path().display()
            ));
            opts.push_str(",tls-creds=t0");
        }
        c.arg("--image-opts")
            .arg(opts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let identity = info["data"]["tls_psk_identity"].as_str().unwrap();
    let key = info["data"]["tls_psk_key"].as_str().unwrap();
    assert!(!open_with(None, ""), "the export opened without TLS");
    assert!(
        !open_with(Some(identity), &"0".repeat(64)),
        "the export opened with another key"
    );
    assert!(
        open_with(Some(identity), key),
        "the attachment's key opens it"
    );

    let marker = guest_writes_to_vdb(&rt, &dir, &driver, image, "nbd1", &info);
    // Detached and unexported: the port is closed and the key gone.
    rt.block_on(vd.unexport("v1", &connector)).unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
        "the export still listens"
    );
    assert!(
        std::fs::read_dir(vdir.join(".exports"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "an export's key is left"
    );
    let raw = dir.path().join("v1.raw");
    assert!(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(vdir.join("volume-v1"))
            .arg(&raw)
            .status()
            .unwrap()
            .success()
    );
    assert_holds(&raw, &marker);
}

#[test]
fn a_volume_of_another_host_attaches_over_iscsi_with_its_chap_account() {
    use ferro_voldriver::VolumeDriver;
    let Some(image) = guest_image() else { return };
    if Command::new("tgtd").arg("--version").output().is_err() {
        ferro_common::skip_or_fail("tgtd is not installed (Debian's tgt)");
        return;
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so").exists() {
        ferro_common::skip_or_fail("QEMU's iSCSI initiator is not installed (qemu-block-extra)");
        return;
    }
    let (rt, dir, driver) = tcg_driver(|_| {});
    let vdir = dir.path().join("volume-host");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vd = ferro_voldriver::FileDriver::new(vdir.clone(), "raw", 0)
        .unwrap()
        .with_iscsi("volume-host", "127.0.0.1", port)
        .unwrap();
    rt.block_on(vd.create("v1", 1)).unwrap();
    let connector = serde_json::json!({"host": "compute-host"});
    let info = rt.block_on(vd.export("v1", &connector)).unwrap();
    assert_eq!(info["driver_volume_type"], "iscsi", "{info}");
    // Without the account QEMU's initiator is not let in.
    let d = &info["data"];
    let anonymous = Command::new("qemu-img")
        .arg("info")
        .arg("--image-opts")
        .arg(format!(
            "driver=iscsi,transport=tcp,portal={},target={},lun=1",
            d["target_portal"].as_str().unwrap(),
            d["target_iqn"].as_str().unwrap()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!anonymous.success(), "the target opened without CHAP");

    let marker = guest_writes_to_vdb(&rt, &dir, &driver, image, "iscsi1", &info);
    rt.block_on(vd.unexport("v1", &connector)).unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the portal still listens after the last export"
    );
    assert_holds(&vdir.join("volume-v1"), &marker);
}

/// Benchmark (run by `scripts/bench-volumes.sh`, not in the default run):
/// one TCG guest; a local (file), an NBD and an iSCSI volume each
/// hot-plugged in turn: attach call -> the disk seen by the guest, and a
/// 64 MiB sequential write with fsync inside the guest, beside the same
/// write to a file in the volumes' directory on the host, in one run.
#[test]
#[ignore = "a benchmark: scripts/bench-volumes.sh"]
fn volume_transports_benchmark() {
    use ferro_voldriver::VolumeDriver;
    let Some(image) = guest_image() else { return };
    let (rt, dir, driver) = tcg_driver(|_| {});
    let mib = 64;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let local = ferro_voldriver::FileDriver::new(dir.path().join("local"), "qcow2", 0).unwrap();
    let nbd = ferro_voldriver::FileDriver::new(dir.path().join("nbd"), "qcow2", 0)
        .unwrap()
        .with_nbd("volume-host", "127.0.0.1");
    let iscsi = ferro_voldriver::FileDriver::new(dir.path().join("iscsi"), "raw", 0)
        .unwrap()
        .with_iscsi("volume-host", "127.0.0.1", port)
        .unwrap();
    let transports: [(&str, &ferro_voldriver::FileDriver, &str); 3] = [
        ("local file (qcow2)", &local, "volume-host"),
        ("NBD, TLS-PSK (qcow2 served raw)", &nbd, "compute-host"),
        ("iSCSI, tgt + CHAP (raw)", &iscsi, "compute-host"),
    ];
    let source = FileSource {
        file: image,
        fetches: 0.into(),
    };
    let img = "7b5f3c1e-0000-4000-8000-000000000003";
    rt.block_on(driver.cache_images(&[img], &source)).unwrap();
    let md = instance("bench1");
    let script = format!(
        "#!/bin/sh\nn=0\nwhile [ $n -lt {} ]; do\n\
         i=0; while [ ! -b /dev/vdb ] && [ $i -lt 9000 ]; do sleep 0.02; i=$((i+1)); done\n\
         echo SEEN-$n\n\
         dd if=/dev/zero of=/dev/vdb bs=1M count={mib} conv=fsync 2>/dev/null && echo WROTE-$n\n\
         i=0; while [ -b /dev/vdb ] && [ $i -lt 9000 ]; do sleep 0.05; i=$((i+1)); done\n\
         n=$((n+1))\ndone\n",
        transports.len()
    );
    let spec = GuestSpec {
        uuid: md.uuid.clone(),
        name: "bench1".into(),
        hostname: "bench1".into(),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        image_id: Some(img.into()),
        user_data: Some(base64_of(&script)),
        project_id: "p1".into(),
        config_drive: true,
        ..Default::default()
    };
    rt.block_on(driver.spawn(&spec)).unwrap();
    let console = dir
        .path()
        .join("instances")
        .join(&spec.uuid)
        .join("console.log");
    // The guest is up when its user data runs (it waits for the disk).
    let booted = console_until(&console, &[&md.uuid], Duration::from_secs(150));
    assert!(
        booted.contains(&md.uuid),
        "the guest did not boot: {booted}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let until = |what: &str| -> Instant {
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            if text.contains(what) {
                return Instant::now();
            }
            assert!(t.elapsed() < Duration::from_secs(300), "no {what}: {text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut rows = Vec::new();
    for (n, (name, vd, host)) in transports.iter().enumerate() {
        let id = format!("b{n}");
        rt.block_on(vd.create(&id, 1)).unwrap();
        let connector = serde_json::json!({"host": host});
        let t0 = Instant::now();
        let info = rt.block_on(vd.export(&id, &connector)).unwrap();
        let ci = ferro_virt::ConnectionInfo::from_json(&info).unwrap();
        rt.block_on(driver.attach_volume(&spec.uuid, "/dev/vdb", &ci))
            .unwrap();
        let seen = until(&format!("SEEN-{n}"));
        let wrote = until(&format!("WROTE-{n}"));
        rt.block_on(driver.detach_volume(&spec.uuid, "/dev/vdb"))
            .unwrap();
        rt.block_on(vd.unexport(&id, &connector)).unwrap();
        let write = wrote.duration_since(seen).as_secs_f64();
        rows.push((
            name.to_string(),
            seen.duration_since(t0).as_secs_f64(),
            write,
            f64::from(mib) / write,
        ));
    }
    let _ = rt.block_on(driver.destroy(&spec.uuid));
    // The reference: the same write to a file beside the volumes, on the host.
    let reference = dir.path().join("local").join("host-reference");
    let t = Instant::now();
    let ok = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", reference.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fsync"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    let host = t.elapsed().as_secs_f64();
    assert!(ok);
    println!("\nvolume transports (TCG guest, {mib} MiB sequential write with fsync)");
    println!(
        "{:<34} {:>18} {:>14} {:>9}",
        "transport", "attach -> seen (s)", "write (s)", "MiB/s"
    );
    for (name, seen, write, rate) in &rows {
        println!("{name:<34} {seen:>18.2} {write:>14.2} {rate:>9.1}");
    }
    println!(
        "{:<34} {:>18} {:>14.2} {:>9.1}",
        "host: dd to a file, same directory",
        "-",
        host,
        f64::from(mib) / host
    );
}
