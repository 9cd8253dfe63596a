//! The root process of `ferrostack serve`: it makes sure the service user
//! exists and owns the state directories, opens the helper's socket,
//! starts the service as that user (the same command line, with
//! `SOCKET_ENV` set), serves the helper's commands, passes SIGTERM and
//! SIGINT on, and ends with the service's exit status. The service dies
//! with it (`PR_SET_PDEATHSIG`), so a `kill -9` of ferrostack frees its
//! ports as before; guests live on, in their own sessions.
use ferro_config::Config;
use ferro_virt::qemu::confine::UidPool;
use ferro_virt::qemu::privileged::{HostScope, LocalHost, Privileged};
use rustix::process::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether this `serve` separates privileges: started as root with
/// `[privsep] enabled`, and not itself the service a helper started.
pub fn separates(cfg: &Config) -> bool {
    cfg.privsep.enabled
        && ferro_config::running_as_root()
        && std::env::var_os(crate::SOCKET_ENV).is_none()
}

/// The service user `name`: its uid and gid, created (a system user with
/// a group of its own, no login, no home) if missing.
pub fn service_user(name: &str) -> Result<(u32, u32), String> {
    if name.is_empty()
        || name == "root"
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "privsep.user = {name:?}: a system user's name, not root"
        ));
    }
    if let Some(ids) = lookup(name) {
        return Ok(ids);
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "ferrostack services",
            name,
        ])
        .output()
        .map_err(|e| format!("creating the service user {name} (useradd): {e}"))?;
    if !out.status.success() {
        // Another ferrostack starting at the same time may have made it.
        if let Some(ids) = lookup(name) {
            return Ok(ids);
        }
        return Err(format!(
            "creating the service user {name}: useradd: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    tracing::info!(user = name, "created the system user the service runs as");
    lookup(name).ok_or_else(|| format!("the user {name} was created but is not in /etc/passwd"))
}

fn lookup(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Makes `dir` the service's: created if missing, reachable by it through
/// its parents, and every entry that root owns given to it. Files of
/// guests (owned by a guest uid of `pool`, from before privileges were
/// separated) get the service's group, as `hand_over` gives it now.
pub fn own_dir(
    dir: &Path,
    uid: u32,
    gid: u32,
    pool: &UidPool,
    keep: &[PathBuf],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut up = dir.parent();
    while let Some(p) = up {
        if let Ok(m) = std::fs::metadata(p)
            && m.permissions().mode() & 0o001 == 0
            && m.uid() != uid
        {
            return Err(format!(
                "the service user cannot reach {}: {} is mode {:o}; choose a directory all users may traverse (started as root, ferrostack keeps its data in {} by default)",
                dir.display(),
                p.display(),
                m.permissions().mode() & 0o7777,
                ferro_config::ROOT_DATA_DIR
            ));
        }
        up = p.parent();
    }
    let in_pool =
        |u: u32| u >= pool.base && u64::from(u) < u64::from(pool.base) + u64::from(pool.count);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if keep.contains(&p) {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let err = |e: std::io::Error| format!("{}: {e}", p.display());
        if m.uid() == 0 {
            let group = (m.gid() == 0).then_some(gid);
            std::os::unix::fs::lchown(&p, Some(uid), group).map_err(err)?;
        } else if in_pool(m.uid()) && m.gid() == m.uid() && !m.file_type().is_symlink() {
            std::os::unix::fs::lchown(&p, None, Some(gid)).map_err(err)?;
            let add = if m.is_dir() { 0o2070 } else { 0o060 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m.mode() & 0o7777 | add))
                .map_err(err)?;
        }
        if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            todo.extend(rd.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    Ok(())
}

/// The directories the service keeps its state in.
fn state_dirs(cfg: &Config) -> Vec<PathBuf> {
    let data = cfg.data_dir();
    let mut dirs = vec![
        data.clone(),
        cfg.instances_path(),
        cfg.volumes_dir(),
        cfg.key_repository(),
    ];
    for (_, b) in cfg.image.stores(&data) {
        if b.store == "file"
            && let Some(d) = b.filesystem_store_datadir
        {
            dirs.push(d);
        }
    }
    dirs
}

/// Where the Linux bridge driver keeps its records, dnsmasq's files and
/// leases.
pub fn network_state_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir().join("network")
}

/// What the helper may do for the service of `cfg`.
pub fn scope(cfg: &Config, uid: u32, gid: u32) -> HostScope {
    let c = &cfg.compute;
    HostScope {
        instances_path: cfg.instances_path(),
        volumes_dir: Some(cfg.volumes_dir()),
        qemu_binary: "qemu-system-x86_64".into(),
        uid_pool: UidPool {
            base: c.guest_uid_base,
            count: c.guest_uid_count,
        },
        cgroup_root: c.cgroup_root.clone().into(),
        cgroup_parent: c.cgroup_parent.clone(),
        service_uid: uid,
        service_gid: gid,
    }
}

/// Runs the helper and the service; returns the service's exit code.
pub async fn supervise(cfg: &Config) -> Result<i32, String> {
    let (uid, gid) = service_user(&cfg.privsep.user)?;
    let sc = scope(cfg, uid, gid);
    // The network data plane's files (dnsmasq's configuration, leases and
    // pid files) are the helper's, not the service's.
    let net_state = network_state_dir(cfg);
    for d in state_dirs(cfg) {
        own_dir(&d, uid, gid, &sc.uid_pool, std::slice::from_ref(&net_state))?;
    }
    let old = ferro_config::default_data_dir();
    if cfg.data_dir.is_none() && old.join("ferrostack.db").is_file() {
        tracing::warn!(
            "an earlier ferrostack run as root kept its data in {}; started as root it now keeps it in {} (stop ferrostack and move the directory there to keep that cloud)",
            old.display(),
            cfg.data_dir().display()
        );
    }
    // The socket: in a root-owned directory only the service's group enters.
    let sdir = &cfg.privsep.socket_dir;
    std::fs::create_dir_all(sdir).map_err(|e| format!("{}: {e}", sdir.display()))?;
    std::os::unix::fs::chown(sdir, Some(0), Some(gid))
        .map_err(|e| format!("{}: {e}", sdir.display()))?;
    std::fs::set_permissions(sdir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| format!("{}: {e}", sdir.display()))?;
    remove_stale_sockets(sdir);
    let sock = sdir.join(format!("helper-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener =
        tokio::net::UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    std::os::unix::fs::chown(&sock, Some(0), Some(gid))
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    let host: Arc<dyn Privileged> = Arc::new(LocalHost::new(sc.clone()));
    let net = (cfg.host_net_driver() == "linuxbridge").then(|| {
        ferro_netdriver::LinuxBridge::new(cfg.network.host_namespace.clone(), net_state.clone())
            .with_interface_mappings(&cfg.network.physical_interface_mappings)
            .and_then(|d| d.with_local_ip(cfg.network.local_ip.as_deref()))
            .and_then(|d| d.with_external_uplink(cfg.network.external_uplink.as_deref()))
    });
    let net: Option<Arc<dyn ferro_netdriver::HostDriver>> = match net {
        Some(Ok(d)) => Some(Arc::new(d)),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    // The volume agent's iSCSI targets (tgtd needs root).
    let iscsi = (cfg.volume.volume_driver == "file" && cfg.volume.remote_transport == "iscsi")
        .then(|| {
            let volumes_dir = cfg.volumes_dir();
            Arc::new(crate::server::IscsiHost {
                exports: ferro_voldriver::iscsi::IscsiExports::new(
                    ferro_voldriver::FileDriver::iscsi_dir(&volumes_dir),
                    &cfg.volume_target_ip(),
                    cfg.volume.target_port,
                ),
                volumes_dir,
            })
        });
    let server = tokio::spawn(crate::server::serve(listener, host, net, iscsi, uid));

    let r = run_service(cfg, &sock, uid, gid).await;
    server.abort();
    let _ = std::fs::remove_file(&sock);
    r
}

async fn run_service(cfg: &Config, sock: &Path, uid: u32, gid: u32) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let data = cfg.data_dir();
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(crate::SOCKET_ENV, sock)
        .env(crate::PARENT_ENV, std::process::id().to_string())
        // As the service user these would default elsewhere: they are
        // what root settled.
        .env("FERROSTACK_DATA_DIR", &data)
        .env("FERROSTACK__COMPUTE__INSTANCES_PATH", cfg.instances_path())
        .env("FERROSTACK__VOLUME__VOLUMES_DIR", cfg.volumes_dir())
        .env(
            "FERROSTACK__FERNET_TOKENS__KEY_REPOSITORY",
            cfg.key_repository(),
        )
        // Root's own clouds.yaml is written here, by root.
        .env("FERROSTACK__IDENTITY__WRITE_USER_CLOUDS_YAML", "false")
        // Decided here, as root: the service without root would not choose
        // the data plane its helper builds.
        .env(
            "FERROSTACK__NETWORK__HOST_NET_DRIVER",
            cfg.host_net_driver(),
        )
        .env("HOME", &data)
        .uid(uid)
        .gid(gid);
    let started = std::time::SystemTime::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the service as {}: {e}", cfg.privsep.user))?;
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    tracing::info!(
        pid = ?child.id(),
        user = %cfg.privsep.user,
        "service started without privileges; this process keeps root for the privileged helper only"
    );
    if cfg.writes_user_clouds_yaml() {
        tokio::spawn(copy_clouds_yaml(data.join("clouds.yaml"), started));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            st = child.wait() => {
                let st = st.map_err(|e| e.to_string())?;
                use std::os::unix::process::ExitStatusExt;
                return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            _ = term.recv() => forward(pid, Signal::TERM),
            _ = int.recv() => forward(pid, Signal::INT),
        }
    }
}

fn forward(pid: Option<rustix::process::Pid>, sig: Signal) {
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// In the service a helper started: dies with the helper (SIGKILL when it
/// ends, as a `kill -9` of ferrostack must free the service's ports), or
/// exits at once if the helper is already gone.
pub fn bind_to_helper() -> Result<(), String> {
    let Some(parent) = std::env::var(crate::PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        return Err("the privileged helper that started this service is gone".into());
    }
    Ok(())
}

/// `~/.config/openstack/clouds.yaml` of root, as an unseparated start
/// writes it: a copy of the service's, once the service has written it
/// (never over a file ferrostack did not write).
async fn copy_clouds_yaml(ours: PathBuf, after: std::time::SystemTime) {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    for _ in 0..600 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let fresh = std::fs::metadata(&ours)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m >= after);
        if !fresh {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&ours) else {
            return;
        };
        let dir = PathBuf::from(home).join(".config/openstack");
        let user_file = dir.join("clouds.yaml");
        let mine = std::fs::read_to_string(&user_file)
            .map(|t| t.starts_with("# Written by ferrostack"))
            .unwrap_or(true);
        if mine && std::fs::create_dir_all(&dir).is_ok() {
            let w = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&user_file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            if let Err(e) = w {
                tracing::warn!(file = %user_file.display(), "writing clouds.yaml: {e}");
            }
        }
        return;
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Removes the sockets of helpers that are gone (killed before they could
/// remove their own): `helper-<pid>.sock` whose pid no longer runs.
fn remove_stale_sockets(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("helper-"))
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
