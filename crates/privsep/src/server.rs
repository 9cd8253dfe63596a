//! The helper's side: accepts connections from the service's uid (and
//! root) only, reads one command, checks and runs it, answers.
use crate::{NetCommand, Request, VolCommand};
use ferro_netdriver::HostDriver;
use ferro_virt::qemu::privileged::{HostCommand, Privileged};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// This host's iSCSI targets of the volumes in `volumes_dir`.
pub struct IscsiHost {
    pub exports: ferro_voldriver::iscsi::IscsiExports,
    pub volumes_dir: std::path::PathBuf,
}

/// Serves `host` (and `net`, the host's network driver, and `iscsi`, its
/// volumes' iSCSI targets, if it has them) on `listener` for processes of
/// `allowed_uid` until the listener fails.
pub async fn serve(
    listener: UnixListener,
    host: Arc<dyn Privileged>,
    net: Option<Arc<dyn HostDriver>>,
    iscsi: Option<Arc<IscsiHost>>,
    allowed_uid: u32,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("privileged helper: accepting a connection: {e}");
                return;
            }
        };
        let peer = stream.peer_cred().ok().map(|c| c.uid());
        if !peer.is_some_and(|u| u == allowed_uid || u == 0) {
            tracing::warn!(
                ?peer,
                "privileged helper: refused a connection from another user"
            );
            continue;
        }
        let host = host.clone();
        let net = net.clone();
        let iscsi = iscsi.clone();
        tokio::spawn(async move {
            if let Err(e) = one(stream, host.as_ref(), net.as_deref(), iscsi.as_deref()).await {
                tracing::warn!("privileged helper: {e}");
            }
        });
    }
}

/// The answer to a request for a socket, which goes with it in `fd`.
fn socket_reply(
    r: Result<std::net::TcpListener, String>,
    fd: &mut Option<std::net::TcpListener>,
) -> serde_json::Value {
    match r {
        Ok(l) => {
            *fd = Some(l);
            serde_json::json!({"ok": true})
        }
        Err(e) => serde_json::json!({"error": e}),
    }
}

fn not_linuxbridge() -> serde_json::Value {
    serde_json::json!({
        "error": "privileged command refused: this host's network driver is not linuxbridge"
    })
}

/// A volume id the helper names a file with, and a host a target with.
fn plain_name(s: &str) -> Result<&str, String> {
    if !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
    {
        Ok(s)
    } else {
        Err(format!("privileged command refused: a bad name {s:?}"))
    }
}

async fn volume_command(cmd: VolCommand, iscsi: Option<&IscsiHost>) -> serde_json::Value {
    let Some(i) = iscsi else {
        return serde_json::json!({
            "error": "privileged command refused: this host does not export volumes over iSCSI"
        });
    };
    let r = match cmd {
        VolCommand::IscsiExport { volume, host } => {
            match plain_name(&volume).and_then(|_| plain_name(&host)) {
                Ok(_) => {
                    let file = i.volumes_dir.join(format!("volume-{volume}"));
                    if file.is_file() {
                        i.exports
                            .export(&volume, &file, &host)
                            .await
                            .map(|info| serde_json::json!({"ok": true, "info": info}))
                    } else {
                        Err(format!(
                            "volume {volume} is not in {}",
                            i.volumes_dir.display()
                        ))
                    }
                }
                Err(e) => Err(e),
            }
        }
        VolCommand::IscsiUnexport { volume, host } => {
            match plain_name(&volume).and_then(|_| plain_name(&host)) {
                Ok(_) => i
                    .exports
                    .unexport(&volume, &host)
                    .await
                    .map(|()| serde_json::json!({"ok": true})),
                Err(e) => Err(e),
            }
        }
        VolCommand::IscsiExported => {
            Ok(serde_json::json!({"ok": true, "exported": i.exports.exported()}))
        }
    };
    r.unwrap_or_else(|e| {
        tracing::warn!("privileged helper: iSCSI: {e}");
        serde_json::json!({"error": e})
    })
}

async fn one(
    stream: UnixStream,
    host: &dyn Privileged,
    net: Option<&dyn HostDriver>,
    iscsi: Option<&IscsiHost>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(crate::MAX_REQUEST as u64))
        .read_line(&mut line)
        .await?;
    let mut fd: Option<std::net::TcpListener> = None;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Net(NetCommand::NetMetadataSocket { network })) => match net {
            Some(d) => socket_reply(d.metadata_socket(&network).await, &mut fd),
            None => not_linuxbridge(),
        },
        Ok(Request::Net(NetCommand::NetRouterMetadataSocket { router })) => match net {
            Some(d) => socket_reply(d.router_metadata_socket(&router).await, &mut fd),
            None => not_linuxbridge(),
        },
        Ok(Request::Net(NetCommand::NetApply { state })) => match net {
            Some(d) => match d.apply(&state).await {
                Ok(up) => serde_json::json!({"ok": true, "up": up}),
                Err(e) => {
                    tracing::warn!("privileged helper: network: {e}");
                    serde_json::json!({"error": e})
                }
            },
            None => not_linuxbridge(),
        },
        Ok(Request::Net(NetCommand::NetDevices)) => match net {
            Some(d) => match d.devices().await {
                Ok(devices) => serde_json::json!({"ok": true, "devices": devices}),
                Err(e) => serde_json::json!({"error": e}),
            },
            None => not_linuxbridge(),
        },
        Ok(Request::Vol(cmd)) => volume_command(cmd, iscsi).await,
        Ok(Request::Host(cmd)) => {
            let what = describe(&cmd);
            match host.run(cmd).await {
                Ok(()) => {
                    tracing::debug!(command = %what, "privileged helper: done");
                    serde_json::json!({"ok": true})
                }
                Err(e) => {
                    tracing::warn!(command = %what, "privileged helper: {e}");
                    serde_json::json!({"error": e.to_string()})
                }
            }
        }
        Err(e) => serde_json::json!({"error": format!("privileged command refused: {e}")}),
    };
    let mut out = reply.to_string().into_bytes();
    out.push(b'\n');
    match fd {
        // The answer carries the socket: one sendmsg with SCM_RIGHTS.
        Some(l) => {
            use std::os::fd::AsFd;
            w.as_ref().writable().await?;
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            let fds = [l.as_fd()];
            control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
            rustix::net::sendmsg(
                w.as_ref(),
                &[std::io::IoSlice::new(&out)],
                &mut control,
                rustix::net::SendFlags::empty(),
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        }
        None => w.write_all(&out).await,
    }
}

/// A command for the log, without its QEMU arguments.
fn describe(cmd: &HostCommand) -> String {
    match cmd {
        HostCommand::Launch { uuid, uid, .. } => format!("launch {uuid} as {uid:?}"),
        other => format!("{other:?}"),
    }
}
