//! Nova's wait for `network-vif-plugged`: a new guest is created paused,
//! and runs once Networking says each of its ports is wired on the host
//! (the network agent found its tap, put it on its bridge and applied its
//! rules), so its first DHCP request never races the host entries or the
//! firewall.
use crate::ComputeService;
use std::time::Duration;

/// Whether `host`'s hypervisor makes real taps for its guests' ports (its
/// agent reports a hypervisor other than the simulated one).
pub fn host_plugs_vifs(svc: &ComputeService, host: &str) -> bool {
    let st = svc.state.read();
    st.services
        .values()
        .filter(|s| s.host == host && s.binary == "nova-compute")
        .filter_map(|s| s.resources.as_ref())
        .any(|r| r.hypervisor_type != "fake")
}

/// The ports of `instance` that are not ACTIVE yet: those a build waits for.
pub fn unplugged(svc: &ComputeService, instance: &str) -> Vec<String> {
    svc.network
        .vifs(instance)
        .into_iter()
        .filter(|v| !v.active)
        .map(|v| v.port_id)
        .collect()
}

/// An event Networking sent about `server`'s port (`network-vif-plugged`,
/// `network-vif-unplugged`...): builds waiting for ports look again.
pub fn network_event(svc: &ComputeService, name: &str, server: &str, port: &str) {
    tracing::debug!(instance = server, port, "{name}");
    if name == "network-vif-plugged" {
        svc.vif_events.notify_waiters();
    }
}

/// Waits until every port of `instance` in `ports` is ACTIVE, or `timeout`
/// passes; on timeout, the ports still not plugged.
pub async fn wait_for_plugged(
    svc: &ComputeService,
    instance: &str,
    ports: &[String],
    timeout: Duration,
) -> Result<(), Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Registered before looking, so an event between the look and the
        // wait is not lost.
        let woken = svc.vif_events.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let pending: Vec<String> = unplugged(svc, instance)
            .into_iter()
            .filter(|p| ports.contains(p))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(pending);
        }
        // Also looks again each second: an event may come from a
        // Networking service that does not send them.
        let _ = tokio::time::timeout((deadline - now).min(Duration::from_secs(1)), woken).await;
    }
}
