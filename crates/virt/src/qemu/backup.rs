//! A running guest's root disk copied for `createImage`, backup and shelve
//! without stopping it, as Nova's live snapshot does: QEMU's
//! `blockdev-backup` (`sync=full`) into a new standalone qcow2 gives the
//! disk as it was when the job started (copy-before-write), while the guest
//! runs on. Zeroes stay holes. The copy streams through QEMU, never through
//! ferrostack's memory; the agent then streams the file to the Image service.
use super::qmp::Qmp;
use crate::VirtError;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const JOB: &str = "ferrostack-snapshot";
const NODE: &str = "ferrostack-snapshot-target";
/// How long a copy may take.
const LIMIT: Duration = Duration::from_secs(3600);

pub struct Backup<'a> {
    /// The guest's directory (the target is made there, where its QEMU may
    /// open it) and the uid its QEMU runs as.
    pub dir: &'a Path,
    pub owner: super::Owner<'a>,
    /// QEMU's name of the disk: a drive (`drive0`, `drive1` when rescued)
    /// or a block node (`vol-vdb`, a hot-plugged volume).
    pub drive: &'a str,
    pub qemu_img: &'a str,
    pub dest: &'a Path,
}

pub async fn run(q: &mut Qmp, b: &Backup<'_>) -> Result<(), VirtError> {
    // The disk's size, as QEMU sees it.
    let blocks = q.execute("query-block", None).await?;
    let by_drive = blocks
        .as_array()
        .and_then(|a| a.iter().find(|d| d["device"] == b.drive))
        .and_then(|d| d["inserted"]["image"]["virtual-size"].as_u64());
    let virtual_size = match by_drive {
        Some(v) => Some(v),
        None => q
            .execute("query-named-block-nodes", Some(json!({"flat": true})))
            .await?
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node-name"] == b.drive))
            .and_then(|n| n["image"]["virtual-size"].as_u64()),
    }
    .ok_or_else(|| VirtError::Failed(format!("QEMU has no disk {}", b.drive)))?;
    let target = b.dir.join("snapshot.part");
    let _ = std::fs::remove_file(&target);
    let t = super::cache::path_str(&target)?;
    super::run(
        b.qemu_img,
        &["create", "-q", "-f", "qcow2", &t, &virtual_size.to_string()],
    )
    .await?;
    if let Some((host, uid)) = b.owner {
        let path = target.clone();
        host.run(super::HostCommand::HandOver { path, uid }).await?;
    }
    // A job left by an agent that died during a copy goes first.
    let _ = q.execute("job-cancel", Some(json!({"id": JOB}))).await;
    let _ = q.execute("job-dismiss", Some(json!({"id": JOB}))).await;
    let _ = q
        .execute("blockdev-del", Some(json!({"node-name": NODE})))
        .await;
    q.execute(
        "blockdev-add",
        Some(json!({
            "driver": "qcow2",
            "node-name": NODE,
            "discard": "unmap",
            "detect-zeroes": "unmap",
            "file": {"driver": "file", "filename": t},
        })),
    )
    .await?;
    let r = copy(q, b.drive).await;
    let _ = q
        .execute("blockdev-del", Some(json!({"node-name": NODE})))
        .await;
    if let Err(e) = r {
        let _ = std::fs::remove_file(&target);
        return Err(e);
    }
    if let Some((host, uid)) = b.owner {
        let path = target.clone();
        if let Err(e) = host.run(super::HostCommand::TakeBack { path, uid }).await {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
    }
    if std::fs::rename(&target, b.dest).is_err() {
        // Another filesystem: copy, then remove.
        let r = std::fs::copy(&target, b.dest);
        let _ = std::fs::remove_file(&target);
        r.map_err(|e| VirtError::Failed(format!("{}: {e}", b.dest.display())))?;
    }
    Ok(())
}

async fn copy(q: &mut Qmp, drive: &str) -> Result<(), VirtError> {
    q.execute(
        "blockdev-backup",
        Some(json!({
            "job-id": JOB,
            "device": drive,
            "target": NODE,
            "sync": "full",
            "auto-dismiss": false,
        })),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let jobs = q.execute("query-jobs", None).await?;
        let job = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == JOB))
            .cloned()
            .ok_or_else(|| VirtError::Failed("the disk copy job vanished".into()))?;
        if job["status"] == "concluded" {
            let _ = q.execute("job-dismiss", Some(json!({"id": JOB}))).await;
            return match job["error"].as_str() {
                Some(e) => Err(VirtError::Failed(format!("copying the guest's disk: {e}"))),
                None => Ok(()),
            };
        }
        if tokio::time::Instant::now() > deadline {
            let _ = q.execute("job-cancel", Some(json!({"id": JOB}))).await;
            return Err(VirtError::Failed(
                "copying the guest's disk timed out".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
