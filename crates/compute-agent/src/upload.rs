//! Streams a file of this host to the Image service (`PUT
//! /v2/images/{id}/file`), 1 MiB at a time, as nova-compute uploads a
//! snapshot to Glance.
use ferro_rpc::RpcError;
use ferro_rpc::compute::ImageDestination;
use std::path::Path;
use tokio::io::AsyncReadExt;

pub async fn put_image_file(dest: &ImageDestination, path: &Path) -> Result<(), RpcError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| RpcError::Failed(format!("{}: {e}", path.display())))?;
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
    let url = format!(
        "{}/v2/images/{}/file",
        dest.endpoint.trim_end_matches('/'),
        dest.image_id
    );
    let resp = reqwest::Client::new()
        .put(&url)
        .header("x-auth-token", &dest.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .map_err(|e| RpcError::Failed(format!("uploading the snapshot to {url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(RpcError::Failed(format!(
        "the Image service refused the snapshot upload ({status}): {}",
        text.chars().take(300).collect::<String>()
    )))
}
