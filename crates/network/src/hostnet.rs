//! The data-plane seam: what a host must realise of the API's desired
//! state (bridges per network, taps per port, DHCP, router namespaces with
//! SNAT and floating IPs, security group rules), in the protocol's types
//! (`ferro_rpc::network`). `FakeHostNet` records it; the kernel's side is
//! the `ferro-netdriver` crate, which agents drive.
pub use ferro_rpc::network::{DhcpOpt, DhcpSubnet, HostState, NetSpec, PortSpec, RouterSpec};
use std::sync::Mutex;

#[async_trait::async_trait]
pub trait HostNet: Send + Sync {
    fn name(&self) -> &'static str;
    /// Converges `host` to `desired` (idempotent); returns the port ids
    /// that are wired and up.
    async fn apply(&self, host: &str, desired: &HostState) -> Result<Vec<String>, String>;
    /// Whether the hosts are real: each gets its own share of the desired
    /// state, from the agents that report in. The fake has one host that
    /// realises everything.
    fn per_host(&self) -> bool {
        true
    }
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
    fn per_host(&self) -> bool {
        false
    }
    async fn apply(&self, _host: &str, desired: &HostState) -> Result<Vec<String>, String> {
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

/// The hosts' network agents reached over the bus: each convergence is a
/// typed `SyncHost` request to the agent of its host, which answers with
/// the ports it wired.
pub struct BusHostNet {
    client: ferro_rpc::network::NetworkClient,
}

impl BusHostNet {
    pub fn new(client: ferro_rpc::network::NetworkClient) -> BusHostNet {
        BusHostNet { client }
    }
}

#[async_trait::async_trait]
impl HostNet for BusHostNet {
    fn name(&self) -> &'static str {
        "agent"
    }

    async fn apply(&self, host: &str, desired: &HostState) -> Result<Vec<String>, String> {
        use ferro_rpc::network::{NetworkReply, NetworkRequest};
        let req = NetworkRequest::SyncHost {
            state: desired.clone(),
        };
        match self.client.call(host, &req, None).await {
            Ok(NetworkReply::Synced { up }) => Ok(up),
            Ok(other) => Err(format!("the network agent of {host} answered {other:?}")),
            Err(e) => Err(format!("the network agent of {host}: {e}")),
        }
    }
}
