//! Downloads an image from the Image service for the host's image cache
//! (`ferro_image_client::download`: streamed to disk, the recorded hash
//! verified), as nova-compute downloads from Glance.
use ferro_rpc::compute::ImageAccess;
use ferro_virt::{ImageSource, VirtError};
use std::path::Path;

pub struct HttpImages {
    pub access: ImageAccess,
}

#[async_trait::async_trait]
impl ImageSource for HttpImages {
    async fn fetch(&self, image_id: &str, dest: &Path) -> Result<String, VirtError> {
        ferro_image_client::download(&self.access.endpoint, &self.access.token, image_id, dest)
            .await
            .map_err(VirtError::Failed)
    }
}
