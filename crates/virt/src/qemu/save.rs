//! libvirt's managed save without a shell: the guest's memory streams over
//! a unix socket between QEMU and the agent, which writes it to (or reads
//! it from) `state.save`. QEMU's `exec:` migration cannot be used: it
//! spawns a process, which the seccomp sandbox forbids; and the guest's
//! uid may not write in the agent's part of the guest directory.
use super::qmp::Qmp;
use crate::VirtError;
use std::path::Path;
use std::time::Duration;

/// Sockets in the guest's `run/` directory.
pub const SAVE_SOCKET: &str = "save.sock";
pub const RESTORE_SOCKET: &str = "restore.sock";

/// How long saving or restoring a guest's memory may take.
const LIMIT: Duration = Duration::from_secs(600);

fn failed(what: &str, e: impl std::fmt::Display) -> VirtError {
    VirtError::Failed(format!("{what}: {e}"))
}

/// Stops the guest and writes its memory to `dest` (through `dest.part`,
/// renamed when complete). On failure the guest runs again.
pub async fn save(
    q: &mut Qmp,
    dir: &Path,
    owner: super::Owner<'_>,
    dest: &Path,
) -> Result<(), VirtError> {
    let sock = dir.join("run").join(SAVE_SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .map_err(|e| failed(&sock.display().to_string(), e))?;
    if let Some((host, uid)) = owner {
        let path = sock.clone();
        host.run(super::HostCommand::HandOver { path, uid }).await?;
    }
    let tmp = dest.with_extension("save.part");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| failed(&tmp.display().to_string(), e))?;
    let copier = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await?;
        let n = tokio::io::copy(&mut conn, &mut file).await?;
        file.sync_all().await?;
        Ok::<u64, std::io::Error>(n)
    });
    let r = async {
        q.execute("stop", None).await?;
        let uri = format!("unix:{}", super::cache::path_str(&sock)?);
        q.execute("migrate", Some(serde_json::json!({ "uri": uri })))
            .await?;
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let m = q.execute("query-migrate", None).await?;
            match m["status"].as_str().unwrap_or("") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(VirtError::Failed(format!(
                        "saving the guest's memory failed: {}",
                        m["error-desc"].as_str().unwrap_or("unknown")
                    )));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    let _ = q.execute("migrate_cancel", None).await;
                    return Err(VirtError::Failed(
                        "saving the guest's memory timed out".into(),
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    .await;
    let copied = match r {
        Ok(()) => match tokio::time::timeout(Duration::from_secs(60), copier).await {
            Ok(Ok(Ok(n))) => Ok(n),
            Ok(Ok(Err(e))) => Err(failed("writing the guest's memory", e)),
            Ok(Err(e)) => Err(failed("writing the guest's memory", e)),
            Err(_) => Err(VirtError::Failed(
                "writing the guest's memory did not finish".into(),
            )),
        },
        Err(e) => {
            copier.abort();
            Err(e)
        }
    };
    let _ = std::fs::remove_file(&sock);
    match copied {
        Ok(_) => std::fs::rename(&tmp, dest).map_err(|e| failed(&dest.display().to_string(), e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = q.execute("cont", None).await;
            Err(e)
        }
    }
}

/// Feeds `src` to a QEMU started with `-incoming defer` and waits until
/// the guest runs.
pub async fn restore(q: &mut Qmp, dir: &Path, src: &Path) -> Result<(), VirtError> {
    let sock = dir.join("run").join(RESTORE_SOCKET);
    let uri = format!("unix:{}", super::cache::path_str(&sock)?);
    q.execute("migrate-incoming", Some(serde_json::json!({ "uri": uri })))
        .await?;
    let mut conn = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| failed(&sock.display().to_string(), e))?;
    let mut file = tokio::fs::File::open(src)
        .await
        .map_err(|e| failed(&src.display().to_string(), e))?;
    tokio::time::timeout(LIMIT, tokio::io::copy(&mut file, &mut conn))
        .await
        .map_err(|_| VirtError::Failed("restoring the guest's memory timed out".into()))?
        .map_err(|e| failed("restoring the guest's memory", e))?;
    drop(conn);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match q.status().await?.as_str() {
            "running" => return Ok(()),
            "inmigrate" | "prelaunch" | "restore-vm" | "finish-migrate" => {}
            // The guest was stopped for the save: it runs again now.
            "paused" | "postmigrate" => {
                let _ = q.execute("cont", None).await;
            }
            other => {
                return Err(VirtError::Failed(format!(
                    "restoring the guest's memory: QEMU is {other}"
                )));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(VirtError::Failed("restoring the guest timed out".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
