//! A host's network agent (what Neutron's Linux bridge, DHCP and metadata
//! agents are): it serves `network.<host>` on the bus, takes the desired
//! state of its own host from the Networking service as a typed
//! `NetworkRequest`, converges the kernel to it through its `HostDriver`,
//! and answers with the ports that are wired and up. Between requests it
//! watches the host for guests' taps appearing and going (a guest started
//! or stopped), converges again when they do, and tells the Networking
//! service which ports are up now (Neutron's `update_device_up`), so
//! Compute hears `network-vif-plugged`. Convergences are one at a time;
//! the agent never opens the database.
pub mod metadata;

use ferro_bus::{Bus, Incoming, Target};
use ferro_netdriver::{Devices, HostDriver, HostState};
use ferro_rpc::RpcError;
use ferro_rpc::network::{
    AgentMessage, NetworkReply, NetworkRequest, PLUGIN_TOPIC, TOPIC, reply_to_wire,
};
use std::sync::Arc;
use std::time::Duration;

/// How often the host is looked at for guests' taps (Neutron's Linux
/// bridge agent: `polling_interval` = 2 s).
pub const POLLING_INTERVAL: Duration = Duration::from_millis(500);

pub struct NetworkAgent {
    pub host: String,
    pub driver: Arc<dyn HostDriver>,
    bus: Arc<dyn Bus>,
    /// The last desired state, the guests' taps it was converged with and
    /// the ports it reported up; held across a convergence so two never race.
    last: tokio::sync::Mutex<Last>,
    /// The metadata service at 169.254.169.254 of this host's networks.
    pub metadata: metadata::MetadataServer,
    /// This host's tunnel endpoint, told to the Networking service.
    pub tunnel_ip: Option<String>,
    /// How often the agent tells the Networking service it is alive.
    pub report_interval: Duration,
}

#[derive(Default)]
struct Last {
    state: Option<HostState>,
    taps: Devices,
    up: Vec<String>,
}

/// The taps of `state`'s guest ports among `devices`, with their bridges.
fn guest_taps(state: &HostState, devices: &Devices) -> Devices {
    state
        .ports
        .values()
        .filter(|p| ferro_netdriver::is_local_guest_port(p))
        .map(|p| ferro_netdriver::tap_name(&p.id))
        .filter_map(|t| devices.get(&t).map(|m| (t, m.clone())))
        .collect()
}

impl NetworkAgent {
    pub fn new(bus: Arc<dyn Bus>, host: String, driver: Arc<dyn HostDriver>) -> Arc<NetworkAgent> {
        NetworkAgent::reporting(bus, host, driver, None, Duration::from_secs(30))
    }

    /// An agent with this host's tunnel endpoint, reporting every
    /// `report_interval` (Neutron's `report_interval`).
    pub fn reporting(
        bus: Arc<dyn Bus>,
        host: String,
        driver: Arc<dyn HostDriver>,
        tunnel_ip: Option<String>,
        report_interval: Duration,
    ) -> Arc<NetworkAgent> {
        Arc::new(NetworkAgent {
            host,
            driver,
            bus,
            last: tokio::sync::Mutex::new(Last::default()),
            metadata: metadata::MetadataServer::default(),
            tunnel_ip,
            report_interval: report_interval.max(Duration::from_secs(1)),
        })
    }

    /// Tells the Networking service that this agent is alive, with its
    /// tunnel endpoint (`report_state`).
    pub async fn report(&self) -> Result<(), String> {
        let msg = AgentMessage::Report {
            host: self.host.clone(),
            tunnel_ip: self.tunnel_ip.clone(),
            driver: self.driver.name().to_string(),
        };
        let env = msg.to_envelope().map_err(|e| e.to_string())?;
        self.bus
            .cast(&Target::topic(PLUGIN_TOPIC), env)
            .await
            .map_err(|e| format!("reporting to the Networking service: {e}"))
    }

    /// After a convergence: the metadata service follows the networks
    /// whose DHCP namespace and the routers that are up here.
    async fn after_apply(&self, state: &HostState, up: &[String]) {
        for scope in self.metadata.update(state, up) {
            let socket = match &scope {
                metadata::Scope::Network(n) => self.driver.metadata_socket(n).await,
                metadata::Scope::Router(r) => self.driver.router_metadata_socket(r).await,
            };
            if let Err(e) = socket.and_then(|l| self.metadata.serve(&scope, l)) {
                tracing::warn!(host = %self.host, "metadata service of {scope}: {e}");
            }
        }
    }

    /// Subscribes, then serves until the bus closes, watching the host's
    /// taps every `POLLING_INTERVAL` meanwhile.
    pub async fn start(
        self: Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, ferro_bus::BusError> {
        let mut sub = self.bus.serve(TOPIC, &self.host).await?;
        if let Err(e) = self.report().await {
            tracing::warn!(host = %self.host, "network agent: {e}");
        }
        let watcher = Arc::downgrade(&self);
        tokio::spawn(async move {
            let mut reported = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(POLLING_INTERVAL).await;
                let Some(agent) = watcher.upgrade() else {
                    return;
                };
                if reported.elapsed() >= agent.report_interval {
                    reported = tokio::time::Instant::now();
                    if let Err(e) = agent.report().await {
                        tracing::warn!(host = %agent.host, "network agent: {e}");
                    }
                }
                if let Err(e) = agent.poll().await {
                    tracing::warn!(host = %agent.host, "network agent: {e}");
                }
            }
        });
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                self.handle(msg).await;
            }
        }))
    }

    /// Looks at the host once: when a guest's tap of the last desired
    /// state appeared or went, converges again and, if the ports that are
    /// up changed, tells the Networking service. Returns whether it did.
    pub async fn poll(&self) -> Result<bool, String> {
        let mut last = self.last.lock().await;
        let Some(state) = last.state.clone() else {
            return Ok(false);
        };
        if !state
            .ports
            .values()
            .any(ferro_netdriver::is_local_guest_port)
        {
            return Ok(false);
        }
        let taps = guest_taps(&state, &self.driver.devices().await?);
        if taps == last.taps {
            return Ok(false);
        }
        let up = self.driver.apply(&state).await?;
        self.after_apply(&state, &up).await;
        // As seen before converging: a tap that this convergence wired, or
        // that came meanwhile, differs next time and is looked at again;
        // a convergence that changed nothing ends the round.
        last.taps = taps;
        if up == last.up {
            return Ok(false);
        }
        last.up = up.clone();
        drop(last);
        let msg = AgentMessage::PortsUp {
            host: self.host.clone(),
            up,
        };
        let env = msg.to_envelope().map_err(|e| e.to_string())?;
        self.bus
            .cast(&Target::topic(PLUGIN_TOPIC), env)
            .await
            .map_err(|e| format!("telling the Networking service: {e}"))?;
        Ok(true)
    }

    async fn handle(&self, msg: Incoming) {
        let method = msg.envelope.method.clone();
        let result = match NetworkRequest::from_envelope(&msg.envelope) {
            Ok(req) => self.dispatch(req).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(host = %self.host, %method, "network agent call failed: {e}");
        }
        msg.reply(reply_to_wire(result)).await;
    }

    /// Runs one request on the driver.
    pub async fn dispatch(&self, req: NetworkRequest) -> Result<NetworkReply, RpcError> {
        match req {
            NetworkRequest::Ping => Ok(NetworkReply::Pong {
                host: self.host.clone(),
                version: ferro_rpc::PROTOCOL_VERSION,
                driver: self.driver.name().to_string(),
            }),
            NetworkRequest::SyncHost { state } => {
                let t = std::time::Instant::now();
                let mut last = self.last.lock().await;
                let devices = self.driver.devices().await.map_err(RpcError::Failed)?;
                let up = self.driver.apply(&state).await.map_err(RpcError::Failed)?;
                self.after_apply(&state, &up).await;
                last.taps = guest_taps(&state, &devices);
                last.up = up.clone();
                last.state = Some(state.clone());
                drop(last);
                tracing::debug!(
                    host = %self.host,
                    ports = state.ports.len(),
                    up = up.len(),
                    ms = t.elapsed().as_millis() as u64,
                    "host networking converged"
                );
                Ok(NetworkReply::Synced { up })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ferro_bus::InProcBus;
    use ferro_netdriver::{FakeHostDriver, HostState, NetSpec, PortSpec};
    use ferro_rpc::network::NetworkClient;
    use std::time::Duration;

    fn state() -> HostState {
        let mut s = HostState::default();
        s.networks.insert(
            "net-0000000001".into(),
            NetSpec {
                id: "net-0000000001".into(),
                network_type: "flat".into(),
                mtu: 1500,
                dhcp_subnets: vec![ferro_netdriver::DhcpSubnet::new("10.9.0.0/24", None)],
                ..Default::default()
            },
        );
        for (id, owner) in [
            ("dhcp-000000001", "network:dhcp"),
            ("vm-00000000001", "compute:nova"),
        ] {
            s.ports.insert(
                id.into(),
                PortSpec {
                    id: id.into(),
                    network_id: "net-0000000001".into(),
                    mac: "fa:16:3e:00:00:01".into(),
                    ips: vec!["10.9.0.5".into()],
                    device_owner: owner.into(),
                    admin_up: true,
                    ..Default::default()
                },
            );
        }
        s
    }

    /// The Networking service's typed requests reach the host's agent over
    /// the bus and come back typed; another host's queue has no consumer.
    #[tokio::test]
    async fn typed_requests_over_the_bus() {
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::new());
        let driver = Arc::new(FakeHostDriver::default());
        NetworkAgent::new(bus.clone(), "h1".into(), driver.clone())
            .start()
            .await
            .unwrap();
        let client = NetworkClient::new(bus.clone(), Duration::from_secs(5));
        let pong = client
            .call("h1", &NetworkRequest::Ping, None)
            .await
            .unwrap();
        assert_eq!(
            pong,
            NetworkReply::Pong {
                host: "h1".into(),
                version: ferro_rpc::PROTOCOL_VERSION,
                driver: "fake".into()
            }
        );
        let sync = NetworkRequest::SyncHost { state: state() };
        // The guest's tap is not there yet: only DHCP is up.
        let r = client.call("h1", &sync, Some("req-1")).await.unwrap();
        assert_eq!(
            r,
            NetworkReply::Synced {
                up: vec!["dhcp-000000001".into()]
            }
        );
        driver.plug(&ferro_netdriver::tap_name("vm-00000000001"));
        let r = client.call("h1", &sync, None).await.unwrap();
        assert_eq!(
            r,
            NetworkReply::Synced {
                up: vec!["dhcp-000000001".into(), "vm-00000000001".into()]
            }
        );
        assert_eq!(driver.snapshot(), state());
        let other = client.call("h2", &NetworkRequest::Ping, None).await;
        assert!(matches!(other, Err(RpcError::NoAgent(_))), "{other:?}");
    }

    /// Between requests the agent watches the host: a guest's tap that
    /// comes or goes makes it converge again and tell the Networking
    /// service (`q-plugin`) which ports are up; nothing changed, nothing sent.
    #[tokio::test]
    async fn a_guest_tap_coming_and_going_is_reported() {
        let bus: Arc<dyn Bus> = Arc::new(InProcBus::new());
        let mut plugin = bus
            .serve(ferro_rpc::network::PLUGIN_TOPIC, "controller")
            .await
            .unwrap();
        let driver = Arc::new(FakeHostDriver::default());
        let agent = NetworkAgent::new(bus.clone(), "h1".into(), driver.clone());
        // No state yet: nothing to watch.
        assert!(!agent.poll().await.unwrap());
        agent
            .dispatch(NetworkRequest::SyncHost { state: state() })
            .await
            .unwrap();
        assert!(!agent.poll().await.unwrap(), "nothing changed");
        let tap = ferro_netdriver::tap_name("vm-00000000001");
        driver.plug(&tap);
        driver.plug("tapunrelated1");
        assert!(agent.poll().await.unwrap());
        let msg = tokio::time::timeout(Duration::from_secs(5), plugin.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            AgentMessage::from_envelope(&msg.envelope).unwrap(),
            AgentMessage::PortsUp {
                host: "h1".into(),
                up: vec!["dhcp-000000001".into(), "vm-00000000001".into()]
            }
        );
        assert!(!agent.poll().await.unwrap(), "reported once");
        // Another host's device is no guest's tap of this state.
        driver.unplug("tapunrelated1");
        assert!(!agent.poll().await.unwrap());
        driver.unplug(&tap);
        assert!(agent.poll().await.unwrap());
        let msg = tokio::time::timeout(Duration::from_secs(5), plugin.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            AgentMessage::from_envelope(&msg.envelope).unwrap(),
            AgentMessage::PortsUp {
                host: "h1".into(),
                up: vec!["dhcp-000000001".into()]
            }
        );
    }
}
