//! Small helpers shared by the identity handlers: body parsing with
//! Keystone's validation messages, query flags, `extra` attribute handling.
use ferro_common::Error;
use serde_json::{Map, Value};

/// Parses a JSON request body; malformed JSON or a non-object is a 400.
pub fn parse_body(bytes: &[u8]) -> Result<Value, Error> {
    if bytes.is_empty() {
        return Err(Error::validation(
            "Expecting to find a request body, but it was empty or malformed.",
        ));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|_| {
        Error::validation("Malformed request body: the request body is not valid JSON.")
    })?;
    if !v.is_object() {
        return Err(Error::validation(
            "Malformed request body: expecting a JSON object.",
        ));
    }
    Ok(v)
}

/// The object under `key` (`{"user": {...}}`).
pub fn wrapped<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>, Error> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(invalid_type(key, "object")),
        None => Err(Error::validation(format!("'{key}' is a required property"))),
    }
}

pub fn invalid_type(field: &str, ty: &str) -> Error {
    Error::validation(format!(
        "Invalid input for field '{field}': the value is not of type '{ty}'."
    ))
}

pub fn invalid(field: &str, why: &str) -> Error {
    Error::validation(format!("Invalid input for field '{field}': {why}"))
}

/// Optional string field, max length checked; null accepted when `nullable`.
pub fn opt_str(
    m: &Map<String, Value>,
    field: &str,
    max: usize,
    nullable: bool,
) -> Result<Option<Option<String>>, Error> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Null) if nullable => Ok(Some(None)),
        Some(Value::String(s)) => {
            if s.chars().count() > max {
                return Err(invalid(
                    field,
                    &format!("is too long (max {max} characters)."),
                ));
            }
            Ok(Some(Some(s.clone())))
        }
        Some(_) => Err(invalid_type(field, "string")),
    }
}

/// A new domain's, project's or group's `description`, as Keystone keeps
/// it: omitted is `""` (its `setdefault`), an explicit null stays null.
pub fn description_on_create(m: &Map<String, Value>) -> Result<Option<String>, Error> {
    Ok(opt_str(m, "description", 65_535, true)?.unwrap_or(Some(String::new())))
}

/// A required name: a non-blank string of at most `max` characters.
pub fn req_name(m: &Map<String, Value>, field: &str, max: usize) -> Result<String, Error> {
    match opt_str(m, field, max, false)? {
        Some(Some(s)) => {
            if s.trim().is_empty() {
                return Err(invalid(field, "must not be empty or blank."));
            }
            Ok(s)
        }
        _ => Err(Error::validation(format!(
            "'{field}' is a required property"
        ))),
    }
}

/// Optional name when updating: present must be a valid non-blank string.
pub fn opt_name(m: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, Error> {
    match opt_str(m, field, max, false)? {
        Some(Some(s)) if s.trim().is_empty() => Err(invalid(field, "must not be empty or blank.")),
        Some(Some(s)) => Ok(Some(s)),
        _ => Ok(None),
    }
}

pub fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, Error> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_type(field, "boolean")),
    }
}

/// Optional id reference (string or null).
pub fn opt_id(m: &Map<String, Value>, field: &str) -> Result<Option<Option<String>>, Error> {
    opt_str(m, field, 64, true)
}

/// Attributes that are not columns are kept in `extra` and echoed back, as
/// Keystone does.
pub fn extra_of(m: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn json_map(s: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(s)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

pub fn json_string(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

/// Keystone query booleans: `enabled`, `enabled=true|1|yes|on` etc.
pub fn query_bool(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off" | "f" | "n"
    )
}

/// Checks the `options` object against the options Keystone knows.
pub fn validate_options(
    m: &Map<String, Value>,
    allowed: &[(&str, &str)],
) -> Result<Option<Map<String, Value>>, Error> {
    let Some(v) = m.get("options") else {
        return Ok(None);
    };
    let Value::Object(opts) = v else {
        return Err(invalid_type("options", "object"));
    };
    for (k, val) in opts {
        let Some((_, ty)) = allowed.iter().find(|(name, _)| name == k) else {
            return Err(invalid(
                "options",
                &format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        };
        let ok = match *ty {
            "bool" => val.is_boolean() || val.is_null(),
            "list" => val.is_array() || val.is_null(),
            _ => true,
        };
        if !ok {
            return Err(invalid(&format!("options.{k}"), "has the wrong type."));
        }
    }
    Ok(Some(opts.clone()))
}

/// Applies `patch` to the JSON object stored in `current`: keys set to null
/// are removed, others replaced. Returns the new JSON text.
/// Options as Keystone records them on create: one set to null is dropped.
pub fn without_nulls(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|_, v| !v.is_null());
    m
}

pub fn merge_json(current: &str, patch: Map<String, Value>) -> String {
    let mut cur = json_map(current);
    for (k, v) in patch {
        if v.is_null() {
            cur.remove(&k);
        } else {
            cur.insert(k, v);
        }
    }
    json_string(&cur)
}
