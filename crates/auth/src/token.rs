//! Keystone-format Fernet token payloads: `msgpack((version,) + payload)`
//! encrypted with the primary key, trailing `=` padding stripped
//! (keystone/token/token_formatters.py). Versions: 0 unscoped, 1 domain,
//! 2 project, 3 trust, 8 system, 9 application credential.

use crate::fernet_keys::FernetKeys;
use base64::Engine;
use chrono::{DateTime, Utc};
use rmpv::Value;

/// `[auth] methods` order: a method's bit is `1 << index`.
pub const AUTH_METHODS: [&str; 6] = [
    "external",
    "password",
    "token",
    "oauth1",
    "mapped",
    "application_credential",
];

/// Longest token text we try to decrypt (Keystone's `max_token_size` is 255;
/// anything far beyond it is garbage and must not cost us work).
pub const MAX_TOKEN_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenScope {
    Unscoped,
    Domain(String),
    Project(String),
    Trust {
        project_id: String,
        trust_id: String,
    },
    System,
    AppCred {
        project_id: String,
        app_cred_id: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenPayload {
    pub user_id: String,
    pub methods: Vec<String>,
    pub scope: TokenScope,
    pub expires_at: DateTime<Utc>,
    /// url-safe base64 of 16 random bytes each, no padding (22 chars).
    pub audit_ids: Vec<String>,
    /// From the Fernet timestamp: seconds precision, as Keystone.
    pub issued_at: DateTime<Utc>,
}

pub fn new_audit_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn methods_to_int(methods: &[String]) -> u64 {
    methods
        .iter()
        .filter_map(|m| AUTH_METHODS.iter().position(|x| x == m))
        .fold(0, |acc, i| acc | (1 << i))
}

fn int_to_methods(v: u64) -> Vec<String> {
    AUTH_METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| v & (1 << i) != 0)
        .map(|(_, m)| m.to_string())
        .collect()
}

/// Ids that parse as UUIDs travel as 16 raw bytes, others as text.
fn id_to_value(id: &str) -> Value {
    match uuid::Uuid::try_parse(id) {
        Ok(u) if id.len() == 32 && id == u.simple().to_string() => Value::Array(vec![
            Value::Boolean(true),
            Value::Binary(u.as_bytes().to_vec()),
        ]),
        _ => Value::Array(vec![Value::Boolean(false), Value::String(id.into())]),
    }
}

fn value_to_id(v: &Value) -> Option<String> {
    let arr = v.as_array()?;
    let is_uuid = arr.first()?.as_bool()?;
    let val = arr.get(1)?;
    if is_uuid {
        let bytes = match val {
            Value::Binary(b) => b.clone(),
            Value::String(s) => s.as_bytes().to_vec(),
            _ => return None,
        };
        let u = uuid::Uuid::from_slice(&bytes).ok()?;
        Some(u.simple().to_string())
    } else {
        text(val)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.as_str().map(str::to_string),
        Value::Binary(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

fn audit_to_value(ids: &[String]) -> Value {
    Value::Array(
        ids.iter()
            .map(|a| {
                match base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(a.trim_end_matches('='))
                {
                    Ok(b) => Value::Binary(b),
                    Err(_) => Value::String(a.clone().into()),
                }
            })
            .collect(),
    )
}

fn value_to_audit(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| match x {
            Value::Binary(b) => Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
            other => text(other),
        })
        .collect()
}

fn time_to_value(t: &DateTime<Utc>) -> Value {
    Value::F64(t.timestamp_micros() as f64 / 1_000_000.0)
}

fn value_to_time(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v.as_f64().or_else(|| v.as_i64().map(|i| i as f64))?;
    DateTime::from_timestamp_micros((secs * 1_000_000.0).round() as i64)
}

impl TokenPayload {
    fn to_msgpack(&self) -> Vec<u8> {
        let user = id_to_value(&self.user_id);
        let methods = Value::from(methods_to_int(&self.methods));
        let exp = time_to_value(&self.expires_at);
        let audit = audit_to_value(&self.audit_ids);
        let arr = match &self.scope {
            TokenScope::Unscoped => vec![Value::from(0), user, methods, exp, audit],
            TokenScope::Domain(d) => {
                vec![Value::from(1), user, methods, id_to_value(d), exp, audit]
            }
            TokenScope::Project(p) => {
                vec![Value::from(2), user, methods, id_to_value(p), exp, audit]
            }
            TokenScope::Trust {
                project_id,
                trust_id,
            } => vec![
                Value::from(3),
                user,
                methods,
                id_to_value(project_id),
                exp,
                audit,
                id_to_value(trust_id),
            ],
            TokenScope::System => vec![
                Value::from(8),
                user,
                methods,
                Value::String("all".into()),
                exp,
                audit,
            ],
            TokenScope::AppCred {
                project_id,
                app_cred_id,
            } => vec![
                Value::from(9),
                user,
                methods,
                id_to_value(project_id),
                exp,
                audit,
                id_to_value(app_cred_id),
            ],
        };
        let mut out = Vec::with_capacity(96);
        // Writing to a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &Value::Array(arr));
        out
    }

    fn from_msgpack(bytes: &[u8], issued_at: DateTime<Utc>) -> Option<TokenPayload> {
        let mut rd = bytes;
        let v = rmpv::decode::read_value_with_max_depth(&mut rd, 8).ok()?;
        let a = v.as_array()?;
        let version = a.first()?.as_u64()?;
        let user_id = value_to_id(a.get(1)?)?;
        let methods = int_to_methods(a.get(2)?.as_u64()?);
        let (scope, exp_i) = match version {
            0 => (TokenScope::Unscoped, 3),
            1 => {
                // Keystone writes the default domain id as plain text.
                let d = value_to_id(a.get(3)?).or_else(|| text(a.get(3)?))?;
                (TokenScope::Domain(d), 4)
            }
            2 => (TokenScope::Project(value_to_id(a.get(3)?)?), 4),
            3 => (
                TokenScope::Trust {
                    project_id: value_to_id(a.get(3)?)?,
                    trust_id: value_to_id(a.get(6)?)?,
                },
                4,
            ),
            8 => (TokenScope::System, 4),
            9 => (
                TokenScope::AppCred {
                    project_id: value_to_id(a.get(3)?)?,
                    app_cred_id: value_to_id(a.get(6)?)?,
                },
                4,
            ),
            _ => return None,
        };
        let expires_at = value_to_time(a.get(exp_i)?)?;
        let audit_ids = value_to_audit(a.get(exp_i + 1)?)?;
        Some(TokenPayload {
            user_id,
            methods,
            scope,
            expires_at,
            audit_ids,
            issued_at,
        })
    }

    /// Encrypts with the primary key; `=` padding stripped as Keystone does.
    pub fn seal(&self, keys: &FernetKeys) -> String {
        let tok = keys.encrypt(&self.to_msgpack());
        tok.trim_end_matches('=').to_string()
    }

    /// Decrypts and decodes; `None` for anything that is not a token we issued.
    /// Expiry is NOT checked here (callers decide: allow_expired).
    pub fn open(token: &str, keys: &FernetKeys) -> Option<TokenPayload> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
            return None;
        }
        let padded = restore_padding(token);
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(padded.as_bytes())
            .ok()?;
        // version(1) + timestamp(8) + iv(16) + >=1 block(16) + hmac(32)
        if raw.len() < 73 || raw[0] != 0x80 || (raw.len() - 57) % 16 != 0 {
            return None;
        }
        let ts = u64::from_be_bytes(raw[1..9].try_into().ok()?);
        let issued_at = DateTime::from_timestamp(i64::try_from(ts).ok()?, 0)?;
        let plain = keys.decrypt(&padded)?;
        TokenPayload::from_msgpack(&plain, issued_at)
    }
}

/// The Fernet timestamp of a token (what `open` reports as `issued_at`),
/// read without decrypting: the first 9 bytes are version and timestamp.
pub fn issued_at_of(token: &str) -> Option<DateTime<Utc>> {
    let head = token.get(..12)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()?;
    let ts = u64::from_be_bytes(raw.get(1..9)?.try_into().ok()?);
    DateTime::from_timestamp(i64::try_from(ts).ok()?, 0)
}

fn restore_padding(token: &str) -> String {
    let rem = token.len() % 4;
    if rem == 0 {
        token.to_string()
    } else {
        format!("{token}{}", "=".repeat(4 - rem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> FernetKeys {
        FernetKeys::from_keys(&[fernet::Fernet::generate_key()]).unwrap()
    }

    #[test]
    fn roundtrip_every_scope() {
        let k = keys();
        let uid = uuid::Uuid::new_v4().simple().to_string();
        for scope in [
            TokenScope::Unscoped,
            TokenScope::Domain("default".into()),
            TokenScope::Project(uuid::Uuid::new_v4().simple().to_string()),
            TokenScope::System,
            TokenScope::Trust {
                project_id: "p1".into(),
                trust_id: uuid::Uuid::new_v4().simple().to_string(),
            },
            TokenScope::AppCred {
                project_id: "abc".into(),
                app_cred_id: "def".into(),
            },
        ] {
            let p = TokenPayload {
                user_id: uid.clone(),
                methods: vec!["password".into(), "token".into()],
                scope: scope.clone(),
                expires_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
                audit_ids: vec![new_audit_id()],
                issued_at: Utc::now(),
            };
            let t = p.seal(&k);
            assert!(!t.ends_with('='));
            assert_eq!(
                issued_at_of(&t),
                Some(TokenPayload::open(&t, &k).unwrap().issued_at)
            );
            let back = TokenPayload::open(&t, &k).unwrap();
            assert_eq!(back.user_id, p.user_id);
            assert_eq!(back.scope, scope);
            assert_eq!(back.methods, p.methods);
            assert_eq!(back.expires_at, p.expires_at);
            assert_eq!(back.audit_ids, p.audit_ids);
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        let k = keys();
        for t in [
            "",
            "x",
            "gAAAAA",
            &"A".repeat(5000),
            "gAAAAABk!!!!",
            &"gAAAAA".repeat(30),
        ] {
            assert!(TokenPayload::open(t, &k).is_none());
        }
        let other = keys();
        let p = TokenPayload {
            user_id: "u".into(),
            methods: vec!["password".into()],
            scope: TokenScope::Unscoped,
            expires_at: Utc::now(),
            audit_ids: vec![new_audit_id()],
            issued_at: Utc::now(),
        };
        assert!(TokenPayload::open(&p.seal(&other), &k).is_none());
    }

    #[test]
    fn methods_bitmask_matches_keystone() {
        assert_eq!(methods_to_int(&["password".into()]), 2);
        assert_eq!(methods_to_int(&["token".into()]), 4);
        assert_eq!(methods_to_int(&["application_credential".into()]), 32);
    }
}
