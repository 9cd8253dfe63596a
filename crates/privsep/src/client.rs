//! The service's side: each command is one connection to the helper, one
//! JSON line out and one back (`{"ok":true}` or `{"error":"..."}`).
use ferro_virt::VirtError;
use ferro_virt::qemu::privileged::{HostCommand, Privileged};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long a command may take in the helper (a cgroup's last processes
/// get up to 5 s to go; taps and launches take milliseconds).
const LIMIT: Duration = Duration::from_secs(60);

pub struct HelperClient {
    socket: PathBuf,
}

impl HelperClient {
    pub fn new(socket: impl Into<PathBuf>) -> HelperClient {
        HelperClient {
            socket: socket.into(),
        }
    }

    /// The helper named by the environment (`SOCKET_ENV`), if any.
    pub fn from_env() -> Option<HelperClient> {
        std::env::var_os(crate::SOCKET_ENV)
            .filter(|s| !s.is_empty())
            .map(HelperClient::new)
    }

    async fn call(&self, cmd: &HostCommand) -> Result<(), String> {
        self.request(cmd).await.map(|_| ())
    }

    /// Sends one request line; the helper's answer when it is not an error.
    async fn request<T: serde::Serialize>(&self, cmd: &T) -> Result<serde_json::Value, String> {
        let mut line = serde_json::to_vec(cmd).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("the privileged helper at {}: {e}", self.socket.display()))?;
        let (r, mut w) = stream.into_split();
        w.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(r)
            .read_line(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&reply)
            .map_err(|_| "the privileged helper closed the connection".to_string())?;
        match v["error"].as_str() {
            Some(e) => Err(e.to_string()),
            None if v["ok"] == true => Ok(v),
            None => Err(format!("the privileged helper answered {reply}")),
        }
    }
}

/// The host's network data plane built by the privileged helper: the
/// network agent's driver in a service without root.
pub struct HelperNetDriver {
    helper: HelperClient,
}

impl HelperNetDriver {
    pub fn new(helper: HelperClient) -> HelperNetDriver {
        HelperNetDriver { helper }
    }
}

#[async_trait::async_trait]
impl ferro_netdriver::HostDriver for HelperNetDriver {
    fn name(&self) -> &'static str {
        "linuxbridge"
    }

    async fn apply(&self, desired: &ferro_netdriver::HostState) -> Result<Vec<String>, String> {
        let cmd = crate::NetCommand::NetApply {
            state: desired.clone(),
        };
        let v = match tokio::time::timeout(LIMIT, self.helper.request(&cmd)).await {
            Ok(r) => r?,
            Err(_) => return Err("the privileged helper did not answer within 60 s".into()),
        };
        serde_json::from_value(v["up"].clone())
            .map_err(|e| format!("the privileged helper's answer: {e}"))
    }

    async fn devices(&self) -> Result<ferro_netdriver::Devices, String> {
        let v =
            match tokio::time::timeout(LIMIT, self.helper.request(&crate::NetCommand::NetDevices))
                .await
            {
                Ok(r) => r?,
                Err(_) => return Err("the privileged helper did not answer within 60 s".into()),
            };
        serde_json::from_value(v["devices"].clone())
            .map_err(|e| format!("the privileged helper's answer: {e}"))
    }
}

#[async_trait::async_trait]
impl Privileged for HelperClient {
    fn confines(&self) -> bool {
        true
    }

    async fn run(&self, cmd: HostCommand) -> Result<(), VirtError> {
        match tokio::time::timeout(LIMIT, self.call(&cmd)).await {
            Ok(r) => r.map_err(VirtError::Failed),
            Err(_) => Err(VirtError::Failed(
                "the privileged helper did not answer within 60 s".into(),
            )),
        }
    }
}
