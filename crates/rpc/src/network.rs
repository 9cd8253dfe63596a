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
    /// DHCP-enabled subnets: (cidr, gateway) for `qdhcp-<net>`.
    pub dhcp_subnets: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub id: String,
    pub network_id: String,
    pub mac: String,
    pub ips: Vec<String>,
    pub device_owner: String,
    pub admin_up: bool,
    pub port_security: bool,
    /// Security group rules as the data plane needs them (stateful).
    pub rules: Vec<serde_json::Value>,
    pub allowed_address_pairs: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
}

/// Everything one host must realise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    pub networks: BTreeMap<String, NetSpec>,
    pub ports: BTreeMap<String, PortSpec>,
    pub routers: BTreeMap<String, RouterSpec>,
}
