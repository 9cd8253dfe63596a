//! The privileged helper against the same commands run in-process: every
//! case gives the same answer through the socket as from `LocalHost`
//! directly, what is allowed changes exactly what it should, and what is
//! refused changes nothing. Needs root (it changes owners); skipped with a
//! message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferro_privsep::HelperClient;
use ferro_virt::qemu::confine::{Limits, UidPool};
use ferro_virt::qemu::privileged::{HostCommand, HostScope, LocalHost, Privileged};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const POOL: u32 = 3_900_000_000;
const SERVICE_GID: u32 = 3_899_999_000;

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// A fresh host layout: instances/g1/{disk,link -> outside}, instances/_base/b,
/// volumes/v1, outside.
fn layout(base: &Path) -> HostScope {
    let inst = base.join("instances");
    for d in ["instances/g1", "instances/_base", "volumes"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    for f in [
        "instances/g1/disk",
        "instances/_base/b",
        "volumes/v1",
        "outside",
    ] {
        std::fs::write(base.join(f), b"x").unwrap();
    }
    std::os::unix::fs::symlink(base.join("outside"), inst.join("g1/link")).unwrap();
    HostScope {
        instances_path: inst,
        volumes_dir: Some(base.join("volumes")),
        qemu_binary: "qemu-system-x86_64".into(),
        uid_pool: UidPool {
            base: POOL,
            count: 16,
        },
        cgroup_root: base.join("no-cgroups"),
        cgroup_parent: "ferrostack-test".into(),
        service_uid: 0,
        service_gid: SERVICE_GID,
    }
}

fn owner(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
}

/// Runs the cases on `host` over the layout in `base`; returns each answer.
async fn cases(host: &dyn Privileged, base: &Path, victim: u32) -> Vec<Result<(), String>> {
    let inst = base.join("instances");
    let mut out = Vec::new();
    let mut run = async |c: HostCommand| {
        out.push(host.run(c).await.map_err(|e| e.to_string()));
    };
    let disk = inst.join("g1/disk");
    run(HostCommand::HandOver {
        path: disk.clone(),
        uid: POOL,
    })
    .await;
    assert_eq!(owner(&disk), (POOL, SERVICE_GID, 0o660));
    run(HostCommand::TakeBack {
        path: disk.clone(),
        uid: POOL,
    })
    .await;
    assert_eq!(owner(&disk).0, 0);
    run(HostCommand::HandOver {
        path: base.join("volumes/v1"),
        uid: POOL + 1,
    })
    .await;
    assert_eq!(owner(&base.join("volumes/v1")).0, POOL + 1);
    // Refused, and nothing changes.
    for (path, uid) in [
        (base.join("outside"), POOL),
        (inst.join("g1/link"), POOL),
        (inst.join("_base/b"), POOL),
        (inst.join("g1/../../outside"), POOL),
        (disk.clone(), 0),
        (disk.clone(), POOL + 16),
    ] {
        run(HostCommand::HandOver { path, uid }).await;
    }
    assert_eq!(owner(&base.join("outside")).0, 0);
    assert_eq!(owner(&inst.join("_base/b")).0, 0);
    assert_eq!(owner(&disk).0, 0);
    run(HostCommand::ShareGuestDir {
        uuid: "g1".into(),
        uid: POOL,
    })
    .await;
    assert_eq!(owner(&inst.join("g1")), (0, POOL, 0o710));
    run(HostCommand::ShareGuestDir {
        uuid: "../g1".into(),
        uid: POOL,
    })
    .await;
    run(HostCommand::PrepareTap {
        name: "eth0".into(),
        uid: POOL,
    })
    .await;
    run(HostCommand::RemoveTap { name: "lo".into() }).await;
    let args = |with_uuid: bool| {
        let mut a = vec![
            "-sandbox".to_string(),
            ferro_virt::qemu::confine::SANDBOX.into(),
        ];
        if with_uuid {
            a.extend(["-uuid".to_string(), "g1".to_string()]);
        }
        a
    };
    run(HostCommand::Launch {
        uuid: "g1".into(),
        args: args(false),
        uid: Some(POOL),
    })
    .await;
    run(HostCommand::Launch {
        uuid: "g1".into(),
        args: args(true),
        uid: None,
    })
    .await;
    run(HostCommand::Launch {
        uuid: "g1".into(),
        args: vec!["-uuid".into(), "g1".into()],
        uid: Some(POOL),
    })
    .await;
    // A root process whose command line names the instance is not killed.
    std::fs::write(inst.join("g1/qemu.pid"), format!("{victim}\n")).unwrap();
    run(HostCommand::Kill { uuid: "g1".into() }).await;
    assert!(Path::new(&format!("/proc/{victim}")).exists());
    run(HostCommand::CreateCgroup {
        uuid: "g1/../x".into(),
        limits: Limits::for_guest(1, 64, 0, &Default::default()).unwrap(),
    })
    .await;
    out
}

#[tokio::test]
async fn the_helper_answers_as_the_host_does_and_refuses_the_same() {
    if !root() {
        eprintln!("skipped: needs root (it changes files' owners)");
        return;
    }
    let mut victim = std::process::Command::new("sh")
        .args(["-c", "sleep 60", "-uuid", "g1"])
        .spawn()
        .unwrap();
    // Both layouts must see the same victim: a process that names the
    // instance on its command line (seen once answering as if it did not).
    let named = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"-uuid"))
    };
    let t0 = std::time::Instant::now();
    while !named(victim.id()) && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let direct_dir = tempfile::tempdir().unwrap();
    let direct = LocalHost::new(layout(direct_dir.path()));
    let direct_answers = cases(&direct, direct_dir.path(), victim.id()).await;

    let helper_dir = tempfile::tempdir().unwrap();
    let scope = layout(helper_dir.path());
    let sock: PathBuf = helper_dir.path().join("helper.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(ferro_privsep::server::serve(
        listener,
        Arc::new(LocalHost::new(scope)),
        None,
        None,
        SERVICE_GID,
    ));
    let client = HelperClient::new(&sock);
    assert!(client.confines());
    let helper_answers = cases(&client, helper_dir.path(), victim.id()).await;
    victim.kill().unwrap();
    let _ = victim.wait();

    // The same answers, each layout's directory aside.
    let norm = |answers: &[Result<(), String>], base: &Path| -> Vec<Result<(), String>> {
        let b = base.display().to_string();
        answers
            .iter()
            .map(|a| a.clone().map_err(|e| e.replace(&b, "<base>")))
            .collect()
    };
    assert_eq!(
        norm(&direct_answers, direct_dir.path()),
        norm(&helper_answers, helper_dir.path())
    );
    let oks: Vec<bool> = direct_answers.iter().map(Result::is_ok).collect();
    // The three hand-overs and take-back, the guest directory: allowed.
    assert_eq!(&oks[..3], &[true, true, true], "{direct_answers:?}");
    assert!(oks[9], "{direct_answers:?}");
    // Everything else: refused.
    for (i, a) in direct_answers.iter().enumerate() {
        if i < 3 || i == 9 {
            continue;
        }
        let e = a.as_ref().expect_err(&format!("case {i} was allowed"));
        assert!(e.contains("refused"), "case {i}: {e}");
    }

    // A process of another user is not served: the connection closes
    // without an answer and the command does not run.
    let disk = helper_dir.path().join("instances/g1/disk");
    let line = serde_json::to_string(&HostCommand::HandOver {
        path: disk.clone(),
        uid: POOL,
    })
    .unwrap();
    let py = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall({:?}.encode()+b'\\n')\nsys.stdout.write(s.recv(100).decode())",
        sock.display().to_string(),
        line
    );
    std::fs::set_permissions(helper_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "python3",
            "-c",
            &py,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(owner(&disk).0, 0, "the other user's command ran");
    server.abort();

    // A volumes directory configured above the instances directory does
    // not open the image cache through the volumes rule.
    let wide_dir = tempfile::tempdir().unwrap();
    let mut wide = layout(wide_dir.path());
    wide.volumes_dir = Some(wide_dir.path().to_path_buf());
    let wide = LocalHost::new(wide);
    let base_image = wide_dir.path().join("instances/_base/b");
    let r = wide
        .run(HostCommand::HandOver {
            path: base_image.clone(),
            uid: POOL,
        })
        .await;
    assert!(r.is_err(), "the image cache was handed over");
    assert_eq!(owner(&base_image).0, 0);
    let r = wide
        .run(HostCommand::HandOver {
            path: wide_dir.path().join("volumes/v1"),
            uid: POOL,
        })
        .await;
    assert!(r.is_ok(), "{r:?}");
}

/// The volume agent's iSCSI targets through the helper, as a service
/// without root makes them: the helper opens only `volume-<id>` of its own
/// volumes directory, refuses names that could leave it, and its targets
/// are the ones `IscsiExports` makes directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_makes_the_volume_agents_iscsi_targets() {
    use ferro_voldriver::iscsi::IscsiTargets;
    if std::process::Command::new("tgtd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: tgtd is not installed (Debian's tgt)");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: tgtd needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let volumes = dir.path().join("volumes");
    std::fs::create_dir_all(&volumes).unwrap();
    let f = std::fs::File::create(volumes.join("volume-v1")).unwrap();
    f.set_len(1 << 20).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iscsi = Arc::new(ferro_privsep::server::IscsiHost {
        exports: ferro_voldriver::iscsi::IscsiExports::new(
            ferro_voldriver::FileDriver::iscsi_dir(&volumes),
            "127.0.0.1",
            port,
        ),
        volumes_dir: volumes.clone(),
    });
    let sock: PathBuf = dir.path().join("helper.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let scope = layout(dir.path());
    let server = tokio::spawn(ferro_privsep::server::serve(
        listener,
        Arc::new(LocalHost::new(scope)),
        None,
        Some(iscsi),
        SERVICE_GID,
    ));
    let targets = ferro_privsep::HelperIscsi::new(HelperClient::new(&sock));
    // The path the service sends is not what the helper opens.
    let info = targets
        .export("v1", Path::new("/etc/shadow"), "host-b")
        .await
        .unwrap();
    assert_eq!(info["driver_volume_type"], "iscsi", "{info}");
    assert_eq!(info["data"]["auth_method"], "CHAP", "{info}");
    assert_eq!(
        targets.exported().await,
        vec![("v1".to_string(), "host-b".to_string())]
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    for (vol, host) in [
        ("../v1", "host-b"),
        ("v1", "a/b"),
        ("", "h"),
        ("v2", "host-b"),
    ] {
        let r = targets.export(vol, Path::new("x"), host).await;
        assert!(r.is_err(), "{vol} {host}: {r:?}");
    }
    targets.unexport("v1", "host-b").await.unwrap();
    assert!(targets.exported().await.is_empty());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the portal still listens after the last target"
    );
    server.abort();
}
