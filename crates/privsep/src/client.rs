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

    async fn metadata_socket(&self, network_id: &str) -> Result<std::net::TcpListener, String> {
        let cmd = crate::NetCommand::NetMetadataSocket {
            network: network_id.to_string(),
        };
        let socket = self.helper.socket.clone();
        tokio::task::spawn_blocking(move || receive_socket(&socket, &cmd))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn router_metadata_socket(
        &self,
        router_id: &str,
    ) -> Result<std::net::TcpListener, String> {
        let cmd = crate::NetCommand::NetRouterMetadataSocket {
            router: router_id.to_string(),
        };
        let socket = self.helper.socket.clone();
        tokio::task::spawn_blocking(move || receive_socket(&socket, &cmd))
            .await
            .map_err(|e| e.to_string())?
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

/// Sends `cmd` and reads the answer line with the socket it carries.
fn receive_socket(
    socket: &std::path::Path,
    cmd: &crate::NetCommand,
) -> Result<std::net::TcpListener, String> {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("the privileged helper at {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(cmd).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut listener = None;
    while !reply.contains(&b'\n') {
        let mut buf = [0u8; 4096];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &stream,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| format!("the privileged helper's answer: {e}"))?;
        for msg in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = msg {
                for fd in fds {
                    listener.get_or_insert(std::net::TcpListener::from(fd));
                }
            }
        }
        if got.bytes == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..got.bytes]);
    }
    let v: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|_| "the privileged helper closed the connection".to_string())?;
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_string());
    }
    let l = listener.ok_or("the privileged helper sent no socket")?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
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

/// iSCSI targets made by the privileged helper: the volume agent's in a
/// service without root.
pub struct HelperIscsi {
    helper: HelperClient,
}

impl HelperIscsi {
    pub fn new(helper: HelperClient) -> HelperIscsi {
        HelperIscsi { helper }
    }

    async fn request(&self, cmd: &crate::VolCommand) -> Result<serde_json::Value, String> {
        match tokio::time::timeout(LIMIT, self.helper.request(cmd)).await {
            Ok(r) => r,
            Err(_) => Err("the privileged helper did not answer within 60 s".into()),
        }
    }
}

#[async_trait::async_trait]
impl ferro_voldriver::iscsi::IscsiTargets for HelperIscsi {
    /// The helper opens its own `volume-<id>`, not a path it is sent.
    async fn export(
        &self,
        volume: &str,
        _file: &std::path::Path,
        host: &str,
    ) -> Result<serde_json::Value, String> {
        let v = self
            .request(&crate::VolCommand::IscsiExport {
                volume: volume.to_string(),
                host: host.to_string(),
            })
            .await?;
        Ok(v["info"].clone())
    }
    async fn unexport(&self, volume: &str, host: &str) -> Result<(), String> {
        self.request(&crate::VolCommand::IscsiUnexport {
            volume: volume.to_string(),
            host: host.to_string(),
        })
        .await
        .map(|_| ())
    }
    async fn exported(&self) -> Vec<(String, String)> {
        match self.request(&crate::VolCommand::IscsiExported).await {
            Ok(v) => serde_json::from_value(v["exported"].clone()).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("the iSCSI exports, from the privileged helper: {e}");
                Vec::new()
            }
        }
    }
}
