//! Image pre-caching by aggregate (Nova's conductor `cache_images`, API
//! 2.81): each up host of the aggregate fetches the images into its own
//! cache; the request does not wait for them.
use crate::{ComputeService, ops};
use ferro_rpc::compute::{ComputeReply, ComputeRequest};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Asks every host of `hosts` to cache `image_ids`, in the background.
/// Down hosts are skipped, as Nova skips them. Returns at once.
pub fn cache_on_hosts(
    svc: &Arc<ComputeService>,
    acting: ferro_auth::Acting,
    hosts: Vec<String>,
    image_ids: Vec<String>,
    request_id: String,
) {
    let svc = svc.clone();
    tokio::spawn(async move {
        let images = ops::image_access(&svc, &acting).await;
        let st = svc.state.read();
        let up: Vec<String> = hosts
            .into_iter()
            .filter(|h| {
                st.services
                    .values()
                    .any(|s| &s.host == h && s.binary == "nova-compute" && ops::service_up(&svc, s))
            })
            .collect();
        drop(st);
        let mut stats: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for host in &up {
            let req = ComputeRequest::CacheImages {
                image_ids: image_ids.clone(),
                images: images.clone(),
            };
            let results = match ops::call_agent(&svc, host, req, Some(&request_id)).await {
                Ok(ComputeReply::ImageCache { results }) => results,
                Ok(other) => {
                    tracing::warn!(%host, "unexpected answer to cache_images: {other:?}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%host, "image pre-caching failed: {e}");
                    image_ids
                        .iter()
                        .map(|i| (i.clone(), "error".to_string()))
                        .collect()
                }
            };
            for (image, status) in results {
                *stats.entry(image).or_default().entry(status).or_default() += 1;
            }
        }
        tracing::info!(
            hosts = up.len(),
            "image pre-caching done: {}",
            serde_json::to_string(&stats).unwrap_or_default()
        );
    });
}
