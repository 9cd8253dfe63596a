//! One suite of cases every [`VirtDriver`] must pass, run against the fake
//! always and against a real driver wherever the host can run it (DESIGN.md
//! §6), so the fake cannot drift from what a hypervisor does. The cases
//! return what went wrong instead of panicking; tests unwrap them.
use crate::{GuestSpec, PowerState, VirtDriver, VirtError};
use std::path::Path;

async fn expect_state(
    d: &dyn VirtDriver,
    uuid: &str,
    want: PowerState,
    step: &str,
) -> Result<(), String> {
    match d.power_state(uuid).await {
        Ok(ps) if ps == want => Ok(()),
        other => Err(format!("{step}: power state {other:?}, expected {want:?}")),
    }
}

fn ok<T>(r: Result<T, VirtError>, step: &str) -> Result<T, String> {
    r.map_err(|e| format!("{step}: {e}"))
}

/// Nova's paused create: a guest spawned with `start_paused` is Paused
/// until unpaused, and its later starts run at once. `spec.uuid` must be
/// unused; the guest is destroyed at the end.
pub async fn paused_start(d: &dyn VirtDriver, spec: &GuestSpec) -> Result<(), String> {
    let uuid = spec.uuid.as_str();
    let paused = GuestSpec {
        start_paused: true,
        ..spec.clone()
    };
    ok(d.spawn(&paused).await, "spawn paused")?;
    expect_state(d, uuid, PowerState::Paused, "after a paused spawn").await?;
    ok(d.unpause(uuid).await, "unpause")?;
    expect_state(d, uuid, PowerState::Running, "after unpause").await?;
    ok(d.power_off(uuid).await, "power_off")?;
    ok(d.power_on(uuid).await, "power_on")?;
    expect_state(d, uuid, PowerState::Running, "a later start").await?;
    ok(d.destroy(uuid).await, "destroy")
}

/// The lifecycle of one guest booted from `spec`: spawn (twice: idempotent),
/// stop/start, soft and hard reboot, pause/unpause, suspend/resume, a
/// snapshot written to a file under `scratch`, the console, destroy (twice)
/// and what a missing guest answers. `spec.uuid` must be unused.
pub async fn lifecycle(d: &dyn VirtDriver, spec: &GuestSpec, scratch: &Path) -> Result<(), String> {
    let uuid = spec.uuid.as_str();
    ok(d.spawn(spec).await, "spawn")?;
    ok(d.spawn(spec).await, "spawn of a guest that exists")?;
    expect_state(d, uuid, PowerState::Running, "after spawn").await?;
    if !d.list().await.iter().any(|u| u == uuid) {
        return Err("list: the new guest is missing".into());
    }
    ok(d.power_off(uuid).await, "power_off")?;
    expect_state(d, uuid, PowerState::Shutdown, "after power_off").await?;
    ok(d.power_on(uuid).await, "power_on")?;
    expect_state(d, uuid, PowerState::Running, "after power_on").await?;
    for hard in [false, true] {
        ok(d.reboot(uuid, hard).await, "reboot")?;
        expect_state(d, uuid, PowerState::Running, "after reboot").await?;
    }
    ok(d.pause(uuid).await, "pause")?;
    expect_state(d, uuid, PowerState::Paused, "after pause").await?;
    ok(d.unpause(uuid).await, "unpause")?;
    expect_state(d, uuid, PowerState::Running, "after unpause").await?;
    ok(d.suspend(uuid).await, "suspend")?;
    expect_state(d, uuid, PowerState::Suspended, "after suspend").await?;
    ok(d.resume(uuid).await, "resume")?;
    expect_state(d, uuid, PowerState::Running, "after resume").await?;
    let file = scratch.join(format!("snapshot-{uuid}"));
    let size = ok(d.snapshot(uuid, &file).await, "snapshot")?;
    let on_disk = std::fs::metadata(&file)
        .map_err(|e| format!("snapshot file {}: {e}", file.display()))?
        .len();
    if size == 0 || size != on_disk {
        return Err(format!(
            "snapshot: reported {size} bytes, file has {on_disk}"
        ));
    }
    let console = ok(d.console_output(uuid).await, "console_output")?;
    if console.trim().is_empty() {
        return Err("console_output: empty".into());
    }
    ok(d.destroy(uuid).await, "destroy")?;
    ok(d.destroy(uuid).await, "destroy of a guest that is gone")?;
    if d.list().await.iter().any(|u| u == uuid) {
        return Err("list: the destroyed guest is still there".into());
    }
    match d.power_state(uuid).await {
        Err(VirtError::NotFound(_)) => {}
        other => return Err(format!("power_state of a destroyed guest: {other:?}")),
    }
    match d.pause(uuid).await {
        Err(VirtError::NotFound(_)) => Ok(()),
        other => Err(format!("pause of a destroyed guest: {other:?}")),
    }
}

/// A volume on a running guest `uuid`: attach (twice: idempotent), listed
/// at its device and on the guest's PCI bus, detach (twice: gone already
/// succeeds), no longer listed.
pub async fn volume(
    d: &dyn VirtDriver,
    uuid: &str,
    device: &str,
    connection_info: &crate::ConnectionInfo,
) -> Result<(), String> {
    ok(
        d.attach_volume(uuid, device, connection_info).await,
        "attach_volume",
    )?;
    ok(
        d.attach_volume(uuid, device, connection_info).await,
        "attach_volume of an attached volume",
    )?;
    let listed = d.volumes(uuid).await;
    if listed.iter().filter(|v| *v == device).count() != 1 {
        return Err(format!("volumes after attach: {listed:?}"));
    }
    let serial = connection_info.data.volume_id.clone().unwrap_or_default();
    let disk = crate::GuestDeviceKind::Disk { serial };
    let found = ok(d.devices(uuid).await, "devices after attach")?;
    if !found
        .iter()
        .any(|x| x.kind == disk && x.bus == "pci" && is_pci_address(&x.address))
    {
        return Err(format!("devices after attach: {found:?}"));
    }
    ok(d.detach_volume(uuid, device).await, "detach_volume")?;
    ok(
        d.detach_volume(uuid, device).await,
        "detach_volume of a detached volume",
    )?;
    let listed = d.volumes(uuid).await;
    if listed.iter().any(|v| v == device) {
        return Err(format!("volumes after detach: {listed:?}"));
    }
    let found = ok(d.devices(uuid).await, "devices after detach")?;
    if found.iter().any(|x| x.kind == disk) {
        return Err(format!("devices after detach: {found:?}"));
    }
    Ok(())
}

/// `0000:00:05.0`: a PCI address as Nova's device metadata shows it.
fn is_pci_address(a: &str) -> bool {
    let b = a.as_bytes();
    a.len() == 12
        && a.starts_with("0000:")
        && b[7] == b':'
        && b[10] == b'.'
        && [5usize, 6, 8, 9, 11]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit())
}

/// A snapshot of a file volume attached to a running guest `uuid` (what
/// Block Storage asks for an in-use volume): attached at `device`, copied
/// beside the volume's file in its format, the copy reads as the volume
/// does (`qemu-img compare`); detached at the end.
pub async fn volume_snapshot(
    d: &dyn VirtDriver,
    uuid: &str,
    device: &str,
    connection_info: &crate::ConnectionInfo,
) -> Result<(), String> {
    let data = &connection_info.data;
    let (Some(volume_id), Some(src)) = (&data.volume_id, &data.device_path) else {
        return Err("volume_snapshot needs a file volume with an id".into());
    };
    let format = data.format.clone().unwrap_or_else(|| "raw".into());
    ok(
        d.attach_volume(uuid, device, connection_info).await,
        "attach_volume",
    )?;
    let name = format!("snapshot-of-{volume_id}");
    let dest = Path::new(src).with_file_name(&name);
    let info = crate::AssistedSnapshot {
        snapshot_id: "s1".into(),
        format: Some(format.clone()),
        new_file: Some(name),
    };
    let made = d.volume_snapshot_create(uuid, volume_id, &info).await;
    let same = tokio::process::Command::new("qemu-img")
        .args(["compare", "-U", "-f", &format, "-F", &format, src])
        .arg(&dest)
        .output()
        .await;
    ok(d.detach_volume(uuid, device).await, "detach_volume")?;
    ok(made, "volume_snapshot_create")?;
    match same {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "the snapshot differs from the volume: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("qemu-img compare: {e}")),
    }
}

/// A NIC on a running guest `uuid`: attach (twice: idempotent), the
/// guest's diagnostics list it; detach (twice: gone already succeeds),
/// no longer listed.
pub async fn interface(d: &dyn VirtDriver, uuid: &str, vif: &crate::VifSpec) -> Result<(), String> {
    let macs = |diag: crate::Diagnostics| -> Vec<String> {
        diag.nics.into_iter().map(|n| n.mac_address).collect()
    };
    ok(d.attach_interface(uuid, vif).await, "attach_interface")?;
    ok(
        d.attach_interface(uuid, vif).await,
        "attach_interface of an attached NIC",
    )?;
    let after = macs(ok(d.diagnostics(uuid).await, "diagnostics")?);
    if after.iter().filter(|m| **m == vif.mac_address).count() != 1 {
        return Err(format!("NICs after attach: {after:?}"));
    }
    let nic = crate::GuestDeviceKind::Nic {
        mac: vif.mac_address.clone(),
    };
    let found = ok(d.devices(uuid).await, "devices after attach")?;
    if !found
        .iter()
        .any(|x| x.kind == nic && x.bus == "pci" && is_pci_address(&x.address))
    {
        return Err(format!("devices after attach: {found:?}"));
    }
    ok(
        d.detach_interface(uuid, &vif.port_id).await,
        "detach_interface",
    )?;
    ok(
        d.detach_interface(uuid, &vif.port_id).await,
        "detach_interface of a detached NIC",
    )?;
    let gone = macs(ok(d.diagnostics(uuid).await, "diagnostics")?);
    if gone.contains(&vif.mac_address) {
        return Err(format!("NICs after detach: {gone:?}"));
    }
    if ok(d.devices(uuid).await, "devices after detach")?
        .iter()
        .any(|x| x.kind == nic)
    {
        return Err("the detached NIC is still a device".into());
    }
    Ok(())
}
