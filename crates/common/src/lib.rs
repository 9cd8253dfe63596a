//! Types every ferrostack crate shares: the one domain [`Error`], id and time
//! helpers. Services render [`Error`] into their own wire shape at the edge
//! (Keystone's `{"error": {...}}`, Nova's `{"itemNotFound": {...}}`, ...).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod time;

pub use error::{Error, Result};

/// Keystone-style id: `uuid4().hex` (32 lowercase hex chars, no dashes).
pub fn new_hex_id() -> String {
    random_uuid().simple().to_string()
}

/// A v4 UUID from the thread-local CSPRNG (no syscall per id).
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Nova/Neutron/Cinder/Glance-style id: hyphenated UUID.
pub fn new_uuid() -> String {
    random_uuid().to_string()
}

/// `req-<uuid>`, the `x-openstack-request-id` format.
pub fn new_request_id() -> String {
    format!("req-{}", random_uuid())
}
