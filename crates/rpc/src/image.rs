//! What an agent needs to move image data itself: the Image service's URL
//! and a token minted for the requesting user, which travels in the
//! request and is never stored (nor printed: `Debug` hides it).
use serde::{Deserialize, Serialize};

/// How a host downloads images it has not cached: the Image service's
/// base URL and a token minted for the requesting user (it travels in
/// the request and is never stored).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAccess {
    pub endpoint: String,
    pub token: String,
}

impl std::fmt::Debug for ImageAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageAccess")
            .field("endpoint", &self.endpoint)
            .field("token", &"***")
            .finish()
    }
}

/// Where a snapshot goes: the agent streams the disk to the Image service's
/// `PUT {endpoint}/v2/images/{image_id}/file` itself, with a short-lived
/// token issued for the requesting user (never stored anywhere).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDestination {
    pub image_id: String,
    /// The Image service's base URL as this host reaches it.
    pub endpoint: String,
    pub token: String,
}

impl std::fmt::Debug for ImageDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDestination")
            .field("image_id", &self.image_id)
            .field("endpoint", &self.endpoint)
            .field("token", &"***")
            .finish()
    }
}
