//! Privilege separation, as oslo.privsep gives Nova and Neutron: started as
//! root, `ferrostack serve` becomes a small privileged helper and runs the
//! service itself (every HTTP API, the agents, the console proxy) as an
//! unprivileged system user. The service asks the helper for what needs
//! root through the QEMU driver's narrow, typed `HostCommand`s, the network
//! agent's `NetCommand`s and the volume agent's `VolCommand`s (iSCSI
//! targets), one JSON line per request over a unix socket that only the
//! service's uid (and root) may use; the helper checks each command before
//! it runs it.
//!
//! - `client`: the service's side, a `Privileged` that sends commands.
//! - `server`: the helper's side, which receives, checks and runs them.
//! - `supervise`: the root process: the service user, the ownership of the
//!   state directories, the socket, and the service's process.
pub mod client;
pub mod server;
pub mod supervise;

pub use client::{HelperClient, HelperIscsi, HelperNetDriver};
pub use supervise::{bind_to_helper, separates, supervise};

/// Set in the service's environment: the helper's socket.
pub const SOCKET_ENV: &str = "FERROSTACK_PRIVSEP_SOCKET";

/// Set in the service's environment: the helper's pid.
pub const PARENT_ENV: &str = "FERROSTACK_PRIVSEP_PARENT";

/// The longest request line the helper reads.
pub const MAX_REQUEST: usize = 1 << 20;

/// The network agent's privileged command: converge this host's network
/// data plane (bridges, taps, DHCP namespaces and dnsmasq) to `state`. The
/// helper's Linux bridge driver builds only what it may (ids safe in names,
/// MACs and addresses that parse), in the namespace and state directory of
/// the helper's own configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NetCommand {
    NetApply {
        state: ferro_netdriver::HostState,
    },
    /// The devices of the host's namespace (the agent watches guests' taps).
    NetDevices,
    /// A socket listening on 169.254.169.254:80 inside the network's DHCP
    /// namespace, passed to the service (SCM_RIGHTS) for its metadata
    /// service: only root may enter a namespace and bind port 80.
    NetMetadataSocket {
        network: String,
    },
    /// A socket listening on the metadata port inside the router's
    /// namespace, passed to the service as `NetMetadataSocket`'s is.
    NetRouterMetadataSocket {
        router: String,
    },
}

/// The volume agent's privileged commands: iSCSI targets of this host's
/// volumes (`tgtd` and its management socket need root). The helper names
/// the file itself, `volume-<id>` in its own `volume.volumes_dir`, from an
/// id it checks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum VolCommand {
    IscsiExport { volume: String, host: String },
    IscsiUnexport { volume: String, host: String },
    IscsiExported,
}

/// One request to the helper.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Request {
    Host(ferro_virt::qemu::privileged::HostCommand),
    Net(NetCommand),
    Vol(VolCommand),
}
