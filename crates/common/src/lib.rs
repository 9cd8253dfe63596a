//! Types every ferrostack crate shares: the one domain [`Error`], id and time
//! helpers. Services render [`Error`] into their own wire shape at the edge
//! (Keystone's `{"error": {...}}`, Nova's `{"itemNotFound": {...}}`, ...).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod logctl;
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

/// Decodes a query-string component (`+` is a space, `%XX` a byte);
/// malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A test that cannot run on this machine calls this and returns. It says
/// why; with `FERRO_REQUIRE_DEPS=1` (set by `scripts/test.sh` in CI, where
/// the project's scripts install every such dependency) a missing one fails
/// the test instead, so a broken install step cannot hide behind a skip.
/// Only what a machine cannot have (KVM, device-mapper) may skip there.
pub fn skip_or_fail(why: &str) {
    if std::env::var("FERRO_REQUIRE_DEPS").is_ok_and(|v| v == "1") {
        panic!("a required test dependency is missing (FERRO_REQUIRE_DEPS=1): {why}");
    }
    eprintln!("skipped: {why}");
}
