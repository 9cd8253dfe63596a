//! The host's image cache (Nova's `_base`): an image is fetched once per
//! host, however many boots ask at the same time; inspected with
//! `qemu-img info` under resource limits (as Nova does, since a crafted
//! image can make qemu-img burn CPU and memory); refused when it names a
//! backing file (a qcow2 header can point at any file of the host); and
//! kept as raw or qcow2, converting other formats to qcow2 once.
use super::run;
use crate::{ImageSource, VirtError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Formats a base may stay in; anything else QEMU reads is converted.
const KEPT: &[&str] = &["raw", "qcow2"];
/// Formats accepted at all (what Nova's format inspector allows).
const ACCEPTED: &[&str] = &["raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed"];

/// What `qemu-img info` says of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
}

pub struct ImageCache {
    dir: PathBuf,
    qemu_img: String,
    /// One lock per image id, so concurrent boots share one download.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An image id as a file name (ids are UUIDs; anything else is refused
/// rather than risk a path outside the cache).
fn safe_id(id: &str) -> Result<&str, VirtError> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(VirtError::Failed(format!("invalid image id {id:?}")))
    }
}

impl ImageCache {
    pub fn new(dir: PathBuf, qemu_img: String) -> ImageCache {
        ImageCache {
            dir,
            qemu_img,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Where the base of `id` lives once cached.
    pub fn path(&self, id: &str) -> Result<PathBuf, VirtError> {
        Ok(self.dir.join(safe_id(id)?))
    }

    /// The cached base of `id`, if there is one.
    pub fn cached(&self, id: &str) -> Option<PathBuf> {
        self.path(id).ok().filter(|p| p.is_file())
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    /// The base of `id`, fetched from `source` and prepared if it is not
    /// cached yet.
    pub async fn ensure(&self, id: &str, source: &dyn ImageSource) -> Result<PathBuf, VirtError> {
        let base = self.path(id)?;
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        if base.is_file() {
            return Ok(base);
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| VirtError::Failed(format!("{}: {e}", self.dir.display())))?;
        let part = self.dir.join(format!("{id}.part"));
        let _ = tokio::fs::remove_file(&part).await;
        let r = async {
            let declared = source.fetch(id, &part).await?;
            let info = self.info(&part).await?;
            if !ACCEPTED.contains(&info.format.as_str()) {
                return Err(VirtError::Failed(format!(
                    "image {id} is in format {}, which cannot be booted",
                    info.format
                )));
            }
            // Kernels, ramdisks and ISOs are raw to qemu-img.
            let raw_kinds = ["iso", "aki", "ari", "ami"];
            if declared != info.format
                && !(raw_kinds.contains(&declared.as_str()) && info.format == "raw")
            {
                tracing_hint(id, &declared, &info.format);
            }
            if KEPT.contains(&info.format.as_str()) {
                tokio::fs::rename(&part, &base)
                    .await
                    .map_err(|e| VirtError::Failed(format!("{}: {e}", base.display())))?;
            } else {
                let conv = self.dir.join(format!("{id}.converting"));
                run(
                    &self.qemu_img,
                    &[
                        "convert",
                        "-f",
                        &info.format,
                        "-O",
                        "qcow2",
                        &path_str(&part)?,
                        &path_str(&conv)?,
                    ],
                )
                .await?;
                tokio::fs::rename(&conv, &base)
                    .await
                    .map_err(|e| VirtError::Failed(format!("{}: {e}", base.display())))?;
            }
            Ok(base.clone())
        }
        .await;
        let _ = tokio::fs::remove_file(&part).await;
        r
    }

    /// `qemu-img info -U` of a file another process (a guest) holds open.
    pub async fn info_shared(&self, file: &Path) -> Result<ImageInfo, VirtError> {
        let out = run(
            &self.qemu_img,
            &["info", "-U", "--output=json", &path_str(file)?],
        )
        .await?;
        parse_info(&out)
    }

    /// `qemu-img info` of `file`, under an address-space and CPU-time limit
    /// (Nova's `QEMU_IMG_LIMITS`: 1 GiB, 30 s); refuses backing files and
    /// data files.
    pub async fn info(&self, file: &Path) -> Result<ImageInfo, VirtError> {
        let out = run(
            "prlimit",
            &[
                "--as=1073741824",
                "--cpu=30",
                &self.qemu_img,
                "info",
                "--output=json",
                &path_str(file)?,
            ],
        )
        .await?;
        parse_info(&out)
    }
}

/// The format and size from `qemu-img info --output=json`; an image that
/// refers to another file (backing or external data file) is refused.
pub fn parse_info(json: &str) -> Result<ImageInfo, VirtError> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| VirtError::Failed(format!("qemu-img info: {e}")))?;
    if v.get("backing-filename").is_some() || v.get("full-backing-filename").is_some() {
        return Err(VirtError::Failed(
            "image refused: it names a backing file".into(),
        ));
    }
    if v.pointer("/format-specific/data/data-file").is_some() {
        return Err(VirtError::Failed(
            "image refused: it names an external data file".into(),
        ));
    }
    Ok(ImageInfo {
        format: v["format"].as_str().unwrap_or_default().to_string(),
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
    })
}

fn tracing_hint(id: &str, declared: &str, found: &str) {
    tracing::warn!(
        image = id,
        "declared disk_format {declared}, qemu-img finds {found}; using {found}"
    );
}

pub(super) fn path_str(p: &Path) -> Result<String, VirtError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| VirtError::Failed(format!("path is not UTF-8: {}", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_files_are_refused() {
        let ok = r#"{"virtual-size": 1073741824, "filename": "x", "format": "qcow2"}"#;
        assert_eq!(
            parse_info(ok).unwrap(),
            ImageInfo {
                format: "qcow2".into(),
                virtual_size: 1 << 30
            }
        );
        let bad = r#"{"virtual-size": 1, "format": "qcow2", "backing-filename": "/etc/shadow"}"#;
        assert!(parse_info(bad).is_err());
        let bad = r#"{"virtual-size": 1, "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}}"#;
        assert!(parse_info(bad).is_err());
    }

    #[test]
    fn ids_cannot_leave_the_cache() {
        assert!(safe_id("../../etc/passwd").is_err());
        assert!(safe_id("").is_err());
        assert!(safe_id("6f1e2c9a-0b7d-4c2e-9a51-3f0d2b7c8e11").is_ok());
    }
}
