//! Downloads an image from the Image service for the host's image cache
//! (`GET /v2/images/{id}` for its checksum and format, then
//! `GET /v2/images/{id}/file`, streamed to disk), verifying the hash the
//! Image service recorded (`os_hash_algo`/`os_hash_value`, else the MD5
//! `checksum`), as nova-compute verifies what it downloads from Glance.
use ferro_rpc::compute::ImageAccess;
use ferro_virt::{ImageSource, VirtError};
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use tokio::io::AsyncWriteExt;

pub struct HttpImages {
    pub access: ImageAccess,
}

enum Hasher {
    Sha512(Sha512),
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha512(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        match self {
            Hasher::Sha512(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Md5(h) => hex(&h.finalize()),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn failed(m: impl std::fmt::Display) -> VirtError {
    VirtError::Failed(m.to_string())
}

#[async_trait::async_trait]
impl ImageSource for HttpImages {
    async fn fetch(&self, image_id: &str, dest: &Path) -> Result<String, VirtError> {
        let base = self.access.endpoint.trim_end_matches('/');
        let client = reqwest::Client::new();
        let url = format!("{base}/v2/images/{image_id}");
        let meta: serde_json::Value = client
            .get(&url)
            .header("x-auth-token", &self.access.token)
            .send()
            .await
            .map_err(|e| failed(format!("{url}: {e}")))?
            .error_for_status()
            .map_err(|e| failed(format!("image {image_id}: {e}")))?
            .json()
            .await
            .map_err(|e| failed(format!("image {image_id}: {e}")))?;
        if meta["status"] != "active" {
            return Err(failed(format!(
                "image {image_id} is {}, not active",
                meta["status"].as_str().unwrap_or("unknown")
            )));
        }
        let s = |k: &str| meta[k].as_str().map(str::to_string);
        let (mut hasher, want) = match (s("os_hash_algo").as_deref(), s("os_hash_value")) {
            (Some("sha512"), Some(v)) => (Some(Hasher::Sha512(Sha512::new())), Some(v)),
            (Some("sha256"), Some(v)) => (Some(Hasher::Sha256(Sha256::new())), Some(v)),
            _ => match s("checksum") {
                Some(v) => (Some(Hasher::Md5(Md5::new())), Some(v)),
                None => (None, None),
            },
        };
        let resp = client
            .get(format!("{url}/file"))
            .header("x-auth-token", &self.access.token)
            .send()
            .await
            .map_err(|e| failed(format!("{url}/file: {e}")))?
            .error_for_status()
            .map_err(|e| failed(format!("image {image_id} data: {e}")))?;
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| failed(format!("{}: {e}", dest.display())))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| failed(format!("image {image_id} data: {e}")))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| failed(format!("{}: {e}", dest.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| failed(format!("{}: {e}", dest.display())))?;
        if let (Some(h), Some(want)) = (hasher, want) {
            let got = h.hex();
            if got != want {
                let _ = tokio::fs::remove_file(dest).await;
                return Err(failed(format!(
                    "image {image_id}: the data's checksum {got} is not the recorded {want}"
                )));
            }
        }
        Ok(s("disk_format").unwrap_or_else(|| "raw".into()))
    }
}
