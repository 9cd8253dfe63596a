//! The data-plane seam: what a host must realise of the API's desired
//! state (bridges per network, taps per port, DHCP, router namespaces with
//! SNAT and floating IPs, security group rules). `FakeHostNet` records it;
//! the Linux implementation (bridges, VXLAN, namespaces, nftables) comes
//! with the real data plane and implements the same trait.
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetSpec {
    pub id: String,
    pub network_type: String,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<i64>,
    pub mtu: i64,
    /// DHCP-enabled subnets: (cidr, gateway) for `qdhcp-<net>`.
    pub dhcp_subnets: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HostState {
    pub networks: BTreeMap<String, NetSpec>,
    pub ports: BTreeMap<String, PortSpec>,
    pub routers: BTreeMap<String, RouterSpec>,
}

#[async_trait::async_trait]
pub trait HostNet: Send + Sync {
    fn name(&self) -> &'static str;
    /// Converges the host to `desired` (idempotent); returns the port ids
    /// that are wired and up.
    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String>;
}

/// Records the desired state; every port it is given is "wired".
#[derive(Default)]
pub struct FakeHostNet {
    pub applied: Mutex<HostState>,
    pub applies: Mutex<u64>,
}

#[async_trait::async_trait]
impl HostNet for FakeHostNet {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String> {
        if let Ok(mut a) = self.applied.lock() {
            *a = desired.clone();
        }
        if let Ok(mut n) = self.applies.lock() {
            *n += 1;
        }
        Ok(desired
            .ports
            .values()
            .filter(|p| p.admin_up)
            .map(|p| p.id.clone())
            .collect())
    }
}

impl FakeHostNet {
    pub fn snapshot(&self) -> HostState {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }
}
