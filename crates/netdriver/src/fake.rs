//! The Linux bridge driver's decisions without a kernel: a guest's port is
//! up when its tap has been plugged (by the fake hypervisor, or a test) and
//! the port is admin-up on a network this host can realise; a DHCP port
//! when its network has a DHCP subnet.
use crate::{HostDriver, HostState};
use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct FakeHostDriver {
    plugged: Mutex<BTreeSet<String>>,
    applied: Mutex<HostState>,
}

impl FakeHostDriver {
    /// A guest's tap appears (the hypervisor started it).
    pub fn plug(&self, tap: &str) {
        if let Ok(mut p) = self.plugged.lock() {
            p.insert(tap.to_string());
        }
    }

    pub fn unplug(&self, tap: &str) {
        if let Ok(mut p) = self.plugged.lock() {
            p.remove(tap);
        }
    }

    /// What was applied last.
    pub fn snapshot(&self) -> HostState {
        self.applied.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl HostDriver for FakeHostDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn apply(&self, desired: &HostState) -> Result<Vec<String>, String> {
        let plugged = self.plugged.lock().map(|p| p.clone()).unwrap_or_default();
        let mut up = Vec::new();
        for p in desired.ports.values() {
            let Some(net) = desired.networks.get(&p.network_id) else {
                continue;
            };
            if !p.admin_up || crate::unsupported(net, false).is_some() {
                continue;
            }
            let wired = if crate::is_local_guest_port(p) {
                plugged.contains(&crate::tap_name(&p.id))
            } else if crate::is_dhcp_port(p) {
                !net.dhcp_subnets.is_empty()
            } else if crate::is_router_port(p) {
                desired.routers.contains_key(&p.device_id)
            } else {
                false
            };
            if wired {
                up.push(p.id.clone());
            }
        }
        if let Ok(mut a) = self.applied.lock() {
            *a = desired.clone();
        }
        Ok(up)
    }

    async fn devices(&self) -> Result<crate::Devices, String> {
        let plugged = self.plugged.lock().map(|p| p.clone()).unwrap_or_default();
        Ok(plugged.into_iter().map(|t| (t, None)).collect())
    }
}
