//! A host's network agent (what Neutron's Linux bridge, DHCP and metadata
//! agents are): it serves `network.<host>` on the bus, takes the desired
//! state of its own host from the Networking service as a typed
//! `NetworkRequest`, converges the kernel to it through its `HostDriver`,
//! and answers with the ports that are wired and up. Requests are handled
//! one at a time, so two convergences never race; the agent never opens
//! the database.
use ferro_bus::{Bus, Incoming};
use ferro_netdriver::HostDriver;
use ferro_rpc::RpcError;
use ferro_rpc::network::{NetworkReply, NetworkRequest, TOPIC, reply_to_wire};
use std::sync::Arc;

pub struct NetworkAgent {
    pub host: String,
    pub driver: Arc<dyn HostDriver>,
    bus: Arc<dyn Bus>,
}

impl NetworkAgent {
    pub fn new(bus: Arc<dyn Bus>, host: String, driver: Arc<dyn HostDriver>) -> Arc<NetworkAgent> {
        Arc::new(NetworkAgent { host, driver, bus })
    }

    /// Subscribes, then serves until the bus closes.
    pub async fn start(
        self: Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, ferro_bus::BusError> {
        let mut sub = self.bus.serve(TOPIC, &self.host).await?;
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                self.handle(msg).await;
            }
        }))
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
                let up = self.driver.apply(&state).await.map_err(RpcError::Failed)?;
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
                dhcp_subnets: vec![("10.9.0.0/24".into(), None)],
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
}
