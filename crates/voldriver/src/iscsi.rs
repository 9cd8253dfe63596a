//! Volumes exported to other hosts over iSCSI, as Cinder's `tgtadm`
//! target helper does: the userspace `tgt` daemon serves each (volume,
//! host) as a target of its own (LUN 1 the volume's raw file) that admits
//! only the CHAP account made for that attachment. `unexport` deletes the
//! target and its account, so the export is gone after detach; the daemon
//! runs while any export is open and is stopped with the last one.
//!
//! The agent starts `tgtd` itself (its own control port, so other tgt
//! daemons on the machine are never touched) and keeps each export's
//! record (`<exports>/<volume>@<host>/target.json`, 0600: target id and
//! name, account, file) so that exporting again is idempotent and a
//! `tgtd` that died or an agent restarted later finds the targets again
//! (Cinder's `ensure_export`).
use crate::BResult;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cinder's `target_prefix`.
const IQN_PREFIX: &str = "iqn.2010-10.org.openstack:";

/// What makes and removes the targets: `IscsiExports` itself, or the
/// privileged helper running it for a service without root.
#[async_trait::async_trait]
pub trait IscsiTargets: Send + Sync {
    /// Opens `file`, the volume's raw file, to `host`: its connection info.
    async fn export(&self, volume: &str, file: &Path, host: &str) -> BResult<Value>;
    /// Closes the volume's target for `host` (idempotent).
    async fn unexport(&self, volume: &str, host: &str) -> BResult<()>;
    /// The (volume, host) pairs exported now.
    async fn exported(&self) -> Vec<(String, String)>;
}

#[async_trait::async_trait]
impl IscsiTargets for IscsiExports {
    async fn export(&self, volume: &str, file: &Path, host: &str) -> BResult<Value> {
        IscsiExports::export(self, volume, file, host).await
    }
    async fn unexport(&self, volume: &str, host: &str) -> BResult<()> {
        IscsiExports::unexport(self, volume, host).await
    }
    async fn exported(&self) -> Vec<(String, String)> {
        IscsiExports::exported(self)
    }
}

pub struct IscsiExports {
    /// Where the exports' records, the daemon's pid and log live.
    pub dir: PathBuf,
    /// The portal's address (Cinder's `target_ip_address`).
    pub listen: String,
    /// The portal's port (Cinder's `target_port`).
    pub port: u16,
    /// Serialises target ids and the daemon's start and stop.
    lock: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    tid: u32,
    iqn: String,
    user: String,
    password: String,
    file: String,
}

fn lower_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl IscsiExports {
    pub fn new(dir: PathBuf, listen: &str, port: u16) -> Self {
        IscsiExports {
            dir,
            listen: listen.to_string(),
            port,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The daemon's management port: one of its own per exports
    /// directory, so two agents on one machine (or hosts in namespaces
    /// sharing `/run`) never reach each other's daemon.
    fn control_port(&self) -> u32 {
        let mut h: u32 = 2166136261;
        for b in self.dir.to_string_lossy().bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        // tgtd takes 0..=32767.
        1000 + h % 31000
    }

    fn portal(&self) -> String {
        if self.listen.contains(':') {
            format!("[{}]:{}", self.listen, self.port)
        } else {
            format!("{}:{}", self.listen, self.port)
        }
    }

    fn export_dir(&self, volume: &str, host: &str) -> PathBuf {
        self.dir.join(format!(
            "{}@{}",
            crate::nbd::safe(volume),
            crate::nbd::safe(host)
        ))
    }

    async fn tgtadm(&self, args: &[&str]) -> BResult<String> {
        let out = tokio::process::Command::new("tgtadm")
            .arg("-C")
            .arg(self.control_port().to_string())
            .args(["--lld", "iscsi"])
            .args(args)
            .output()
            .await
            .map_err(|e| format!("tgtadm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tgtadm {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The pid of this exports directory's `tgtd`, if it runs.
    fn daemon_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("tgtd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ctl = format!("\0{}\0", self.control_port());
        (cmdline.contains("tgtd") && cmdline.contains(&ctl)).then_some(pid)
    }

    fn records(&self) -> Vec<(PathBuf, Record)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().contains('@'))
            .filter_map(|e| {
                let raw = std::fs::read(e.path().join("target.json")).ok()?;
                Some((e.path(), serde_json::from_slice(&raw).ok()?))
            })
            .collect()
    }

    /// Starts `tgtd` if it does not run, and gives it back every target
    /// recorded (a daemon that died took them with it).
    async fn ensure_daemon(&self) -> BResult<()> {
        if self.daemon_pid().is_some() {
            return Ok(());
        }
        create_private_dir(&self.dir)?;
        let log = std::fs::File::create(self.dir.join("tgtd.log"))
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let err_log = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new("tgtd")
            .arg("-f")
            .arg("-C")
            .arg(self.control_port().to_string())
            .arg("--iscsi")
            .arg(format!("portal={}", self.portal()))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("tgtd: {e} (Debian's tgt package)"))?;
        let pid = child.id().unwrap_or(0);
        std::fs::write(self.dir.join("tgtd.pid"), pid.to_string())
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("tgtd.log")).unwrap_or_default();
                let _ = std::fs::remove_file(self.dir.join("tgtd.pid"));
                return Err(format!(
                    "tgtd on {} exited ({status}): {}",
                    self.portal(),
                    log.lines()
                        .filter(|l| !l.contains("RDMA") && !l.contains("can't adjust"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            if self
                .tgtadm(&["--mode", "target", "--op", "show"])
                .await
                .is_ok()
                && listening(&self.listen, self.port)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The daemon outlives this call (and the agent): reap it when it ends.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        if !ready {
            return Err(format!("tgtd on {} did not come up", self.portal()));
        }
        for (d, rec) in self.records() {
            if let Err(e) = self.setup_target(&rec).await {
                tracing::warn!(target = %rec.iqn, error = %e, "an export could not be restored; it is dropped");
                let _ = self.teardown_target(&rec).await;
                let _ = std::fs::remove_dir_all(d);
            }
        }
        Ok(())
    }

    async fn setup_target(&self, r: &Record) -> BResult<()> {
        let tid = r.tid.to_string();
        self.tgtadm(&[
            "--mode", "target", "--op", "new", "--tid", &tid, "-T", &r.iqn,
        ])
        .await?;
        self.tgtadm(&[
            "--mode",
            "logicalunit",
            "--op",
            "new",
            "--tid",
            &tid,
            "--lun",
            "1",
            "-b",
            &r.file,
        ])
        .await?;
        self.tgtadm(&[
            "--mode",
            "account",
            "--op",
            "new",
            "--user",
            &r.user,
            "--password",
            &r.password,
        ])
        .await?;
        self.tgtadm(&[
            "--mode", "account", "--op", "bind", "--tid", &tid, "--user", &r.user,
        ])
        .await?;
        self.tgtadm(&[
            "--mode", "target", "--op", "bind", "--tid", &tid, "-I", "ALL",
        ])
        .await?;
        Ok(())
    }

    /// Deletes the target (closing its sessions) and its account.
    async fn teardown_target(&self, r: &Record) -> BResult<()> {
        let tid = r.tid.to_string();
        let t = self
            .tgtadm(&[
                "--mode", "target", "--op", "delete", "--force", "--tid", &tid,
            ])
            .await;
        let a = self
            .tgtadm(&["--mode", "account", "--op", "delete", "--user", &r.user])
            .await;
        let gone = |r: BResult<String>| match r {
            Err(e) if !e.contains("can't find") && !e.contains("such") => Err(e),
            _ => Ok(()),
        };
        gone(t)?;
        gone(a)
    }

    /// Whether tgtd has target `tid` named `iqn`.
    async fn has_target(&self, tid: u32, iqn: &str) -> bool {
        self.tgtadm(&["--mode", "target", "--op", "show"])
            .await
            .map(|out| out.contains(&format!("Target {tid}: {iqn}\n")))
            .unwrap_or(false)
    }

    /// Opens `file` (a raw volume) to `host`: the connection info that
    /// host attaches with.
    pub async fn export(&self, volume: &str, file: &Path, host: &str) -> BResult<Value> {
        let _g = self.lock.lock().await;
        self.ensure_daemon().await?;
        let d = self.export_dir(volume, host);
        let existing: Option<Record> = std::fs::read(d.join("target.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok());
        if let Some(r) = &existing {
            if self.has_target(r.tid, &r.iqn).await {
                return Ok(self.info(volume, r));
            }
            // Half made before a crash: made again from nothing.
            let _ = self.teardown_target(r).await;
        }
        let tid = self
            .records()
            .iter()
            .map(|(_, r)| r.tid)
            .filter(|t| existing.as_ref().is_none_or(|e| e.tid != *t))
            .max()
            .unwrap_or(0)
            + 1;
        let rec = Record {
            tid,
            iqn: format!(
                "{IQN_PREFIX}volume-{}.{}",
                lower_safe(volume),
                lower_safe(host)
            ),
            user: format!("att{}", crate::nbd::random_hex(8)?),
            password: crate::nbd::random_hex(8)?,
            file: file.to_string_lossy().into_owned(),
        };
        create_private_dir(&d)?;
        write_private(
            &d.join("target.json"),
            &serde_json::to_vec(&rec).unwrap_or_default(),
        )?;
        if let Err(e) = self.setup_target(&rec).await {
            let _ = self.teardown_target(&rec).await;
            let _ = std::fs::remove_dir_all(&d);
            self.stop_if_idle().await;
            return Err(e);
        }
        Ok(self.info(volume, &rec))
    }

    /// Cinder's iSCSI connection info (with the file's format, which
    /// Nova's volume drivers read from `data.format`).
    fn info(&self, volume: &str, r: &Record) -> Value {
        json!({
            "driver_volume_type": "iscsi",
            "data": {"target_discovered": false, "target_portal": self.portal(),
                     "target_iqn": r.iqn, "target_lun": 1, "volume_id": volume,
                     "auth_method": "CHAP", "auth_username": r.user,
                     "auth_password": r.password, "encrypted": false, "format": "raw"}
        })
    }

    /// Closes `volume`'s export to `host` (idempotent); the daemon stops
    /// with the last export.
    pub async fn unexport(&self, volume: &str, host: &str) -> BResult<()> {
        let _g = self.lock.lock().await;
        let d = self.export_dir(volume, host);
        if let Ok(raw) = std::fs::read(d.join("target.json"))
            && let Ok(r) = serde_json::from_slice::<Record>(&raw)
            && self.daemon_pid().is_some()
        {
            self.teardown_target(&r).await?;
        }
        let _ = std::fs::remove_dir_all(&d);
        self.stop_if_idle().await;
        Ok(())
    }

    /// The volumes exported now, with the host each is open to.
    pub fn exported(&self) -> Vec<(String, String)> {
        self.records()
            .into_iter()
            .filter_map(|(d, _)| {
                let name = d.file_name()?.to_string_lossy().into_owned();
                let (v, h) = name.split_once('@')?;
                Some((v.to_string(), h.to_string()))
            })
            .collect()
    }

    /// Stops the daemon when no export is left (tgtd ignores SIGTERM while
    /// it has targets: it is taken offline and told to exit).
    async fn stop_if_idle(&self) {
        if !self.records().is_empty() {
            return;
        }
        let Some(pid) = self.daemon_pid() else {
            return;
        };
        let ctl = self.control_port().to_string();
        for args in [
            [
                "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
            ]
            .as_slice(),
            ["--op", "delete", "--mode", "system"].as_slice(),
        ] {
            let _ = tokio::process::Command::new("tgtadm")
                .arg("-C")
                .arg(&ctl)
                .args(args)
                .output()
                .await;
        }
        for _ in 0..100 {
            if self.daemon_pid().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.daemon_pid().is_some() {
            let _ = tokio::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .await;
        }
        let _ = std::fs::remove_file(self.dir.join("tgtd.pid"));
        for f in [format!("socket.{ctl}"), format!("socket.{ctl}.lock")] {
            let _ = std::fs::remove_file(Path::new("/run/tgtd").join(f));
        }
    }
}

fn listening(host: &str, port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &match format!("{host}:{port}").parse() {
            Ok(a) => a,
            Err(_) => match format!("[{host}]:{port}").parse() {
                Ok(a) => a,
                Err(_) => return false,
            },
        },
        Duration::from_millis(200),
    )
    .is_ok()
}

fn create_private_dir(d: &Path) -> BResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(|e| format!("{}: {e}", d.display()))
}

fn write_private(p: &Path, body: &[u8]) -> BResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::io::Write::write_all(&mut f, body).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, p).map_err(|e| format!("{}: {e}", p.display()))
}
