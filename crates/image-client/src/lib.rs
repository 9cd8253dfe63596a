//! How an agent moves image data to and from the Image service over HTTP,
//! as nova-compute and cinder-volume talk to Glance: `download` streams
//! `GET /v2/images/{id}/file` to a file of this host and verifies the hash
//! the Image service recorded (`os_hash_algo`/`os_hash_value`, else the
//! MD5 `checksum`); `upload` streams a file of this host to
//! `PUT /v2/images/{id}/file`, 1 MiB at a time. The token is the
//! requesting user's, minted for the request; it is never stored.
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let b = match self {
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        };
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

fn image_url(endpoint: &str, image_id: &str) -> String {
    format!("{}/v2/images/{image_id}", endpoint.trim_end_matches('/'))
}

/// Downloads active image `image_id` from the Image service at `endpoint`
/// (its base URL, without `/v2`) to `dest`, and answers its `disk_format`.
/// A download whose data does not match the recorded hash is removed and
/// refused.
pub async fn download(
    endpoint: &str,
    token: &str,
    image_id: &str,
    dest: &Path,
) -> Result<String, String> {
    let client = reqwest::Client::new();
    let url = image_url(endpoint, image_id);
    let meta: serde_json::Value = client
        .get(&url)
        .header("x-auth-token", token)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .error_for_status()
        .map_err(|e| format!("image {image_id}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("image {image_id}: {e}"))?;
    if meta["status"] != "active" {
        return Err(format!(
            "image {image_id} is {}, not active",
            meta["status"].as_str().unwrap_or("unknown")
        ));
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
        .header("x-auth-token", token)
        .send()
        .await
        .map_err(|e| format!("{url}/file: {e}"))?
        .error_for_status()
        .map_err(|e| format!("image {image_id} data: {e}"))?;
    let written = async {
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("image {image_id} data: {e}"))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        if let (Some(h), Some(want)) = (hasher, want) {
            let got = h.hex();
            if got != want {
                return Err(format!(
                    "image {image_id}: the data's checksum {got} is not the recorded {want}"
                ));
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(e);
    }
    Ok(s("disk_format").unwrap_or_else(|| "raw".into()))
}

/// Streams `path` to image `image_id`'s data at the Image service at
/// `endpoint`.
pub async fn upload(
    endpoint: &str,
    token: &str,
    image_id: &str,
    path: &Path,
) -> Result<(), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let url = format!("{}/file", image_url(endpoint, image_id));
    let resp = reqwest::Client::new()
        .put(&url)
        .header("x-auth-token", token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .map_err(|e| format!("uploading to {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!(
        "the Image service refused the upload to image {image_id} ({status}): {}",
        text.chars().take(300).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::get;
    use std::sync::{Arc, Mutex};

    /// An Image service of one image, `data` recorded with `sha512`, and
    /// what a PUT of its data received.
    async fn glance(data: &'static [u8], sha512: String) -> (String, Arc<Mutex<Vec<u8>>>) {
        let put = Arc::new(Mutex::new(Vec::new()));
        let meta = serde_json::json!({"id": "i1", "status": "active", "disk_format": "qcow2",
                                      "os_hash_algo": "sha512", "os_hash_value": sha512});
        let app = Router::new()
            .route(
                "/v2/images/i1",
                get(move || async move { axum::Json(meta.clone()) }),
            )
            .route(
                "/v2/images/i1/file",
                get(move || async move { data }).put(
                    |State(put): State<Arc<Mutex<Vec<u8>>>>, body: Bytes| async move {
                        put.lock().unwrap().extend_from_slice(&body);
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(put.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, put)
    }

    fn sha512(b: &[u8]) -> String {
        let mut h = Hasher::Sha512(Sha512::new());
        h.update(b);
        h.hex()
    }

    #[tokio::test]
    async fn download_verifies_the_recorded_hash_and_upload_streams_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("img");
        let (url, put) = glance(b"the image's data", sha512(b"the image's data")).await;
        assert_eq!(download(&url, "t", "i1", &dest).await.unwrap(), "qcow2");
        assert_eq!(std::fs::read(&dest).unwrap(), b"the image's data");

        let big = dir.path().join("big");
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&big, &data).unwrap();
        upload(&url, "t", "i1", &big).await.unwrap();
        assert_eq!(*put.lock().unwrap(), data);
        let err = upload(&url, "t", "i2", &big).await.unwrap_err();
        assert!(err.contains("404"), "{err}");

        // Data that is not what the Image service recorded is refused and
        // leaves no file.
        let (url, _) = glance(b"other data", sha512(b"the image's data")).await;
        let err = download(&url, "t", "i1", &dest).await.unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        assert!(!dest.exists());
    }
}
