//! NICs plugged into a running guest and out of it (`os-interface`): the
//! port's tap as a netdev and a NIC on the guest's PCI bus (ACPI
//! hot-plug of the `pc` machine), named after the tap as the command line
//! names the NICs a guest starts with, so that any of them can be
//! unplugged.
use super::qmp::Qmp;
use super::volumes::Attached;
use crate::{GuestDevice, GuestDeviceKind, GuestSpec, VifSpec, VirtError};
use serde_json::{Value, json};
use std::collections::BTreeMap;
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

/// The guest's NICs and volumes in QEMU's `query-pci` answer (bus 0),
/// found by the device ids the command line and hot-plug give them.
pub fn on_pci_bus(
    buses: &Value,
    spec: &GuestSpec,
    volumes: &BTreeMap<String, Attached>,
) -> Vec<GuestDevice> {
    let mut out = Vec::new();
    for bus in buses.as_array().into_iter().flatten() {
        if bus["bus"].as_u64() != Some(0) {
            continue;
        }
        for d in bus["devices"].as_array().into_iter().flatten() {
            let Some(id) = d["qdev_id"].as_str() else {
                continue;
            };
            let kind = if let Some(v) = spec.vifs.iter().find(|v| device_id(&v.tap_name) == id) {
                GuestDeviceKind::Nic {
                    mac: v.mac_address.clone(),
                }
            } else if let Some(a) = volumes
                .iter()
                .find(|(dev, _)| Attached::dev_id(dev) == id)
                .map(|(_, a)| a)
            {
                GuestDeviceKind::Disk {
                    serial: a.volume_id.clone(),
                }
            } else {
                continue;
            };
            let (Some(slot), Some(function)) = (d["slot"].as_u64(), d["function"].as_u64()) else {
                continue;
            };
            out.push(GuestDevice {
                kind,
                bus: "pci".into(),
                address: super::launch::pci_address(slot as u8, function as u8),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_found_in_query_pci() {
        let spec = GuestSpec {
            vifs: vec![VifSpec {
                port_id: "p".into(),
                mac_address: "fa:16:3e:00:00:09".into(),
                network_id: "n".into(),
                mtu: None,
                fixed_ips: vec![],
                tap_name: "tapabc".into(),
                model: None,
                tag: None,
            }],
            ..Default::default()
        };
        let ci = crate::ConnectionInfo {
            driver_volume_type: "file".into(),
            data: crate::ConnectionData {
                volume_id: Some("vol-1".into()),
                device_path: Some("/v/vol".into()),
                format: Some("raw".into()),
                ..Default::default()
            },
        };
        let vols = BTreeMap::from([(
            "/dev/vdc".to_string(),
            super::super::volumes::from_connection(&ci).unwrap(),
        )]);
        let answer = json!([{"bus": 0, "devices": [
            {"bus": 0, "slot": 1, "function": 1, "qdev_id": ""},
            {"bus": 0, "slot": 4, "function": 0, "qdev_id": "nic-tapabc"},
            {"bus": 0, "slot": 10, "function": 0, "qdev_id": "dev-vdc"},
            {"bus": 0, "slot": 11, "function": 0, "qdev_id": "nic-gone"},
        ]}]);
        assert_eq!(
            on_pci_bus(&answer, &spec, &vols),
            vec![
                GuestDevice {
                    kind: GuestDeviceKind::Nic {
                        mac: "fa:16:3e:00:00:09".into()
                    },
                    bus: "pci".into(),
                    address: "0000:00:04.0".into(),
                },
                GuestDevice {
                    kind: GuestDeviceKind::Disk {
                        serial: "vol-1".into()
                    },
                    bus: "pci".into(),
                    address: "0000:00:0a.0".into(),
                },
            ]
        );
    }
}
