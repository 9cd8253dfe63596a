//! The desired state of one host's networking, as the Networking service
//! computes it and a host's network driver realises it: bridges per
//! network, taps per port, DHCP in `qdhcp-<network>`, routers, security
//! group rules.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub id: String,
    pub network_type: String,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<i64>,
    pub mtu: i64,
    /// DHCP-enabled subnets, served from `qdhcp-<net>`.
    pub dhcp_subnets: Vec<DhcpSubnet>,
    /// Addresses (with prefix) the host itself holds on the network's
    /// bridge: the external network's gateway, as DevStack's `br-ex`, so
    /// that floating IPs are reachable from the host.
    #[serde(default)]
    pub host_addresses: Vec<String>,
    /// The tunnel endpoints of the other hosts with ports on this network
    /// (vxlan): the receiving host floods its broadcasts and unknown
    /// unicast to exactly these, as the Linux bridge agent's l2population
    /// does.
    #[serde(default)]
    pub tunnel_peers: Vec<String>,
}

/// A DHCP-enabled subnet as its clients are told about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DhcpSubnet {
    pub cidr: String,
    pub gateway: Option<String>,
    /// Sent as the DNS servers (option 6); `["0.0.0.0"]` sends none.
    #[serde(default)]
    pub dns_nameservers: Vec<String>,
    /// (destination, nexthop), sent as classless static routes (option 121).
    #[serde(default)]
    pub host_routes: Vec<(String, String)>,
}

impl DhcpSubnet {
    pub fn new(cidr: &str, gateway: Option<&str>) -> DhcpSubnet {
        DhcpSubnet {
            cidr: cidr.into(),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        }
    }
}

/// A port's `extra_dhcp_opts` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DhcpOpt {
    pub name: String,
    pub value: String,
    pub ip_version: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub id: String,
    pub network_id: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub device_owner: String,
    /// The instance (or router) the port belongs to: the metadata service
    /// answers a guest's request for the instance of the port it came from.
    #[serde(default)]
    pub device_id: String,
    pub admin_up: bool,
    pub port_security: bool,
    /// Security group rules as the data plane needs them (stateful).
    pub rules: Vec<serde_json::Value>,
    pub allowed_address_pairs: Vec<serde_json::Value>,
    /// Options sent to this port's DHCP client only.
    #[serde(default)]
    pub extra_dhcp_opts: Vec<DhcpOpt>,
    /// The port is realised on another host: this one knows it for the
    /// network's DHCP and metadata service, which it hosts, and wires
    /// nothing for it.
    #[serde(default)]
    pub elsewhere: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterSpec {
    pub id: String,
    /// (external network, its gateway address with prefix) when set.
    pub gateway: Option<(String, Vec<String>)>,
    pub enable_snat: bool,
    /// Interface addresses with prefix, per internal network.
    pub interfaces: Vec<(String, String)>,
    pub routes: Vec<(String, String)>,
    /// floating address -> fixed address (DNAT/SNAT 1:1).
    pub floating_ips: Vec<(String, String)>,
    /// The external subnets' gateways: the router's default route.
    #[serde(default)]
    pub gateway_nexthops: Vec<String>,
    #[serde(default = "yes")]
    pub admin_up: bool,
}

fn yes() -> bool {
    true
}

impl Default for RouterSpec {
    fn default() -> RouterSpec {
        RouterSpec {
            id: String::new(),
            gateway: None,
            enable_snat: true,
            interfaces: Vec::new(),
            routes: Vec::new(),
            floating_ips: Vec::new(),
            gateway_nexthops: Vec::new(),
            admin_up: true,
        }
    }
}

/// Everything one host must realise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    pub networks: BTreeMap<String, NetSpec>,
    pub ports: BTreeMap<String, PortSpec>,
    pub routers: BTreeMap<String, RouterSpec>,
}

/// The network agents' queue: `network.<host>`.
pub const TOPIC: &str = "network";

/// What the Networking service asks a host's network agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum NetworkRequest {
    Ping,
    /// The whole desired state of the receiving host; the agent converges
    /// the kernel to it (touching only what differs) and says which ports
    /// are wired and up.
    SyncHost {
        state: HostState,
    },
}

impl NetworkRequest {
    pub fn method(&self) -> &'static str {
        match self {
            NetworkRequest::Ping => "ping",
            NetworkRequest::SyncHost { .. } => "sync_host",
        }
    }

    pub fn to_envelope(
        &self,
        request_id: Option<&str>,
    ) -> Result<ferro_bus::Envelope, crate::RpcError> {
        crate::envelope(self, request_id)
    }

    /// Reads a request from an envelope (the agent's side).
    pub fn from_envelope(env: &ferro_bus::Envelope) -> Result<NetworkRequest, crate::RpcError> {
        crate::open(env, "the network service")
    }
}

/// What a network agent answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum NetworkReply {
    Pong {
        host: String,
        version: u32,
        driver: String,
    },
    /// The ports wired and up (ACTIVE); every other port of the state is DOWN.
    Synced { up: Vec<String> },
}

/// The Networking service's queue for what agents tell it (Neutron's
/// `q-plugin`).
pub const PLUGIN_TOPIC: &str = "q-plugin";

/// What a network agent tells the Networking service unasked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The ports of `host`'s last desired state that are now wired and up
    /// (a guest's tap appeared or went away): Neutron's
    /// `update_device_up`/`update_device_down`.
    PortsUp { host: String, up: Vec<String> },
    /// The agent of `host` is alive (sent every `report_interval`; Neutron's
    /// `report_state`): its tunnel endpoint, when it has one, is where other
    /// hosts send `host`'s share of VXLAN networks.
    Report {
        host: String,
        tunnel_ip: Option<String>,
        driver: String,
    },
}

impl AgentMessage {
    pub fn to_envelope(&self) -> Result<ferro_bus::Envelope, crate::RpcError> {
        crate::envelope(self, None)
    }

    /// Reads a message from an envelope (the service's side).
    pub fn from_envelope(env: &ferro_bus::Envelope) -> Result<AgentMessage, crate::RpcError> {
        crate::open(env, "a network agent")
    }
}

/// Encodes an agent's answer for the bus.
pub fn reply_to_wire(
    r: Result<NetworkReply, crate::RpcError>,
) -> Result<serde_json::Value, String> {
    match r {
        Ok(reply) => serde_json::to_value(&reply)
            .map_err(|e| crate::RpcError::BadMessage(e.to_string()).to_wire()),
        Err(e) => Err(e.to_wire()),
    }
}

/// The Networking service's handle on the hosts' network agents.
#[derive(Clone)]
pub struct NetworkClient {
    bus: std::sync::Arc<dyn ferro_bus::Bus>,
    timeout: std::time::Duration,
}

impl NetworkClient {
    pub fn new(
        bus: std::sync::Arc<dyn ferro_bus::Bus>,
        timeout: std::time::Duration,
    ) -> NetworkClient {
        NetworkClient { bus, timeout }
    }

    /// Calls `host`'s network agent and waits for its typed answer.
    pub async fn call(
        &self,
        host: &str,
        req: &NetworkRequest,
        request_id: Option<&str>,
    ) -> Result<NetworkReply, crate::RpcError> {
        let env = req.to_envelope(request_id)?;
        let v = self
            .bus
            .call(&ferro_bus::Target::server(TOPIC, host), env, self.timeout)
            .await
            .map_err(crate::RpcError::from_bus)?;
        serde_json::from_value(v)
            .map_err(|e| crate::RpcError::BadMessage(format!("reply to {}: {e}", req.method())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_request_crosses_the_wire_intact() {
        let mut state = HostState::default();
        state.networks.insert(
            "n1".into(),
            NetSpec {
                id: "n1".into(),
                network_type: "flat".into(),
                mtu: 1500,
                dhcp_subnets: vec![DhcpSubnet::new("10.0.0.0/24", Some("10.0.0.1"))],
                ..Default::default()
            },
        );
        let req = NetworkRequest::SyncHost { state };
        let env = req.to_envelope(Some("req-1")).unwrap();
        assert_eq!(env.method, "sync_host");
        assert_eq!(env.args["version"], crate::PROTOCOL_VERSION);
        assert_eq!(NetworkRequest::from_envelope(&env).unwrap(), req);
        let mut old = env.clone();
        old.args.as_object_mut().unwrap().remove("version");
        assert!(matches!(
            NetworkRequest::from_envelope(&old),
            Err(crate::RpcError::Incompatible { .. })
        ));
        let wire = reply_to_wire(Ok(NetworkReply::Synced {
            up: vec!["p1".into()],
        }))
        .unwrap();
        assert_eq!(wire["reply"], "synced");
    }
}
