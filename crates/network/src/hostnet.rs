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

/// A host's network agent reached over the bus: each convergence is a
/// typed `SyncHost` request to the agent of `host`, which answers with the
/// ports it wired.
pub struct BusHostNet {
    client: ferro_rpc::network::NetworkClient,
    host: String,
}

impl BusHostNet {
    pub fn new(client: ferro_rpc::network::NetworkClient, host: String) -> BusHostNet {
        BusHostNet { client, host }
    }
}

#[async_trait::async_trait]
impl HostNet for BusHostNet {
    fn name(&self) -> &'static str {
        "agent"
    }

    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String> {
        use ferro_rpc::network::{NetworkReply, NetworkRequest};
        let req = NetworkRequest::SyncHost {
            state: desired.clone(),
        };
        match self.client.call(&self.host, &req, None).await {
            Ok(NetworkReply::Synced { up }) => Ok(up),
            Ok(other) => Err(format!(
                "the network agent of {} answered {other:?}",
                self.host
            )),
            Err(e) => Err(format!("the network agent of {}: {e}", self.host)),
        }
    }
}
