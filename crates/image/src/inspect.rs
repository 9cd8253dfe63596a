//! Disk-image format inspection, as Glance's format inspector does: the
//! declared `disk_format` must match the bytes, and formats that can point
//! outside themselves (qcow2 backing files or external data files, VMDK
//! extents in other files) are refused. Works on the first bytes of the
//! image (the header region), so it runs while the upload streams.

/// How many leading bytes the inspector wants before it decides.
pub const HEADER_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Qcow2,
    Vmdk,
    Vhd,
    Vhdx,
    Iso,
    Vdi,
    /// No known container header: plain bytes.
    Raw,
}

impl Detected {
    pub fn name(self) -> &'static str {
        match self {
            Detected::Qcow2 => "qcow2",
            Detected::Vmdk => "vmdk",
            Detected::Vhd => "vhd",
            Detected::Vhdx => "vhdx",
            Detected::Iso => "iso",
            Detected::Vdi => "vdi",
            Detected::Raw => "raw",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Inspection {
    pub format: Detected,
    /// Virtual disk size from the header, when the format records one.
    pub virtual_size: Option<u64>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Looks at the header bytes; `Err` with a reason for unsafe images.
pub fn inspect(head: &[u8]) -> Result<Inspection, String> {
    if head.starts_with(b"QFI\xfb") {
        let version = be32(head, 4).ok_or("truncated qcow2 header")?;
        if !(2..=3).contains(&version) {
            return Err(format!("unsupported qcow2 version {version}"));
        }
        let backing_offset = be64(head, 8).ok_or("truncated qcow2 header")?;
        if backing_offset != 0 {
            return Err("qcow2 images with a backing file are not allowed".into());
        }
        if version == 3 {
            let incompatible = be64(head, 72).ok_or("truncated qcow2 header")?;
            if incompatible & (1 << 2) != 0 {
                return Err("qcow2 images with an external data file are not allowed".into());
            }
            // Header extensions: refuse an external data file name (type 0x44415441).
            let hdr_len = be32(head, 100).unwrap_or(104) as usize;
            let mut off = hdr_len.max(72);
            while let (Some(ty), Some(len)) = (be32(head, off), be32(head, off + 4)) {
                if ty == 0 {
                    break;
                }
                if ty == 0x4441_5441 {
                    return Err("qcow2 images with an external data file are not allowed".into());
                }
                off += 8 + (len as usize).div_ceil(8) * 8;
                if off > head.len() {
                    break;
                }
            }
        }
        return Ok(Inspection {
            format: Detected::Qcow2,
            virtual_size: be64(head, 24),
        });
    }
    if head.starts_with(b"KDMV") {
        // Sparse extent header: capacity in sectors at 12, descriptor at 28 (sectors) size 36.
        let capacity = le64(head, 12).map(|s| s * 512);
        let desc_off = le64(head, 28).unwrap_or(0) as usize * 512;
        let desc_len = le64(head, 36).unwrap_or(0) as usize * 512;
        if desc_off > 0 && desc_len > 0 {
            let end = (desc_off + desc_len).min(head.len());
            if desc_off < end {
                check_vmdk_descriptor(&String::from_utf8_lossy(&head[desc_off..end]))?;
            }
        }
        return Ok(Inspection {
            format: Detected::Vmdk,
            virtual_size: capacity,
        });
    }
    if head.starts_with(b"# Disk DescriptorFile") {
        // A descriptor-only VMDK always refers to other files.
        check_vmdk_descriptor(&String::from_utf8_lossy(head))?;
        return Err("VMDK descriptor files refer to external extents and are not allowed".into());
    }
    if head.starts_with(b"vhdxfile") {
        return Ok(Inspection {
            format: Detected::Vhdx,
            virtual_size: None,
        });
    }
    if head.starts_with(b"conectix") {
        // Dynamic VHD: a copy of the footer leads the file; current size at 48.
        return Ok(Inspection {
            format: Detected::Vhd,
            virtual_size: be64(head, 48),
        });
    }
    if head.len() >= 0x44 && le32(head, 0x40) == Some(0xbeda_107f) {
        return Ok(Inspection {
            format: Detected::Vdi,
            virtual_size: le64(head, 0x170),
        });
    }
    if head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001" {
        return Ok(Inspection {
            format: Detected::Iso,
            virtual_size: None,
        });
    }
    Ok(Inspection {
        format: Detected::Raw,
        virtual_size: None,
    })
}

fn check_vmdk_descriptor(desc: &str) -> Result<(), String> {
    for line in desc.lines() {
        let l = line.trim();
        // Extent lines: RW 2048 SPARSE "other-file.vmdk"
        if (l.starts_with("RW ") || l.starts_with("RDONLY ") || l.starts_with("NOACCESS "))
            && l.contains('"')
        {
            return Err("VMDK images with extents in other files are not allowed".into());
        }
    }
    Ok(())
}

/// Does what the bytes are agree with the declared `disk_format`?
/// Container-less formats (`ami`, `ari`, `aki`) and `raw` accept plain bytes;
/// `raw` also refuses bytes that are really another container format, since
/// a qcow2 declared raw would be booted with its header interpreted as data.
pub fn matches(declared: &str, detected: Detected) -> Result<(), String> {
    let ok = match declared {
        "qcow2" | "vmdk" | "vhd" | "vhdx" | "iso" | "vdi" => {
            declared == detected.name()
            // an ISO may carry a hybrid MBR and be detected as raw
            || (declared == "iso" && detected == Detected::Raw)
        }
        "raw" => matches!(detected, Detected::Raw | Detected::Iso),
        "ami" | "ari" | "aki" | "ploop" => detected == Detected::Raw,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Image data does not match the declared disk_format {declared} (the data is {}).",
            detected.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2(version: u32, size: u64, backing: bool, extfile: bool) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&version.to_be_bytes());
        if backing {
            h[8..16].copy_from_slice(&512u64.to_be_bytes());
            h[16..20].copy_from_slice(&8u32.to_be_bytes());
        }
        h[24..32].copy_from_slice(&size.to_be_bytes());
        if version == 3 {
            h[100..104].copy_from_slice(&104u32.to_be_bytes());
            if extfile {
                h[72..80].copy_from_slice(&4u64.to_be_bytes());
            }
        }
        h
    }

    #[test]
    fn qcow2_checks() {
        assert_eq!(
            inspect(&qcow2(3, 1 << 30, false, false)).unwrap(),
            Inspection {
                format: Detected::Qcow2,
                virtual_size: Some(1 << 30)
            }
        );
        assert!(
            inspect(&qcow2(2, 1 << 30, true, false))
                .unwrap_err()
                .contains("backing file")
        );
        assert!(
            inspect(&qcow2(3, 1 << 30, false, true))
                .unwrap_err()
                .contains("external data file")
        );
    }

    #[test]
    fn declared_format_must_match() {
        assert!(
            matches(
                "qcow2",
                inspect(b"hello world, not an image").unwrap().format
            )
            .is_err()
        );
        assert!(matches("raw", inspect(&qcow2(3, 10, false, false)).unwrap().format).is_err());
        assert!(matches("raw", Detected::Raw).is_ok());
        assert!(matches("ami", Detected::Raw).is_ok());
        assert!(matches("vmdk", Detected::Qcow2).is_err());
    }

    #[test]
    fn vmdk_descriptor_with_external_extent_is_refused() {
        let d = b"# Disk DescriptorFile\nversion=1\nRW 2048 FLAT \"/etc/passwd\" 0\n";
        assert!(inspect(d).is_err());
    }
}
