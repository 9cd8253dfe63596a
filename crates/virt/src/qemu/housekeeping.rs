//! What the driver does on its own, periodically: rotating guests' console
//! logs (virtlogd's `max_size` and `max_backups`, which libvirt guests get
//! from Nova's hosts) and ageing the image cache (Nova's image cache
//! manager: a base no guest uses, untouched for
//! `remove_unused_original_minimum_age_seconds`, is removed when
//! `remove_unused_base_images` is on).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// virtlogd's defaults.
pub const LOG_MAX_SIZE: u64 = 2 * 1024 * 1024;
pub const LOG_MAX_BACKUPS: usize = 3;

/// Rotates `log` once it is over `max`: `log.N` becomes `log.N+1` (the
/// oldest beyond `backups` goes), a copy of `log` becomes `log.0`, and `log`
/// is emptied in place (QEMU appends to the file it holds open, so it
/// continues at the start). Returns whether it rotated.
pub fn rotate_console(log: &Path, max: u64, backups: usize) -> std::io::Result<bool> {
    let len = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max || backups == 0 {
        return Ok(false);
    }
    let name = |n: usize| PathBuf::from(format!("{}.{n}", log.display()));
    let _ = std::fs::remove_file(name(backups - 1));
    for n in (0..backups - 1).rev() {
        if name(n).exists() {
            std::fs::rename(name(n), name(n + 1))?;
        }
    }
    std::fs::copy(log, name(0))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)?;
    Ok(true)
}

/// The image ids the guests under `instances` use (their image, kernel,
/// ramdisk and rescue image).
pub fn images_in_use(instances: &Path) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(instances) else {
        return used;
    };
    for e in rd.filter_map(Result::ok) {
        let dir = e.path();
        if let Ok(raw) = std::fs::read(dir.join("spec.json"))
            && let Ok(spec) = serde_json::from_slice::<crate::GuestSpec>(&raw)
        {
            used.extend(spec.image_id);
            for k in ["kernel_id", "ramdisk_id"] {
                used.extend(spec.image_properties.get(k).cloned());
            }
        }
        if let Ok(r) = std::fs::read_to_string(dir.join("rescue_image")) {
            used.insert(r.trim().to_string());
        }
    }
    used
}

/// The bases in `base_dir` that no guest uses and nobody touched for
/// `min_age` (a boot touches the base it uses).
pub fn unused_bases(
    base_dir: &Path,
    used: &BTreeSet<String>,
    min_age: Duration,
    now: SystemTime,
) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(base_dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // In-flight downloads and conversions are not bases yet.
            !name.contains('.') && !used.contains(&name)
        })
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= min_age)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_logs_rotate_in_place() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(&log, vec![b'a'; 100]).unwrap();
        assert!(!rotate_console(&log, 1000, 3).unwrap());
        for round in 0..4u8 {
            std::fs::write(&log, vec![b'0' + round; 2000]).unwrap();
            assert!(rotate_console(&log, 1000, 3).unwrap());
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        let read = |n: usize| std::fs::read(d.path().join(format!("console.log.{n}"))).unwrap();
        assert_eq!(read(0)[0], b'3');
        assert_eq!(read(1)[0], b'2');
        assert_eq!(read(2)[0], b'1');
        assert!(!d.path().join("console.log.3").exists(), "only 3 backups");
        assert!(!rotate_console(&d.path().join("none"), 1, 3).unwrap());
    }

    #[test]
    fn only_old_unused_bases_age_out() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("instances");
        let base = inst.join("_base");
        std::fs::create_dir_all(inst.join("vm1")).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        let spec = crate::GuestSpec {
            uuid: "vm1".into(),
            image_id: Some("img-used".into()),
            image_properties: [("kernel_id".to_string(), "img-kernel".to_string())].into(),
            ..Default::default()
        };
        std::fs::write(
            inst.join("vm1/spec.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        for f in ["img-used", "img-kernel", "img-old", "img-new.part"] {
            std::fs::write(base.join(f), b"x").unwrap();
        }
        let used = images_in_use(&inst);
        assert_eq!(
            used,
            ["img-kernel", "img-used"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let later = SystemTime::now() + Duration::from_secs(90_000);
        let gone = unused_bases(&base, &used, Duration::from_secs(86_400), later);
        assert_eq!(gone, vec![base.join("img-old")]);
        let soon = SystemTime::now() + Duration::from_secs(60);
        assert!(unused_bases(&base, &used, Duration::from_secs(86_400), soon).is_empty());
    }
}
