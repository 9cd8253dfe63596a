//! What the QEMU driver needs root for, as a narrow, typed command set (as
//! Nova's libvirt driver reaches root through oslo.privsep and libvirtd):
//! giving a guest's files to its uid and back, its taps, its cgroup, and
//! starting and killing its QEMU. The driver itself runs unprivileged; a
//! `Privileged` executes these commands, either in this process
//! (`LocalHost`, when this process is root or nothing is confined) or in
//! the privileged helper `ferrostack serve` keeps as root (the
//! `ferro-privsep` crate's client, which sends the same commands).
//!
//! Every command is checked by `LocalHost` before it runs, wherever it came
//! from: paths must lie below the instances or volumes directory and not be
//! symlinks, uids must be the guests' pool's, QEMU is the configured binary
//! started with the instance's `-uuid` and the seccomp sandbox, and a kill
//! reaches only a process whose command line names the instance and that
//! runs under a guest uid.
use super::confine::{self, Cgroups, Limits, UidPool};
use super::process;
use crate::VirtError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One privileged operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostCommand {
    /// `<instances>/<uuid>`: owner the service, group the guest's uid,
    /// mode 0710 (the guest may reach its files, not list or change the
    /// directory; other guests may not enter).
    ShareGuestDir {
        uuid: String,
        uid: u32,
    },
    /// A guest's file or directory (below its directory) or a volume
    /// (below the volumes directory): owner `uid`, group the service, mode
    /// 0660 (directories 2770, so what QEMU creates there stays reachable
    /// by the service).
    HandOver {
        path: PathBuf,
        uid: u32,
    },
    /// Back to the service, if `uid` holds it.
    TakeBack {
        path: PathBuf,
        uid: u32,
    },
    /// The tap `name`, owned by `uid` (QEMU only opens it), up.
    PrepareTap {
        name: String,
        uid: u32,
    },
    RemoveTap {
        name: String,
    },
    /// The guest's cgroup with `limits`.
    CreateCgroup {
        uuid: String,
        limits: Limits,
    },
    /// Kills what still runs in the guest's cgroup and removes it.
    RemoveCgroup {
        uuid: String,
    },
    /// Starts the configured QEMU with `args`, detached, in the guest's
    /// cgroup (if it has one), under `uid` (if confined).
    Launch {
        uuid: String,
        args: Vec<String>,
        uid: Option<u32>,
    },
    /// SIGKILL to the guest's QEMU.
    Kill {
        uuid: String,
    },
}

/// Executes `HostCommand`s.
#[async_trait::async_trait]
pub trait Privileged: Send + Sync {
    /// Whether guests get uids and cgroups of their own (the commands run
    /// as root).
    fn confines(&self) -> bool;
    async fn run(&self, cmd: HostCommand) -> Result<(), VirtError>;
}

/// What `LocalHost` may touch.
#[derive(Clone, Debug)]
pub struct HostScope {
    /// Nova's `instances_path`: guests' directories are its children.
    pub instances_path: PathBuf,
    /// Where volumes handed to guests live.
    pub volumes_dir: Option<PathBuf>,
    pub qemu_binary: String,
    pub uid_pool: UidPool,
    pub cgroup_root: PathBuf,
    pub cgroup_parent: String,
    /// The group of the service that drives the guests (given what a guest
    /// is handed, and the guests' directories).
    pub service_uid: u32,
    pub service_gid: u32,
}

/// Runs the commands in this process, after checking them.
pub struct LocalHost {
    scope: HostScope,
    /// Root here: guests are confined.
    root: bool,
    cgroups: Option<Cgroups>,
}

fn refused(what: impl std::fmt::Display) -> VirtError {
    VirtError::Failed(format!("privileged command refused: {what}"))
}

impl LocalHost {
    /// As root, guests get uids and cgroups; `/dev/net/tun` is made usable
    /// by their uids.
    pub fn new(scope: HostScope) -> LocalHost {
        let root = confine::can_confine();
        let cgroups = if root {
            tun_for_all();
            let cg = Cgroups::detect(&scope.cgroup_root, &scope.cgroup_parent);
            if cg.is_none() {
                tracing::warn!(root = %scope.cgroup_root.display(), "no usable cgroup hierarchy (memory and cpu controllers): guests run without cgroup limits");
            }
            cg
        } else {
            None
        };
        LocalHost {
            scope,
            root,
            cgroups,
        }
    }

    fn uuid<'a>(&self, uuid: &'a str) -> Result<&'a str, VirtError> {
        if uuid.is_empty()
            || uuid.len() > 64
            || !uuid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(refused(format!("instance {uuid:?}")));
        }
        Ok(uuid)
    }

    fn guest_uid(&self, uid: u32) -> Result<u32, VirtError> {
        let p = &self.scope.uid_pool;
        if uid >= p.base && u64::from(uid) < u64::from(p.base) + u64::from(p.count) && uid != 0 {
            Ok(uid)
        } else {
            Err(refused(format!("uid {uid} is not a guest uid")))
        }
    }

    /// `path` if it is a file or directory (not a symlink) strictly below
    /// a guest's directory or the volumes directory.
    fn guest_path<'a>(&self, path: &'a Path) -> Result<&'a Path, VirtError> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| refused(format!("{}: {e}", path.display())))?;
        if meta.file_type().is_symlink() {
            return Err(refused(format!("{} is a symlink", path.display())));
        }
        let parent = path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .ok_or_else(|| refused(format!("{}", path.display())))?;
        let full = parent.join(path.file_name().unwrap_or_default());
        let inst = self.scope.instances_path.canonicalize().ok();
        let in_guest = inst.as_ref().is_some_and(|i| {
            full.strip_prefix(i).is_ok_and(|rest| {
                let mut c = rest.components();
                // <uuid>/<something>, and not the image cache.
                matches!(c.next(), Some(std::path::Component::Normal(g)) if g != "_base")
                    && c.next().is_some()
            })
        });
        let in_volumes = self
            .scope
            .volumes_dir
            .as_ref()
            .and_then(|v| v.canonicalize().ok())
            .is_some_and(|v| {
                full.strip_prefix(&v)
                    .is_ok_and(|r| r.components().count() >= 1)
            })
            // A volumes directory above the instances one does not open
            // the image cache or another guest's files.
            && !inst.as_ref().is_some_and(|i| full.starts_with(i));
        if in_guest || in_volumes {
            Ok(path)
        } else {
            Err(refused(format!(
                "{} is neither a guest's file nor a volume",
                path.display()
            )))
        }
    }

    fn tap<'a>(&self, name: &'a str) -> Result<&'a str, VirtError> {
        if name.starts_with("tap")
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Ok(name)
        } else {
            Err(refused(format!("tap name {name:?}")))
        }
    }

    fn need_root(&self) -> Result<(), VirtError> {
        if self.root {
            Ok(())
        } else {
            Err(refused("this process is not root"))
        }
    }

    async fn execute(&self, cmd: HostCommand) -> Result<(), VirtError> {
        use std::os::unix::fs::PermissionsExt;
        let (s_uid, s_gid) = (self.scope.service_uid, self.scope.service_gid);
        match cmd {
            HostCommand::ShareGuestDir { uuid, uid } => {
                self.need_root()?;
                let dir = self.scope.instances_path.join(self.uuid(&uuid)?);
                let uid = self.guest_uid(uid)?;
                let meta = std::fs::symlink_metadata(&dir)
                    .map_err(|e| refused(format!("{}: {e}", dir.display())))?;
                if !meta.is_dir() {
                    return Err(refused(format!("{} is not a directory", dir.display())));
                }
                let err = |e: std::io::Error| VirtError::Failed(format!("{}: {e}", dir.display()));
                std::os::unix::fs::lchown(&dir, Some(s_uid), Some(uid)).map_err(err)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710)).map_err(err)
            }
            HostCommand::HandOver { path, uid } => {
                self.need_root()?;
                let path = self.guest_path(&path)?;
                confine::hand_over(path, self.guest_uid(uid)?, s_gid)
            }
            HostCommand::TakeBack { path, uid } => {
                self.need_root()?;
                let path = self.guest_path(&path)?;
                confine::take_back(path, self.guest_uid(uid)?, s_uid, s_gid);
                Ok(())
            }
            HostCommand::PrepareTap { name, uid } => {
                self.need_root()?;
                process::prepare_tap(self.tap(&name)?, self.guest_uid(uid)?).await
            }
            HostCommand::RemoveTap { name } => {
                self.need_root()?;
                process::remove_tap(self.tap(&name)?).await;
                Ok(())
            }
            HostCommand::CreateCgroup { uuid, limits } => {
                let uuid = self.uuid(&uuid)?;
                match &self.cgroups {
                    Some(cg) => cg.create(uuid, &limits).map(|_| ()),
                    None => Err(refused("this host has no usable cgroups")),
                }
            }
            HostCommand::RemoveCgroup { uuid } => {
                let uuid = self.uuid(&uuid)?;
                if let Some(cg) = &self.cgroups {
                    cg.kill_and_remove(uuid).await;
                }
                Ok(())
            }
            HostCommand::Launch { uuid, args, uid } => {
                let uuid = self.uuid(&uuid)?;
                let names_it = args.windows(2).any(|w| w[0] == "-uuid" && w[1] == uuid);
                let sandboxed = args
                    .windows(2)
                    .any(|w| w[0] == "-sandbox" && w[1] == confine::SANDBOX);
                if !names_it || !sandboxed {
                    return Err(refused(
                        "QEMU is started only with the instance's -uuid and the seccomp sandbox",
                    ));
                }
                let uid = match uid {
                    Some(u) => {
                        self.need_root()?;
                        Some(self.guest_uid(u)?)
                    }
                    None if self.root => {
                        return Err(refused("a guest's QEMU never runs as root"));
                    }
                    None => None,
                };
                let dir = self.scope.instances_path.join(uuid);
                let procs = match &self.cgroups {
                    Some(cg) if cg.dirs(uuid).iter().all(|d| d.is_dir()) => cg
                        .dirs(uuid)
                        .into_iter()
                        .map(|d| d.join("cgroup.procs"))
                        .collect(),
                    _ => Vec::new(),
                };
                process::spawn(&process::Detached {
                    program: &self.scope.qemu_binary,
                    args: &args,
                    pidfile: &dir.join("qemu.pid"),
                    log: &dir.join("qemu.log"),
                    uid,
                    cgroup_procs: &procs,
                })
                .await
            }
            HostCommand::Kill { uuid } => {
                let uuid = self.uuid(&uuid)?;
                let pidfile = self.scope.instances_path.join(uuid).join("qemu.pid");
                let Some(pid) = process::verified_pid(&pidfile, uuid) else {
                    return Ok(());
                };
                if self.root {
                    match process::uid_of(pid) {
                        Some(u) if self.guest_uid(u).is_ok() => {}
                        other => {
                            return Err(refused(format!(
                                "process {pid} runs as {other:?}, not a guest uid"
                            )));
                        }
                    }
                }
                super::run("kill", &["-KILL", &pid.to_string()])
                    .await
                    .map(|_| ())
            }
        }
    }
}

#[async_trait::async_trait]
impl Privileged for LocalHost {
    fn confines(&self) -> bool {
        self.root
    }

    async fn run(&self, cmd: HostCommand) -> Result<(), VirtError> {
        self.execute(cmd).await
    }
}

/// Guests' QEMU, under their own uids, opens the taps made for them
/// through `/dev/net/tun`, which distributions leave `0666` (opening a
/// persistent tap needs its owner's uid, creating one needs CAP_NET_ADMIN).
/// A host where it is `0600` gets the distribution's mode.
fn tun_for_all() {
    use std::os::unix::fs::PermissionsExt;
    let tun = Path::new("/dev/net/tun");
    if let Ok(m) = std::fs::metadata(tun)
        && m.permissions().mode() & 0o006 != 0o006
    {
        match std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666)) {
            Ok(()) => tracing::info!(
                "/dev/net/tun was mode {:o}; set to 0666 (the distributions' mode) so guests' QEMU, under their own uids, can open their taps",
                m.permissions().mode() & 0o777
            ),
            Err(e) => tracing::warn!(
                "/dev/net/tun is not usable by guests' uids ({e}): guests with NICs will not start"
            ),
        }
    }
}

/// This process's effective uid and gid (from /proc).
pub fn effective_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Uid:"), field("Gid:"))
}
