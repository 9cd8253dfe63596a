//! Nova's legacy network proxy APIs and the server actions that reach the
//! Networking service.
//!
//! Removed at 2.36: `os-security-groups`, `os-security-group-rules`,
//! `os-floating-ips`, `os-floating-ip-pools`, `os-networks` and
//! `os-tenant-networks`. Removed at 2.44: the `addFloatingIp` and
//! `removeFloatingIp` actions. Still current: `addSecurityGroup`,
//! `removeSecurityGroup` and `GET /servers/{id}/os-security-groups`.
//!
//! As upstream Nova does, each request is translated into Networking v2.0
//! calls made with the caller's own token (so Neutron's policy, visibility
//! and validation apply), and the answers are translated back into Nova's
//! shapes and status codes.
//!
//! This file holds what they share: the Networking client that calls with
//! the caller's token, and its error.
use super::request::Caller;
use crate::ComputeService;
use crate::error::{NResult, NovaError};
use serde_json::Value;

/// A Networking API failure: its status, `type` and message.
#[derive(Debug)]
pub(super) struct Fail {
    pub(super) code: u16,
    pub(super) kind: String,
    pub(super) message: String,
}

impl Fail {
    /// The same failure in Nova's shape, with the status Nova gives it.
    pub(super) fn nova(self, code: u16) -> NovaError {
        NovaError::new(code, self.message)
    }
}

/// Networking v2.0 calls made with the caller's token.
pub(super) struct Neutron<'a> {
    pub(super) svc: &'a ComputeService,
    pub(super) token: &'a str,
}

pub(super) fn neutron<'a>(svc: &'a ComputeService, c: &'a Caller) -> Neutron<'a> {
    Neutron {
        svc,
        token: c.token(),
    }
}

impl Neutron<'_> {
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Fail> {
        let Some((code, v)) = self
            .svc
            .network
            .neutron(self.token, method, path, body)
            .await
        else {
            return Err(Fail {
                code: 404,
                kind: "NotFound".into(),
                message: "There is no Networking service.".into(),
            });
        };
        if (200..300).contains(&code) {
            return Ok(v);
        }
        let e = v.get("NeutronError");
        let s = |k: &str| e.and_then(|e| e.get(k)).and_then(Value::as_str);
        Err(Fail {
            code,
            kind: s("type").unwrap_or("").to_string(),
            message: s("message")
                .map(str::to_string)
                .unwrap_or_else(|| format!("Networking request failed ({code}).")),
        })
    }
    pub(super) async fn get(&self, path: &str) -> Result<Value, Fail> {
        self.call("GET", path, None).await
    }
    /// The list under `key` of a GET.
    pub(super) async fn list(&self, path: &str, key: &str) -> Result<Vec<Value>, Fail> {
        Ok(match self.get(path).await?.get_mut(key).map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
    }
}

/// Percent-encodes a query value.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn is_uuid(s: &str) -> bool {
    crate::http::servers::uuid_like(s)
}

/// The proxy APIs are gone from 2.36 on.
pub(super) fn removed_at_36(c: &Caller) -> NResult<()> {
    if c.mv.at_least(36) {
        Err(NovaError::not_found("The resource could not be found."))
    } else {
        Ok(())
    }
}

pub(super) async fn gone_collection() -> NovaError {
    NovaError::not_found("The resource could not be found.")
}

pub(super) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}
