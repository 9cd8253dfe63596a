//! NICs plugged into a running guest and out of it (`os-interface`): the
//! port's tap as a netdev and a NIC on the guest's PCI bus (ACPI
//! hot-plug of the `pc` machine), named after the tap as the command line
//! names the NICs a guest starts with, so that any of them can be
//! unplugged.
use super::qmp::Qmp;
use crate::{VifSpec, VirtError};
use serde_json::json;
use std::time::Duration;

/// The netdev of a tap.
pub fn netdev_id(tap: &str) -> String {
    format!("net-{tap}")
}

/// The NIC device of a tap.
pub fn device_id(tap: &str) -> String {
    format!("nic-{tap}")
}

/// Adds the NIC of `vif` (its tap must exist, owned by the guest's uid
/// when guests are confined); nothing is left when it fails.
pub async fn plug(q: &mut Qmp, vif: &VifSpec) -> Result<(), VirtError> {
    let model = super::launch::nic_model(vif.model.as_deref())?;
    let netdev = netdev_id(&vif.tap_name);
    q.execute(
        "netdev_add",
        Some(json!({"type": "tap", "id": netdev, "ifname": vif.tap_name,
                    "script": "no", "downscript": "no"})),
    )
    .await?;
    let mut dev = json!({"driver": model, "netdev": netdev, "mac": vif.mac_address,
                         "id": device_id(&vif.tap_name)});
    if let ("virtio-net-pci", Some(m)) = (model, vif.mtu) {
        dev["host_mtu"] = json!(m);
    }
    if let Err(e) = q.execute("device_add", Some(dev)).await {
        let _ = q.execute("netdev_del", Some(json!({"id": netdev}))).await;
        return Err(e);
    }
    Ok(())
}

/// Removes the NIC on `tap`: the guest must release it (asked again every
/// `interval`, `attempts` times), then its netdev goes.
pub async fn unplug(
    q: &mut Qmp,
    tap: &str,
    attempts: u32,
    interval: Duration,
) -> Result<(), VirtError> {
    if !q.remove_device(&device_id(tap), attempts, interval).await? {
        return Err(VirtError::Failed(format!(
            "the guest did not release its NIC on {tap} after {attempts} attempts"
        )));
    }
    let _ = q
        .execute("netdev_del", Some(json!({"id": netdev_id(tap)})))
        .await;
    Ok(())
}
