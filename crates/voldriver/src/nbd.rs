//! Volumes exported to other hosts over NBD with TLS and a pre-shared key
//! per attachment: one `qemu-storage-daemon` per (volume, host) serves the
//! volume's file, decoded (a qcow2 volume is read as raw by the client),
//! on `listen` and a port of its own, and admits only a client that proves
//! the key it was given with the connection info. `unexport` stops it and
//! forgets the key, so the export is gone after detach.
//!
//! Each export keeps a directory `<exports>/<volume>@<host>/` holding the
//! key (`keys.psk`, 0600, as QEMU's `tls-creds-psk` reads it), the
//! daemon's pid file and the connection info it answered, so exporting
//! again is idempotent and an agent restarted later finds and stops it.
use crate::BResult;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct NbdExports {
    /// Where the exports' directories live.
    pub dir: PathBuf,
    /// The address the daemons listen on and clients connect to.
    pub listen: String,
}

/// A name a file system and QEMU accept for a host name.
pub(crate) fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn random_hex(bytes: usize) -> BResult<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The pid in `pidfile` if it is a `qemu-storage-daemon` serving `dir`
/// (never another process that reused the pid).
fn daemon_pid(pidfile: &Path, dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.contains("qemu-storage-daemon") && cmdline.contains(&*dir.to_string_lossy()))
        .then_some(pid)
}

impl NbdExports {
    fn export_dir(&self, volume: &str, host: &str) -> PathBuf {
        self.dir.join(format!("{}@{}", safe(volume), safe(host)))
    }

    /// Opens `file` (of `format`) to `host`: the connection info that host
    /// attaches with.
    pub async fn export(
        &self,
        volume: &str,
        file: &Path,
        format: &str,
        host: &str,
    ) -> BResult<Value> {
        let d = self.export_dir(volume, host);
        let pidfile = d.join("pid");
        if daemon_pid(&pidfile, &d).is_some()
            && let Ok(raw) = std::fs::read(d.join("connection.json"))
            && let Ok(v) = serde_json::from_slice::<Value>(&raw)
        {
            return Ok(v);
        }
        self.stop(&d).await;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let identity = format!("att-{}", random_hex(6)?);
        let key = random_hex(32)?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(d.join("keys.psk"))
                .map_err(|e| format!("{}: {e}", d.display()))?;
            std::io::Write::write_all(&mut f, format!("{identity}:{key}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        // A free port on the listening address (the daemon binds it at once).
        let port = std::net::TcpListener::bind((self.listen.as_str(), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a port on {}: {e}", self.listen))?
            .port();
        let fmt = if format == "raw" { "raw" } else { "qcow2" };
        let out = tokio::process::Command::new("qemu-storage-daemon")
            .arg("--object")
            .arg(format!(
                "tls-creds-psk,id=tls0,endpoint=server,dir={}",
                d.display()
            ))
            .arg("--blockdev")
            .arg(
                json!({"driver": "file", "node-name": "file", "filename": file.to_string_lossy()})
                    .to_string(),
            )
            .arg("--blockdev")
            .arg(json!({"driver": fmt, "node-name": "vol", "file": "file"}).to_string())
            .arg("--nbd-server")
            .arg(
                json!({"addr": {"type": "inet", "host": self.listen, "port": port.to_string()},
                       "tls-creds": "tls0"})
                .to_string(),
            )
            .arg("--export")
            .arg(
                json!({"type": "nbd", "id": "exp", "node-name": "vol", "name": volume,
                       "writable": true})
                .to_string(),
            )
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--daemonize")
            .output()
            .await
            .map_err(|e| format!("qemu-storage-daemon: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&d);
            return Err(format!(
                "qemu-storage-daemon: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let info = json!({
            "driver_volume_type": "nbd",
            "data": {"host": self.listen, "port": port, "export_name": volume,
                     "volume_id": volume, "format": "raw",
                     "tls_psk_identity": identity, "tls_psk_key": key}
        });
        std::fs::write(d.join("connection.json"), info.to_string())
            .map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(info)
    }

    /// Closes `volume`'s export to `host` (idempotent).
    pub async fn unexport(&self, volume: &str, host: &str) -> BResult<()> {
        self.stop(&self.export_dir(volume, host)).await;
        Ok(())
    }

    /// The volumes exported now, with the host each is open to.
    pub fn exported(&self) -> Vec<(String, String)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (v, h) = name.split_once('@')?;
                daemon_pid(&e.path().join("pid"), &e.path()).map(|_| (v.to_string(), h.to_string()))
            })
            .collect()
    }

    /// Stops the export's daemon and removes its directory and key.
    async fn stop(&self, d: &Path) {
        if let Some(pid) = daemon_pid(&d.join("pid"), d) {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = std::fs::remove_dir_all(d);
    }
}
