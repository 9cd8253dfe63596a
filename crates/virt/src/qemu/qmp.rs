//! A QMP client (QEMU's JSON machine protocol over the guest's unix
//! socket): the greeting, `qmp_capabilities`, then one command at a time.
//! Asynchronous events that arrive meanwhile are skipped. Every read has a
//! deadline, so a wedged QEMU is an error, not a hang.
use crate::VirtError;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

fn failed(what: impl std::fmt::Display) -> VirtError {
    VirtError::Failed(format!("QMP: {what}"))
}

impl Qmp {
    /// Connects to `socket`, reads the greeting and negotiates capabilities.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, VirtError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| failed(format!("connecting to {}: timed out", socket.display())))?
            .map_err(|e| failed(format!("connecting to {}: {e}", socket.display())))?;
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            timeout,
        };
        let greeting = q.read().await?;
        if greeting.get("QMP").is_none() {
            return Err(failed(format!("unexpected greeting {greeting}")));
        }
        q.execute("qmp_capabilities", None).await?;
        Ok(q)
    }

    async fn read(&mut self) -> Result<Value, VirtError> {
        let mut line = String::new();
        let n = tokio::time::timeout(self.timeout, self.reader.read_line(&mut line))
            .await
            .map_err(|_| failed("no answer in time"))?
            .map_err(failed)?;
        if n == 0 {
            return Err(failed("QEMU closed the connection"));
        }
        serde_json::from_str(&line).map_err(|e| failed(format!("{e}: {line}")))
    }

    /// Runs `command` and returns its `return` value (QMP errors as `Failed`).
    pub async fn execute(
        &mut self,
        command: &str,
        args: Option<Value>,
    ) -> Result<Value, VirtError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(failed)?;
        loop {
            let v = self.read().await?;
            if v.get("event").is_some() {
                // Asynchronous events (SHUTDOWN, STOP...) are not answers.
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(failed(format!(
                    "{command}: {}",
                    e.get("desc").and_then(Value::as_str).unwrap_or("error")
                )));
            }
        }
    }

    /// Whether the device `id` is on the machine (`/machine/peripheral`).
    pub async fn has_device(&mut self, id: &str) -> Result<bool, VirtError> {
        let list = self
            .execute("qom-list", Some(json!({"path": "/machine/peripheral"})))
            .await?;
        Ok(list
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["name"] == id)))
    }

    /// Removes the device `id`: `device_del`, asked again every `interval`
    /// until the guest releases it or `attempts` run out (Nova's detach
    /// retries); whether it is gone.
    pub async fn remove_device(
        &mut self,
        id: &str,
        attempts: u32,
        interval: std::time::Duration,
    ) -> Result<bool, VirtError> {
        let mut gone = !self.has_device(id).await?;
        let mut n = 0;
        while !gone && n < attempts {
            n += 1;
            // A second device_del while one is pending is refused; that is fine.
            let _ = self.execute("device_del", Some(json!({"id": id}))).await;
            let until = tokio::time::Instant::now() + interval;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if !self.has_device(id).await? {
                    gone = true;
                    break;
                }
            }
        }
        Ok(gone)
    }

    /// QEMU's run state (`running`, `paused`, `shutdown`, `inmigrate`...).
    pub async fn status(&mut self) -> Result<String, VirtError> {
        let s = self.execute("query-status", None).await?;
        Ok(s["status"].as_str().unwrap_or_default().to_string())
    }
}
