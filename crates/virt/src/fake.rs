//! An in-memory hypervisor. `fail_on("spawn")` makes the next (or every)
//! named operation fail, for fault-injection tests.
use crate::{
    AssistedSnapshot, ConnectionInfo, GuestSpec, HostResources, PowerState, VifSpec, VirtDriver,
    VirtError,
};
use std::collections::HashMap;
use std::sync::Mutex;

struct Guest {
    spec: GuestSpec,
    state: PowerState,
    rescued: bool,
    console: Vec<String>,
    /// device -> (connection info, resizes seen) of hot-plugged volumes
    volumes: std::collections::BTreeMap<String, (ConnectionInfo, u32)>,
    /// (volume, snapshot) of assisted volume snapshots -> the file made
    volume_snapshots: std::collections::BTreeMap<(String, String), Option<std::path::PathBuf>>,
}

pub struct FakeDriver {
    resources: HostResources,
    guests: Mutex<HashMap<String, Guest>>,
    /// operation -> remaining failures (u32::MAX = always)
    failures: Mutex<HashMap<String, u32>>,
    delay: std::time::Duration,
}

/// What a cirros-like guest prints while booting (the fake's console log).
fn boot_log(spec: &GuestSpec) -> Vec<String> {
    let mut v = vec![
        format!(
            "[    0.000000] Linux version 6.1.0-fake (ferrostack fake driver) guest {}",
            spec.uuid
        ),
        format!(
            "[    0.000000] Command line: root=/dev/vda console=ttyS0 hostname={}",
            spec.name
        ),
        format!(
            "[    0.010000] Memory: {}K available",
            spec.memory_mb * 1024
        ),
        format!("[    0.020000] smpboot: Allowing {} CPUs", spec.vcpus),
    ];
    for (n, line) in [
        "virtio_blk virtio2: [vda] disk attached",
        "EXT4-fs (vda1): mounted filesystem",
        "Starting network...",
        "udhcpc: no lease, failing",
        "checking http://169.254.169.254/2009-04-04/instance-id",
        "=== system information ===",
    ]
    .iter()
    .enumerate()
    {
        v.push(format!("[    {}.{:06}] {line}", 1 + n, n * 1000));
    }
    v.push(format!("{} login: ", spec.name));
    v
}

impl FakeDriver {
    pub fn new(vcpus: u32, memory_mb: u64, local_gb: u64) -> FakeDriver {
        FakeDriver {
            resources: HostResources {
                vcpus,
                memory_mb,
                local_gb,
                hypervisor_type: "fake".into(),
                hypervisor_version: 1000,
                cpu_info: "{\"arch\": \"x86_64\", \"model\": \"fake\", \"vendor\": \"ferrostack\", \"topology\": {\"cores\": 1, \"threads\": 1, \"sockets\": 1}, \"features\": []}".into(),
                guest_memory_overhead_mb: 0,
            },
            guests: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            delay: std::time::Duration::ZERO,
        }
    }

    /// Every operation sleeps this long first (simulates a slow hypervisor).
    pub fn with_delay(mut self, delay: std::time::Duration) -> FakeDriver {
        self.delay = delay;
        self
    }

    /// The next `times` calls of `op` fail (`u32::MAX`: every call).
    pub fn fail_on(&self, op: &str, times: u32) {
        if let Ok(mut f) = self.failures.lock() {
            f.insert(op.to_string(), times);
        }
    }

    fn check(&self, op: &str) -> Result<(), VirtError> {
        let Ok(mut f) = self.failures.lock() else {
            return Ok(());
        };
        if let Some(n) = f.get_mut(op) {
            if *n == 0 {
                return Ok(());
            }
            if *n != u32::MAX {
                *n -= 1;
            }
            return Err(VirtError::Failed(format!("injected failure of {op}")));
        }
        Ok(())
    }

    async fn enter(&self, op: &str) -> Result<(), VirtError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.check(op)
    }

    fn with<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Guest) -> Result<T, VirtError>,
    ) -> Result<T, VirtError> {
        let mut g = self
            .guests
            .lock()
            .map_err(|_| VirtError::Failed("fake driver state poisoned".into()))?;
        let guest = g
            .get_mut(uuid)
            .ok_or_else(|| VirtError::NotFound(uuid.to_string()))?;
        f(guest)
    }

    fn transition(
        &self,
        uuid: &str,
        from: &[PowerState],
        to: PowerState,
        what: &str,
    ) -> Result<(), VirtError> {
        self.with(uuid, |g| {
            if g.state == to {
                return Ok(());
            }
            if !from.is_empty() && !from.contains(&g.state) {
                return Err(VirtError::Failed(format!(
                    "cannot {what} a guest in power state {:?}",
                    g.state
                )));
            }
            g.state = to;
            g.console.push(format!("[fake] {what}"));
            Ok(())
        })
    }
}

#[async_trait::async_trait]
impl VirtDriver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn host_resources(&self) -> HostResources {
        self.resources.clone()
    }
    async fn spawn(&self, spec: &GuestSpec) -> Result<(), VirtError> {
        self.enter("spawn").await?;
        let mut g = self
            .guests
            .lock()
            .map_err(|_| VirtError::Failed("fake driver state poisoned".into()))?;
        g.entry(spec.uuid.clone()).or_insert_with(|| Guest {
            spec: GuestSpec {
                start_paused: false,
                ..spec.clone()
            },
            state: if spec.start_paused {
                PowerState::Paused
            } else {
                PowerState::Running
            },
            rescued: false,
            console: boot_log(spec),
            volumes: Default::default(),
            volume_snapshots: Default::default(),
        });
        Ok(())
    }
    async fn destroy(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("destroy").await?;
        if let Ok(mut g) = self.guests.lock() {
            g.remove(uuid);
        }
        Ok(())
    }
    async fn power_off(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("power_off").await?;
        self.transition(uuid, &[], PowerState::Shutdown, "power off")
    }
    async fn power_on(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("power_on").await?;
        self.transition(uuid, &[], PowerState::Running, "power on")
    }
    async fn reboot(&self, uuid: &str, hard: bool) -> Result<(), VirtError> {
        self.enter("reboot").await?;
        self.with(uuid, |g| {
            g.state = PowerState::Running;
            g.console.push(format!(
                "[fake] {} reboot",
                if hard { "hard" } else { "soft" }
            ));
            Ok(())
        })
    }
    async fn pause(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("pause").await?;
        self.transition(uuid, &[PowerState::Running], PowerState::Paused, "pause")
    }
    async fn unpause(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("unpause").await?;
        self.transition(uuid, &[PowerState::Paused], PowerState::Running, "unpause")
    }
    async fn suspend(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("suspend").await?;
        self.transition(
            uuid,
            &[PowerState::Running],
            PowerState::Suspended,
            "suspend",
        )
    }
    async fn resume(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("resume").await?;
        self.transition(
            uuid,
            &[PowerState::Suspended],
            PowerState::Running,
            "resume",
        )
    }
    async fn rescue(&self, uuid: &str, _image_id: Option<&str>) -> Result<(), VirtError> {
        self.enter("rescue").await?;
        self.with(uuid, |g| {
            g.rescued = true;
            g.state = PowerState::Running;
            Ok(())
        })
    }
    async fn unrescue(&self, uuid: &str) -> Result<(), VirtError> {
        self.enter("unrescue").await?;
        self.with(uuid, |g| {
            g.rescued = false;
            g.state = PowerState::Running;
            Ok(())
        })
    }
    async fn resize(&self, spec: &GuestSpec) -> Result<(), VirtError> {
        self.enter("resize").await?;
        let mut g = self
            .guests
            .lock()
            .map_err(|_| VirtError::Failed("fake driver state poisoned".into()))?;
        let guest = g.entry(spec.uuid.clone()).or_insert_with(|| Guest {
            spec: spec.clone(),
            state: PowerState::Running,
            rescued: false,
            console: Vec::new(),
            volumes: Default::default(),
            volume_snapshots: Default::default(),
        });
        guest.spec = spec.clone();
        guest.state = PowerState::Running;
        Ok(())
    }
    async fn snapshot(&self, uuid: &str, dest: &std::path::Path) -> Result<u64, VirtError> {
        self.enter("snapshot").await?;
        let data = self.with(uuid, |g| {
            Ok(format!("fake disk of {} ({})\n", g.spec.name, g.spec.uuid).into_bytes())
        })?;
        tokio::fs::write(dest, &data)
            .await
            .map_err(|e| VirtError::Failed(format!("writing {}: {e}", dest.display())))?;
        Ok(data.len() as u64)
    }
    async fn console_output(&self, uuid: &str) -> Result<String, VirtError> {
        self.enter("console_output").await?;
        self.with(uuid, |g| Ok(g.console.join("\n") + "\n"))
    }
    async fn diagnostics(&self, uuid: &str) -> Result<crate::Diagnostics, VirtError> {
        // Nova's fake driver's figures: nothing is measured here.
        self.with(uuid, |g| {
            let running = g.state == PowerState::Running;
            Ok(crate::Diagnostics {
                hypervisor: "fake".into(),
                uptime: running.then_some(46664),
                cpu_times_ns: vec![17_300_000_000; g.spec.vcpus.max(1) as usize],
                disks: vec![crate::DiskStats {
                    name: "vda".into(),
                    read_bytes: 262_144,
                    read_requests: 112,
                    write_bytes: 5_778_432,
                    write_requests: 488,
                    errors_count: 1,
                }],
                nics: g
                    .spec
                    .vifs
                    .iter()
                    .map(|v| crate::NicStats {
                        mac_address: v.mac_address.clone(),
                        name: v.tap_name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                memory_max_mb: g.spec.memory_mb,
                memory_used_mb: 0,
            })
        })
    }
    async fn vnc_socket(&self, uuid: &str) -> Result<std::path::PathBuf, VirtError> {
        // A simulated guest has no screen to show.
        self.with(uuid, |_| {
            Err(VirtError::Unsupported(
                "graphical consoles (the fake driver's guests have no screen)",
            ))
        })
    }
    async fn power_state(&self, uuid: &str) -> Result<PowerState, VirtError> {
        self.with(uuid, |g| Ok(g.state))
    }
    async fn list(&self) -> Vec<String> {
        self.guests
            .lock()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }
    async fn attach_volume(
        &self,
        uuid: &str,
        device: &str,
        connection_info: &ConnectionInfo,
    ) -> Result<(), VirtError> {
        self.enter("attach_volume").await?;
        self.with(uuid, |g| {
            g.volumes
                .insert(device.to_string(), (connection_info.clone(), 0));
            Ok(())
        })
    }
    async fn extend_volume(
        &self,
        uuid: &str,
        device: &str,
        _size: Option<u64>,
    ) -> Result<(), VirtError> {
        self.enter("extend_volume").await?;
        self.with(uuid, |g| {
            let info = g
                .volumes
                .get_mut(device)
                .ok_or_else(|| VirtError::NotFound(format!("no volume at {device}")))?;
            // What the guest would see: one more resize of that disk.
            info.1 += 1;
            Ok(())
        })
    }
    async fn detach_volume(&self, uuid: &str, device: &str) -> Result<(), VirtError> {
        self.enter("detach_volume").await?;
        self.with(uuid, |g| {
            g.volumes.remove(device);
            Ok(())
        })
    }
    async fn attach_interface(&self, uuid: &str, vif: &VifSpec) -> Result<(), VirtError> {
        self.enter("attach_interface").await?;
        self.with(uuid, |g| {
            if !g.spec.vifs.iter().any(|v| v.port_id == vif.port_id) {
                g.spec.vifs.push(vif.clone());
            }
            Ok(())
        })
    }
    async fn detach_interface(&self, uuid: &str, port_id: &str) -> Result<(), VirtError> {
        self.enter("detach_interface").await?;
        self.with(uuid, |g| {
            g.spec.vifs.retain(|v| v.port_id != port_id);
            Ok(())
        })
    }
    async fn volume_snapshot_create(
        &self,
        uuid: &str,
        volume_id: &str,
        create_info: &AssistedSnapshot,
    ) -> Result<(), VirtError> {
        self.enter("volume_snapshot_create").await?;
        let snap = create_info.snapshot_id.clone();
        // A file volume is copied where Block Storage asked, as a
        // hypervisor would (the fake converts no formats).
        let source = self.with(uuid, |g| {
            // Hot-plugged, or one the guest was built with (boot from volume).
            let ci = g
                .volumes
                .values()
                .map(|(ci, _)| ci)
                .chain(
                    g.spec
                        .disks
                        .iter()
                        .filter_map(|d| d.connection_info.as_ref()),
                )
                .find(|ci| ci.data.volume_id.as_deref() == Some(volume_id));
            Ok(ci.and_then(|ci| {
                ci.data
                    .device_path
                    .clone()
                    .map(|p| (p, ci.data.format.clone()))
            }))
        })?;
        let mut made = None;
        if create_info.new_file.is_some() && source.is_none() {
            return Err(VirtError::NotFound(format!(
                "file volume {volume_id} on {uuid}"
            )));
        }
        if let Some((src, format)) = source
            && create_info.new_file.is_some()
        {
            let dest = create_info.target(&src).ok_or_else(|| {
                VirtError::Failed("the snapshot's new_file leaves the volume's directory".into())
            })?;
            if create_info.format.is_some() && create_info.format != format {
                return Err(VirtError::Unsupported("volume snapshot format conversion"));
            }
            std::fs::copy(&src, &dest).map_err(|e| {
                VirtError::Failed(format!("copying {src} to {}: {e}", dest.display()))
            })?;
            made = Some(dest);
        }
        self.with(uuid, |g| {
            g.volume_snapshots
                .insert((volume_id.to_string(), snap), made);
            Ok(())
        })
    }
    async fn volume_snapshot_delete(
        &self,
        uuid: &str,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(), VirtError> {
        self.enter("volume_snapshot_delete").await?;
        let made = self.with(uuid, |g| {
            Ok(g.volume_snapshots
                .remove(&(volume_id.to_string(), snapshot_id.to_string()))
                .flatten())
        })?;
        if let Some(f) = made {
            let _ = std::fs::remove_file(f);
        }
        Ok(())
    }
    async fn volumes(&self, uuid: &str) -> Vec<String> {
        self.with(uuid, |g| Ok(g.volumes.keys().cloned().collect()))
            .unwrap_or_default()
    }
    /// The fake's bus: NICs from slot 3 in the order they were plugged,
    /// then the boot volumes and the attached ones.
    async fn devices(&self, uuid: &str) -> Result<Vec<crate::GuestDevice>, VirtError> {
        use crate::{GuestDevice, GuestDeviceKind};
        self.enter("devices").await?;
        self.with(uuid, |g| {
            let nics = g.spec.vifs.iter().map(|v| GuestDeviceKind::Nic {
                mac: v.mac_address.clone(),
            });
            let boot = g
                .spec
                .disks
                .iter()
                .filter(|d| d.kind == crate::DiskKind::Volume)
                .filter_map(|d| d.volume_id.clone());
            let attached = g
                .volumes
                .values()
                .filter_map(|(ci, _)| ci.data.volume_id.clone());
            let disks = boot
                .chain(attached)
                .map(|serial| GuestDeviceKind::Disk { serial });
            Ok(nics
                .chain(disks)
                .enumerate()
                .map(|(n, kind)| GuestDevice {
                    kind,
                    bus: "pci".into(),
                    address: format!("0000:00:{:02x}.0", n + 3),
                })
                .collect())
        })
    }
    fn inject_failure(&self, op: &str, times: u32) -> bool {
        self.fail_on(op, times);
        true
    }
    async fn adopt(&self, spec: &GuestSpec, state: PowerState) -> Result<(), VirtError> {
        let mut g = self
            .guests
            .lock()
            .map_err(|_| VirtError::Failed("fake driver state poisoned".into()))?;
        g.entry(spec.uuid.clone()).or_insert_with(|| Guest {
            spec: spec.clone(),
            state,
            rescued: false,
            console: vec!["[fake] adopted after restart".into()],
            volumes: Default::default(),
            volume_snapshots: Default::default(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> GuestSpec {
        GuestSpec {
            uuid: id.into(),
            name: "vm".into(),
            vcpus: 1,
            memory_mb: 512,
            root_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            image_id: None,
            user_data: None,
            key_data: None,
            vifs: vec![],
            disks: vec![],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn lifecycle_and_injected_failure() {
        let d = FakeDriver::new(4, 4096, 40);
        d.spawn(&spec("a")).await.unwrap();
        d.spawn(&spec("a")).await.unwrap(); // idempotent
        assert_eq!(d.power_state("a").await.unwrap(), PowerState::Running);
        d.pause("a").await.unwrap();
        assert!(d.suspend("a").await.is_err());
        d.unpause("a").await.unwrap();
        d.power_off("a").await.unwrap();
        assert_eq!(d.power_state("a").await.unwrap(), PowerState::Shutdown);
        d.fail_on("spawn", 1);
        assert!(d.spawn(&spec("b")).await.is_err());
        d.spawn(&spec("b")).await.unwrap();
        d.destroy("a").await.unwrap();
        d.destroy("a").await.unwrap();
        assert_eq!(d.list().await, vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn conformance_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let d = FakeDriver::new(4, 4096, 40);
        crate::conformance::lifecycle(&d, &spec("conformance"), dir.path())
            .await
            .unwrap();
        crate::conformance::paused_start(&d, &spec("paused"))
            .await
            .unwrap();
        d.spawn(&spec("v")).await.unwrap();
        let ci = ConnectionInfo {
            driver_volume_type: "fake".into(),
            data: crate::ConnectionData {
                volume_id: Some("vol-v".into()),
                ..Default::default()
            },
        };
        crate::conformance::volume(&d, "v", "/dev/vdb", &ci)
            .await
            .unwrap();
        // A file volume's snapshot (compared with qemu-img, as on QEMU).
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("vol");
        let mut bytes = vec![0u8; 1 << 20];
        bytes[4096..4111].copy_from_slice(b"ferro-snapshot!");
        std::fs::write(&file, &bytes).unwrap();
        let ci = ConnectionInfo {
            driver_volume_type: "file".into(),
            data: crate::ConnectionData {
                volume_id: Some("vol-1".into()),
                device_path: Some(file.to_string_lossy().into()),
                format: Some("raw".into()),
                ..Default::default()
            },
        };
        if std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok()
        {
            crate::conformance::volume_snapshot(&d, "v", "/dev/vdc", &ci)
                .await
                .unwrap();
        } else {
            ferro_common::skip_or_fail(
                "qemu-img is not installed: the fake's volume snapshot is not compared",
            );
        }
        let vif = crate::VifSpec {
            port_id: "p2".into(),
            mac_address: "fa:16:3e:00:00:02".into(),
            network_id: "n2".into(),
            mtu: Some(1450),
            fixed_ips: vec![],
            tap_name: crate::VifSpec::tap_name_for("p2"),
            model: None,
            tag: None,
        };
        crate::conformance::interface(&d, "v", &vif).await.unwrap();
    }
}
