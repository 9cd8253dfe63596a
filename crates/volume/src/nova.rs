//! What Compute calls, in process: the attachment steps of Nova's attach
//! and detach workflows (reserve, connect, complete, release), and the
//! volumes a block device mapping creates or deletes. Compute owns the
//! sagas; every call here is one atomic change, idempotent where an undo
//! may repeat it.
use crate::VolumeService;
use crate::error::{CResult, CinderError};
use crate::http::attachments;
use crate::store::{Kind, s};
use serde_json::{Map, Value, json};
use std::time::Duration;

impl VolumeService {
    /// The volume if `project` (or an admin) may use it.
    pub fn nova_volume(&self, project: &str, admin: bool, id: &str) -> Option<Value> {
        let st = self.store.read();
        let v = st.get(Kind::Volume, id)?;
        if !admin && s(v, "project_id") != project {
            return None;
        }
        Some(Value::Object((**v).clone()))
    }

    /// Creates an attachment of `volume` for `instance` (volume `reserved`):
    /// 400 unless the volume may be attached. Returns the attachment id.
    pub async fn nova_reserve(
        &self,
        project: &str,
        admin: bool,
        volume: &str,
        instance: &str,
    ) -> CResult<String> {
        if self.nova_volume(project, admin, volume).is_none() {
            return Err(CinderError::volume_not_found(volume));
        }
        let a = self
            .store
            .write(|tx| attachments::reserve(tx, volume, Some(instance), "rw"))
            .await?;
        Ok(s(&a, "id").to_string())
    }

    /// Records the compute host's connector and returns the connection info.
    pub async fn nova_connect(&self, attachment: &str, host: &str, device: &str) -> CResult<Value> {
        let mut conn = Map::new();
        conn.insert("host".into(), json!(host));
        conn.insert("mountpoint".into(), json!(device));
        let a = attachments::connect(self, attachment, &conn).await?;
        Ok(a.get("connection_info").cloned().unwrap_or(Value::Null))
    }

    /// The attachment is in use (volume `in-use`).
    pub async fn nova_complete(&self, attachment: &str, device: &str, host: &str) -> CResult<()> {
        self.store
            .write(|tx| attachments::complete(tx, attachment, Some(device), Some(host)))
            .await
    }

    /// Deletes the attachment; the volume is `available` when none is left.
    /// Releasing what is already gone succeeds.
    pub async fn nova_release(&self, attachment: &str) -> CResult<()> {
        let gone = self
            .store
            .write(|tx| {
                if tx.get(Kind::Attachment, attachment).is_none() {
                    return Ok(None);
                }
                attachments::detach(tx, attachment).map(Some)
            })
            .await?;
        attachments::release(self, &gone.into_iter().collect::<Vec<_>>()).await;
        Ok(())
    }

    /// Marks an in-use volume `detaching` (rolled back by `nova_roll_detaching`).
    pub async fn nova_begin_detaching(&self, volume: &str) -> CResult<()> {
        self.store
            .update(Kind::Volume, volume, |v| {
                if s(v, "status") == "in-use" {
                    v.insert("status".into(), json!("detaching"));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    pub async fn nova_roll_detaching(&self, volume: &str) -> CResult<()> {
        match self
            .store
            .update(Kind::Volume, volume, |v| {
                if s(v, "status") == "detaching" {
                    v.insert("status".into(), json!("in-use"));
                }
                Ok(())
            })
            .await
        {
            Err(e) if e.code == 404 => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Waits until the volume leaves its transitional status: Ok when it
    /// is `available`, an error when it failed or does not exist.
    pub async fn nova_wait_available(&self, id: &str, timeout: Duration) -> CResult<()> {
        let t0 = std::time::Instant::now();
        loop {
            let status = self
                .store
                .read()
                .get(Kind::Volume, id)
                .map(|v| s(v, "status").to_string());
            match status.as_deref() {
                Some("available") => return Ok(()),
                None => return Err(CinderError::volume_not_found(id)),
                Some(st) if st.starts_with("error") => {
                    return Err(CinderError::bad(format!(
                        "Volume {id} did not finish being created: status {st}."
                    )));
                }
                _ => {}
            }
            if t0.elapsed() > timeout {
                return Err(CinderError::conflict(format!(
                    "Volume {id} is still {} after {}s.",
                    status.unwrap_or_default(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes a volume Compute created (delete_on_termination, or the undo
    /// of a failed boot): its attachments go first. Gone already is fine.
    pub async fn nova_delete(self: &std::sync::Arc<Self>, id: &str) -> CResult<()> {
        let exists = self
            .store
            .write(|tx| {
                let Some(mut v) = tx.get(Kind::Volume, id) else {
                    return Ok(false);
                };
                if s(&v, "status") == "deleting" {
                    return Ok(false);
                }
                let atts: Vec<String> = tx
                    .st
                    .attachments_of(id)
                    .map(|a| s(a, "id").to_string())
                    .collect();
                for a in atts {
                    tx.del(Kind::Attachment, &a);
                }
                if tx.st.snapshots_of(id).next().is_some() {
                    // Snapshots keep it: Nova leaves such a volume behind.
                    v.insert("status".into(), json!("available"));
                    tx.put(Kind::Volume, v);
                    return Ok(false);
                }
                v.insert("status".into(), json!("deleting"));
                tx.put(Kind::Volume, v);
                Ok(true)
            })
            .await?;
        if exists {
            crate::flows::spawn(self, crate::flows::DELETE, json!({"id": id}));
        }
        Ok(())
    }
}
