//! The QEMU command line of a guest, as Nova's libvirt driver would have
//! libvirt build it: SMBIOS system information that says OpenStack Nova
//! (cloud-init's datasource detection reads it), disks and NICs on the bus
//! and model the image asks for (virtio by default), the config drive as
//! an IDE CD-ROM, the serial console logged to `console.log`, and QMP.
use super::cache::path_str;
use crate::configdrive::InstanceMetadata;
use crate::{GuestDevice, GuestDeviceKind, GuestSpec, VirtError};
use std::path::{Path, PathBuf};

/// How the guest is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// From `disk.rescue`, the instance's disk attached second.
    Rescue,
    /// Restoring the memory saved in `state.save` (resume).
    Incoming,
}

/// UEFI firmware: the code (read-only) and the guest's own copy of the
/// variable store.
#[derive(Clone, Debug)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

/// Where Debian's `ovmf` package puts the firmware.
const OVMF: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];

/// The firmware the image asks for (`hw_firmware_type=uefi`), if any.
pub fn firmware(spec: &GuestSpec) -> Result<Option<Firmware>, VirtError> {
    match spec.image_properties.get("hw_firmware_type").map(String::as_str) {
        None | Some("bios") => Ok(None),
        Some("uefi") => OVMF
            .iter()
            .find(|(c, v)| Path::new(c).exists() && Path::new(v).exists())
            .map(|(c, v)| {
                Some(Firmware {
                    code: c.into(),
                    vars_template: v.into(),
                })
            })
            .ok_or_else(|| {
                VirtError::Failed(
                    "the image asks for UEFI (hw_firmware_type=uefi) and this host has no OVMF firmware (Debian package ovmf)".into(),
                )
            }),
        Some(other) => Err(VirtError::Failed(format!(
            "hw_firmware_type {other} is not supported (bios, uefi)"
        ))),
    }
}

pub struct Launch<'a> {
    pub spec: &'a GuestSpec,
    pub dir: &'a Path,
    /// `kvm` or `tcg`.
    pub accel: &'a str,
    pub mode: Mode,
    pub kernel: Option<&'a Path>,
    pub ramdisk: Option<&'a Path>,
    pub firmware: Option<&'a Firmware>,
}

impl<'a> Launch<'a> {
    /// A start without a kernel, ramdisk or firmware of its own: enough to
    /// lay out the guest's devices (which none of those move).
    pub fn plain(spec: &'a GuestSpec, dir: &'a Path, accel: &'a str, mode: Mode) -> Launch<'a> {
        Launch {
            spec,
            dir,
            accel,
            mode,
            kernel: None,
            ramdisk: None,
            firmware: None,
        }
    }
}

/// The device of a disk on `bus` (`hw_disk_bus`), with its drive and boot order.
fn disk_device(
    bus: &str,
    drive: &str,
    index: usize,
    boot: Option<usize>,
    slot: Option<u8>,
) -> Result<Vec<String>, VirtError> {
    let boot = boot.map(|b| format!(",bootindex={b}")).unwrap_or_default();
    Ok(match bus {
        "virtio" => vec![
            "-device".into(),
            format!(
                "virtio-blk-pci,drive={drive}{boot}{}",
                slot.map(|s| format!(",addr={s:#x}")).unwrap_or_default()
            ),
        ],
        "scsi" => vec![
            "-device".into(),
            format!("scsi-hd,bus=scsi0.0,drive={drive}{boot}"),
        ],
        // IDE: two disks per channel; channel 1 unit 1 is kept for the config drive.
        "ide" if index < 3 => vec![
            "-device".into(),
            format!(
                "ide-hd,bus=ide.{},unit={},drive={drive}{boot}",
                index / 2,
                index % 2
            ),
        ],
        "sata" => vec![
            "-device".into(),
            format!("ide-hd,bus=ahci0.{index},drive={drive}{boot}"),
        ],
        "ide" => {
            return Err(VirtError::Failed(
                "too many disks for the IDE bus (3 and the config drive)".into(),
            ));
        }
        other => {
            return Err(VirtError::Failed(format!(
                "hw_disk_bus {other} is not supported (virtio, scsi, ide, sata)"
            )));
        }
    })
}

pub(crate) fn nic_model(model: Option<&str>) -> Result<&'static str, VirtError> {
    Ok(match model.unwrap_or("virtio") {
        "virtio" => "virtio-net-pci",
        "e1000" => "e1000",
        "e1000e" => "e1000e",
        "rtl8139" => "rtl8139",
        "ne2k_pci" => "ne2k_pci",
        "pcnet" => "pcnet",
        other => {
            return Err(VirtError::Failed(format!(
                "hw_vif_model {other} is not supported"
            )));
        }
    })
}

/// The display device of the image's `hw_video_model` (libvirt's names);
/// `None` for `none`, a guest without graphics (and without VNC).
fn video_device(model: Option<&str>) -> Result<Option<&'static str>, VirtError> {
    Ok(Some(match model.unwrap_or("vga") {
        "vga" => "VGA",
        "cirrus" => "cirrus-vga",
        "vmvga" => "vmware-svga",
        "qxl" => "qxl-vga",
        "virtio" => "virtio-vga",
        "bochs" => "bochs-display",
        "none" => return Ok(None),
        other => {
            return Err(VirtError::Failed(format!(
                "hw_video_model {other} is not supported (vga, cirrus, vmvga, qxl, virtio, bochs, none)"
            )));
        }
    }))
}

/// The whole command line (without the program).
pub fn argv(l: &Launch) -> Result<Vec<String>, VirtError> {
    layout(l).map(|(argv, _)| argv)
}

/// The PCI slots of a guest's bus 0, handed out in command-line order as
/// libvirt assigns them when it defines a domain, so that where each NIC
/// and volume is is known before the guest starts (its config drive says
/// so). Slot 0 is the host bridge; `pc` has its PIIX3 at slot 1, `q35`
/// its ICH9 at slot 0x1f.
struct Slots {
    next: u8,
    last: u8,
}

impl Slots {
    fn for_machine(machine: &str) -> Slots {
        if machine == "q35" {
            Slots {
                next: 1,
                last: 0x1e,
            }
        } else {
            Slots {
                next: 2,
                last: 0x1f,
            }
        }
    }
    fn take(&mut self) -> Result<u8, VirtError> {
        if self.next > self.last {
            return Err(VirtError::Failed(
                "too many PCI devices for the guest's bus".into(),
            ));
        }
        self.next += 1;
        Ok(self.next - 1)
    }
}

/// A PCI address as Nova's device metadata shows it.
pub fn pci_address(slot: u8, function: u8) -> String {
    format!("0000:00:{slot:02x}.{function:x}")
}

/// The command line and where it puts the guest's NICs and volumes.
pub fn layout(l: &Launch) -> Result<(Vec<String>, Vec<GuestDevice>), VirtError> {
    let s = l.spec;
    let d = |name: &str| path_str(&l.dir.join(name));
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    push(&[
        "-name",
        &format!("guest=instance-{},debug-threads=on", s.uuid),
    ]);
    push(&["-uuid", &s.uuid]);
    let machine = s
        .image_properties
        .get("hw_machine_type")
        .map(String::as_str)
        .unwrap_or("pc");
    if !matches!(machine, "pc" | "q35") && !machine.starts_with("pc-") {
        return Err(VirtError::Failed(format!(
            "hw_machine_type {machine} is not supported (pc, q35)"
        )));
    }
    push(&["-machine", machine]);
    let mut slots = Slots::for_machine(machine);
    let mut placed: Vec<GuestDevice> = Vec::new();
    if l.accel == "kvm" {
        push(&["-accel", "kvm", "-cpu", "host"]);
    } else {
        push(&["-accel", &format!("tcg,tb-size={}", super::TCG_TB_SIZE_MB)]);
    }
    push(&["-sandbox", super::confine::SANDBOX]);
    push(&["-m", &s.memory_mb.max(16).to_string()]);
    push(&["-smp", &s.vcpus.max(1).to_string()]);
    push(&[
        "-smbios",
        &format!(
            "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,version={},serial={},uuid={},family=Virtual Machine",
            env!("CARGO_PKG_VERSION"),
            s.uuid,
            s.uuid
        ),
    ]);
    push(&["-no-user-config", "-nodefaults", "-display", "none"]);
    // The screen, served by QEMU's VNC server on a socket of the guest's
    // own directory; the console proxy reaches it there (no TCP port).
    if let Some(dev) = video_device(s.image_properties.get("hw_video_model").map(String::as_str))? {
        push(&["-device", &format!("{dev},addr={:#x}", slots.take()?)]);
        push(&["-vnc", &format!("unix:{}", d(super::VNC_SOCKET)?)]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", d("run/qmp.sock")?),
    ]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
            d("run/serial.sock")?,
            d("console.log")?
        ),
    ]);
    push(&["-serial", "chardev:console"]);
    if let Some(fw) = l.firmware {
        let vars = l.dir.join("nvram.fd");
        if !vars.exists() {
            std::fs::copy(&fw.vars_template, &vars)
                .map_err(|e| VirtError::Failed(format!("{}: {e}", vars.display())))?;
        }
        push(&[
            "-drive",
            &format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                path_str(&fw.code)?
            ),
        ]);
        push(&[
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", path_str(&vars)?),
        ]);
    }
    if l.mode != Mode::Rescue
        && let Some(k) = l.kernel
    {
        push(&["-kernel", &path_str(k)?]);
        if let Some(r) = l.ramdisk {
            push(&["-initrd", &path_str(r)?]);
        }
        let cmdline = s
            .image_properties
            .get("os_command_line")
            .cloned()
            .unwrap_or_else(|| "root=/dev/vda console=tty0 console=ttyS0".into());
        push(&["-append", &cmdline]);
    }
    let bus = s
        .image_properties
        .get("hw_disk_bus")
        .map(String::as_str)
        .unwrap_or("virtio");
    if bus == "scsi" {
        push(&[
            "-device",
            &format!("virtio-scsi-pci,id=scsi0,addr={:#x}", slots.take()?),
        ]);
    }
    if bus == "sata" && machine == "pc" {
        push(&[
            "-device",
            &format!("ahci,id=ahci0,addr={:#x}", slots.take()?),
        ]);
    }
    let mut disks: Vec<(&str, &str)> = Vec::new();
    if l.mode == Mode::Rescue {
        disks.push(("disk.rescue", "qcow2"));
    }
    for (file, fmt) in [
        ("disk", "qcow2"),
        ("disk.eph0", "qcow2"),
        ("disk.swap", "raw"),
    ] {
        if l.dir.join(file).exists() {
            disks.push((file, fmt));
        }
    }
    for (n, (file, fmt)) in disks.iter().enumerate() {
        let id = format!("drive{n}");
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id={id},format={fmt},discard=unmap",
                d(file)?
            ),
        ]);
        let boot = (n == 0 && l.kernel.is_none()).then_some(1);
        let slot = if bus == "virtio" {
            Some(slots.take()?)
        } else {
            None
        };
        for x in disk_device(bus, &id, n, boot, slot)? {
            push(&[&x]);
        }
    }
    if l.dir.join("disk.config").exists() {
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id=config,format=raw,readonly=on,media=cdrom",
                d("disk.config")?
            ),
        ]);
        let cd = if machine == "q35" {
            "ide-cd,bus=ide.2,drive=config"
        } else {
            "ide-cd,bus=ide.1,unit=1,drive=config"
        };
        push(&["-device", cd]);
    }
    for v in &s.vifs {
        let model = nic_model(v.model.as_deref())?;
        let (netdev, id) = (
            super::nics::netdev_id(&v.tap_name),
            super::nics::device_id(&v.tap_name),
        );
        push(&[
            "-netdev",
            &format!(
                "tap,id={netdev},ifname={},script=no,downscript=no",
                v.tap_name
            ),
        ]);
        let mtu = match (model, v.mtu) {
            ("virtio-net-pci", Some(m)) => format!(",host_mtu={m}"),
            _ => String::new(),
        };
        let slot = slots.take()?;
        push(&[
            "-device",
            &format!(
                "{model},netdev={netdev},mac={}{mtu},id={id},addr={slot:#x}",
                v.mac_address
            ),
        ]);
        placed.push(GuestDevice {
            kind: GuestDeviceKind::Nic {
                mac: v.mac_address.clone(),
            },
            bus: "pci".into(),
            address: pci_address(slot, 0),
        });
    }
    for (device, vol) in super::volumes::load(l.dir) {
        let slot = slots.take()?;
        for x in vol.argv(&device, slot) {
            push(&[&x]);
        }
        placed.push(GuestDevice {
            kind: GuestDeviceKind::Disk {
                serial: vol.volume_id.clone(),
            },
            bus: "pci".into(),
            address: pci_address(slot, 0),
        });
    }
    push(&[
        "-device",
        &format!("virtio-balloon-pci,addr={:#x}", slots.take()?),
    ]);
    if l.spec.start_paused && l.mode == Mode::Normal {
        // Its CPUs wait for QMP `cont` (Nova's paused create while the
        // ports are wired).
        push(&["-S"]);
    }
    if l.mode == Mode::Incoming {
        // The agent feeds `state.save` in over a socket (see `save`).
        push(&["-incoming", "defer"]);
    }
    Ok((a, placed))
}

/// What the config drive shows of the guest (Nova's `InstanceMetadata`),
/// its tagged devices where `devices` places them.
pub fn instance_metadata(s: &GuestSpec, devices: &[GuestDevice]) -> InstanceMetadata {
    let mut md = ferro_rpc::metadata::from_spec(s);
    md.devices = ferro_rpc::metadata::tagged_devices(s, devices);
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VifSpec;
    use std::collections::BTreeMap;

    fn spec() -> GuestSpec {
        GuestSpec {
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            name: "vm".into(),
            vcpus: 2,
            memory_mb: 128,
            vifs: vec![VifSpec {
                port_id: "0123456789abcdef".into(),
                mac_address: "fa:16:3e:00:00:01".into(),
                network_id: "n".into(),
                mtu: Some(1450),
                fixed_ips: vec!["10.0.0.3".into()],
                tap_name: VifSpec::tap_name_for("0123456789abcdef"),
                model: None,
                tag: None,
            }],
            ..Default::default()
        }
    }

    fn line(spec: &GuestSpec, dir: &Path, mode: Mode) -> String {
        argv(&Launch::plain(spec, dir, "tcg", mode))
            .unwrap()
            .join(" ")
    }

    #[test]
    fn the_guest_sees_openstack_nova() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("disk"), b"").unwrap();
        std::fs::write(dir.path().join("disk.config"), b"").unwrap();
        std::fs::write(dir.path().join("disk.eph0"), b"").unwrap();
        std::fs::write(dir.path().join("disk.swap"), b"").unwrap();
        let s = spec();
        let l = line(&s, dir.path(), Mode::Normal);
        // Root, then the flavor's ephemeral and swap disks.
        assert!(
            l.contains("disk.eph0,if=none,id=drive1,format=qcow2"),
            "{l}"
        );
        assert!(l.contains("disk.swap,if=none,id=drive2,format=raw"), "{l}");
        assert!(l.contains("product=OpenStack Nova"), "{l}");
        assert!(l.contains(&format!("serial={0},uuid={0}", s.uuid)), "{l}");
        assert!(l.contains("-machine pc -accel tcg,tb-size=128"), "{l}");
        assert!(
            l.contains(&format!("-sandbox {}", super::super::confine::SANDBOX)),
            "{l}"
        );
        assert!(l.contains("virtio-blk-pci,drive=drive0,bootindex=1"), "{l}");
        assert!(l.contains("ide-cd,bus=ide.1,unit=1,drive=config"), "{l}");
        assert!(
            l.contains("tap,id=net-tap0123456789a,ifname=tap0123456789a,script=no"),
            "{l}"
        );
        assert!(
            l.contains("virtio-net-pci,netdev=net-tap0123456789a,mac=fa:16:3e:00:00:01,host_mtu=1450,id=nic-tap0123456789a"),
            "{l}"
        );
        assert!(!l.contains("-incoming"));
        assert!(!l.split(' ').any(|a| a == "-S"), "{l}");
        // Nova's paused create: the CPUs wait for `cont`.
        let paused = GuestSpec {
            start_paused: true,
            ..s.clone()
        };
        let l = line(&paused, dir.path(), Mode::Normal);
        assert!(l.split(' ').any(|a| a == "-S"), "{l}");
        // The image's bus and NIC model are honoured; rescue boots its disk first.
        let mut s2 = s.clone();
        s2.image_properties = BTreeMap::from([
            ("hw_disk_bus".to_string(), "scsi".to_string()),
            ("hw_vif_model".to_string(), "e1000".to_string()),
        ]);
        s2.vifs[0].model = Some("e1000".into());
        std::fs::write(dir.path().join("disk.rescue"), b"").unwrap();
        let l = line(&s2, dir.path(), Mode::Rescue);
        assert!(l.contains("virtio-scsi-pci,id=scsi0"), "{l}");
        assert!(
            l.contains("scsi-hd,bus=scsi0.0,drive=drive0,bootindex=1"),
            "{l}"
        );
        assert!(l.contains("disk.rescue,if=none,id=drive0"), "{l}");
        assert!(l.contains("e1000,netdev=net-tap"), "{l}");
        s2.image_properties
            .insert("hw_disk_bus".into(), "floppy".into());
        assert!(argv(&Launch::plain(&s2, dir.path(), "tcg", Mode::Normal)).is_err());
    }

    /// Every PCI device has its slot on the command line, in order, so
    /// the config drive can say where each NIC and volume is before QEMU
    /// starts.
    #[test]
    fn nics_and_volumes_have_fixed_pci_slots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("disk"), b"").unwrap();
        let vol = crate::ConnectionInfo {
            driver_volume_type: "file".into(),
            data: crate::ConnectionData {
                volume_id: Some("vvvvvvvv-1111-2222-3333-444444444444".into()),
                device_path: Some("/v/vol".into()),
                format: Some("raw".into()),
                ..Default::default()
            },
        };
        let a = super::super::volumes::from_connection(&vol).unwrap();
        super::super::volumes::save(dir.path(), &BTreeMap::from([("/dev/vdb".to_string(), a)]))
            .unwrap();
        let mut s = spec();
        s.vifs[0].tag = Some("port-1".into());
        let launch =
            |s: &GuestSpec| layout(&Launch::plain(s, dir.path(), "tcg", Mode::Normal)).unwrap();
        let (args, placed) = launch(&s);
        let l = args.join(" ");
        // pc: VGA at 2, the root disk at 3, the NIC at 4, the volume at 5.
        assert!(l.contains("VGA,addr=0x2"), "{l}");
        assert!(l.contains("drive=drive0,bootindex=1,addr=0x3"), "{l}");
        assert!(l.contains("id=nic-tap0123456789a,addr=0x4"), "{l}");
        assert!(
            l.contains("id=dev-vdb,serial=vvvvvvvv-1111-2222-3,addr=0x5"),
            "{l}"
        );
        assert!(l.contains("virtio-balloon-pci,addr=0x6"), "{l}");
        assert_eq!(
            placed,
            vec![
                GuestDevice {
                    kind: GuestDeviceKind::Nic {
                        mac: "fa:16:3e:00:00:01".into()
                    },
                    bus: "pci".into(),
                    address: "0000:00:04.0".into(),
                },
                GuestDevice {
                    kind: GuestDeviceKind::Disk {
                        serial: "vvvvvvvv-1111-2222-3333-444444444444".into()
                    },
                    bus: "pci".into(),
                    address: "0000:00:05.0".into(),
                },
            ]
        );
        // The config drive lists the tagged NIC only.
        let md = instance_metadata(&s, &placed);
        let j = ferro_rpc::metadata::meta_data(&md, "latest");
        assert_eq!(j["devices"].as_array().unwrap().len(), 1, "{j}");
        assert_eq!(j["devices"][0]["address"], "0000:00:04.0");
        assert_eq!(j["devices"][0]["tags"], serde_json::json!(["port-1"]));
        // q35 starts at slot 1 (its chipset is at 0x1f).
        s.image_properties
            .insert("hw_machine_type".into(), "q35".into());
        let (_, placed) = launch(&s);
        assert_eq!(placed[0].address, "0000:00:03.0");
        // More devices than slots is an error, not a clash.
        s.vifs = (0..40)
            .map(|n| VifSpec {
                tap_name: format!("tap{n:011}"),
                mac_address: format!("fa:16:3e:00:00:{n:02x}"),
                ..s.vifs[0].clone()
            })
            .collect();
        assert!(layout(&Launch::plain(&s, dir.path(), "tcg", Mode::Normal)).is_err());
    }

    #[test]
    fn metadata_for_the_config_drive() {
        let mut s = spec();
        s.key_name = Some("k".into());
        s.key_data = Some("ssh-ed25519 AAAA".into());
        s.user_data = Some("aGVsbG8=".into());
        let md = instance_metadata(&s, &[]);
        assert_eq!(md.user_data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            md.public_keys,
            vec![("k".into(), "ssh-ed25519 AAAA".into())]
        );
        assert_eq!(md.local_ipv4.as_deref(), Some("10.0.0.3"));
        assert_eq!(
            md.network_data["links"][0]["ethernet_mac_address"],
            "fa:16:3e:00:00:01"
        );
        assert_eq!(md.network_data["networks"][0]["type"], "ipv4_dhcp");
        assert_eq!(md.ec2_id, "i-11111111");
    }
}
