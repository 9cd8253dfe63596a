//! A host's side of Networking: what the kernel must hold for the desired
//! state the Networking service computes (`ferro_rpc::network::HostState`),
//! as Neutron's Linux bridge and DHCP agents build it.
//!
//! - `LinuxBridge`: a bridge `brq<network>` per network (no address), the
//!   guests' taps on it, and DHCP in a namespace `qdhcp-<network>` (a veth
//!   from the bridge, dnsmasq with a host entry per port). Flat and VXLAN
//!   segments' bridges; VLAN is refused where the kernel has no 802.1q.
//! - `FakeHostDriver`: the same decisions without a kernel, for hosts that
//!   simulate guests.
//!
//! Both answer `apply` with the ports that are wired and up; the conformance
//! test runs them through the same cases.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod dhcp;
pub mod fake;
pub mod firewall;
pub mod ipv4;
pub mod linux;

pub use fake::FakeHostDriver;
pub use ferro_rpc::network::{DhcpOpt, DhcpSubnet, HostState, NetSpec, PortSpec, RouterSpec};
pub use linux::{LinuxBridge, remove_recorded};

/// A host's devices by name, each with its bridge (`master`), if any.
pub type Devices = std::collections::BTreeMap<String, Option<String>>;

/// Converges a host's networking to a desired state.
#[async_trait::async_trait]
pub trait HostDriver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Converges to `desired`, touching only what differs (idempotent);
    /// returns the ids of the ports that are wired and up.
    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String>;
    /// The devices in the host's namespace now, each with the bridge it is
    /// on: the agent looks for guests' taps appearing, going, or made anew
    /// off their bridge (Neutron's Linux bridge agent polls for them too).
    async fn devices(&self) -> Result<Devices, String>;
    /// A socket listening on 169.254.169.254:80 inside the network's DHCP
    /// namespace (Neutron's isolated metadata), for the metadata service to
    /// serve; the namespace must exist (its DHCP port is up).
    async fn metadata_socket(&self, network_id: &str) -> Result<std::net::TcpListener, String> {
        Err(format!(
            "network {network_id}: the {} driver serves no metadata",
            self.name()
        ))
    }
    /// A socket listening on `ROUTER_METADATA_PORT` inside the router's
    /// namespace, to which the router redirects what its internal networks
    /// send to 169.254.169.254:80 (the L3 agent's metadata proxy); the
    /// namespace must exist.
    async fn router_metadata_socket(
        &self,
        router_id: &str,
    ) -> Result<std::net::TcpListener, String> {
        Err(format!(
            "router {router_id}: the {} driver serves no metadata",
            self.name()
        ))
    }
}

/// The port of the metadata service inside a router's namespace (that of
/// the L3 agent's haproxy).
pub const ROUTER_METADATA_PORT: u16 = 9697;

/// The metadata service's address (Neutron's isolated metadata: on the DHCP
/// port's device inside `qdhcp-<network>`, routed to by DHCP option 121).
pub const METADATA_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// The first 11 characters of an id, as Neutron names devices.
fn short(id: &str) -> &str {
    &id[..id.len().min(11)]
}

/// The network's bridge (`brq` + 11 characters of its id).
pub fn bridge_name(network_id: &str) -> String {
    format!("brq{}", short(network_id))
}

/// A port's device on the host side (`tap` + 11 characters of its id): a
/// guest's tap, or the host end of a DHCP namespace's veth.
pub fn tap_name(port_id: &str) -> String {
    format!("tap{}", short(port_id))
}

/// The DHCP port's device inside its namespace.
pub fn ns_device(port_id: &str) -> String {
    format!("ns-{}", short(port_id))
}

/// The network's DHCP namespace.
pub fn dhcp_namespace(network_id: &str) -> String {
    format!("qdhcp-{network_id}")
}

/// Whether the port is a guest's (its tap comes from the hypervisor).
pub fn is_guest_port(p: &PortSpec) -> bool {
    p.device_owner.starts_with("compute:")
}

/// Whether the port is a guest's on this host (not known here only for
/// DHCP and metadata): its tap is wired and filtered here.
pub fn is_local_guest_port(p: &PortSpec) -> bool {
    is_guest_port(p) && !p.elsewhere
}

/// Whether the port is a router's (an interface or its gateway).
pub fn is_router_port(p: &PortSpec) -> bool {
    p.device_owner == "network:router_interface" || p.device_owner == "network:router_gateway"
}

/// A router's namespace.
pub fn router_namespace(router_id: &str) -> String {
    format!("qrouter-{router_id}")
}

/// A router port's device inside the router's namespace: `qg-` for the
/// gateway, `qr-` for an interface (+ 11 characters of the port's id).
pub fn router_device(p: &PortSpec) -> String {
    let kind = if p.device_owner == "network:router_gateway" {
        "qg"
    } else {
        "qr"
    };
    format!("{kind}-{}", short(&p.id))
}

/// Whether the port is the network's DHCP port.
pub fn is_dhcp_port(p: &PortSpec) -> bool {
    p.device_owner == "network:dhcp"
}

/// Why a network cannot be realised on this host, if it cannot.
pub fn unsupported(net: &NetSpec, vlan: bool) -> Option<String> {
    match net.network_type.as_str() {
        "flat" | "local" | "vxlan" | "" => None,
        "vlan" if vlan => None,
        "vlan" => Some(format!(
            "network {}: VLAN segments need the kernel's 802.1q support, which this host lacks",
            net.id
        )),
        other => Some(format!(
            "network {}: segment type {other} is not supported by the Linux bridge driver",
            net.id
        )),
    }
}

/// Ids must be safe in device, namespace and file names.
pub fn safe_id(id: &str) -> bool {
    id.len() >= 11
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A MAC address as `ip` and dnsmasq take it (six hex pairs).
pub fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A name Linux accepts for a network interface (`IFNAMSIZ`: at most 15
/// bytes; no `/`, whitespace or `:`, not `.` or `..`).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}
