//! Neutron's list semantics over API documents: attribute filters (repeated
//! values match any), tag filters, `fields`, `sort_key`/`sort_dir`,
//! `limit`/`marker`/`page_reverse` with `<collection>_links`.
use crate::error::{NResult, NeutronError};
use crate::store::Obj;
use serde_json::{Value, json};
use std::cmp::Ordering;
use std::sync::Arc;

#[derive(Default, Debug)]
pub struct ListParams {
    pub filters: Vec<(String, Vec<String>)>,
    pub fields: Vec<String>,
    pub sorts: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub page_reverse: bool,
    /// The raw query without paging keys, for building links.
    pub base_query: Vec<(String, String)>,
}

pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn encode(s: &str) -> String {
    let mut o = String::new();
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
            o.push(c as char);
        } else {
            o.push_str(&format!("%{c:02X}"));
        }
    }
    o
}

/// Query pairs in order, decoded.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

const TAG_FILTERS: [&str; 4] = ["tags", "tags-any", "not-tags", "not-tags-any"];

impl ListParams {
    /// Parses the query; `valid` lists the attributes that may be filtered on.
    pub fn parse(raw: Option<&str>, valid: &[&str]) -> NResult<ListParams> {
        let mut p = ListParams::default();
        let mut keys: Vec<String> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        for (k, v) in pairs(raw) {
            match k.as_str() {
                "fields" => p
                    .fields
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
                "sort_key" => keys.push(v),
                "sort_dir" => dirs.push(v),
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        NeutronError::bad(format!("Bad limit request: Limit must be an integer 0 or greater and not '{v}'."))
                    })?;
                    if n < 0 {
                        return Err(NeutronError::bad(format!(
                            "Bad limit request: Limit must be an integer 0 or greater and not '{v}'."
                        )));
                    }
                    p.limit = if n == 0 { None } else { Some(n as usize) };
                }
                "marker" => p.marker = Some(v),
                "page_reverse" => p.page_reverse = v.eq_ignore_ascii_case("true"),
                _ => {
                    p.base_query.push((k.clone(), v.clone()));
                    if !TAG_FILTERS.contains(&k.as_str())
                        && !valid.contains(&k.as_str())
                        && k != "tenant_id"
                        && k != "project_id"
                        && k != "id"
                    {
                        return Err(NeutronError::bad(format!(
                            "[{k}] is invalid attribute for filtering"
                        )));
                    }
                    match p.filters.iter_mut().find(|(fk, _)| *fk == k) {
                        Some((_, vs)) => vs.push(v),
                        None => p.filters.push((k, vec![v])),
                    }
                }
            }
        }
        if keys.len() != dirs.len() && !dirs.is_empty() {
            return Err(NeutronError::bad(
                "The number of sort_keys and sort_dirs must be same",
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            let d = dirs.get(i).map(String::as_str).unwrap_or("asc");
            let asc = match d {
                "asc" => true,
                "desc" => false,
                _ => {
                    return Err(NeutronError::bad(format!(
                        "{d} is invalid value for sort_dirs, valid value is 'asc' and 'desc'"
                    )));
                }
            };
            if !valid.contains(&k.as_str()) && k != "id" && k != "tenant_id" && k != "project_id" {
                return Err(NeutronError::bad(format!(
                    "{k} is invalid attribute for sort_keys"
                )));
            }
            p.sorts.push((k.clone(), asc));
        }
        Ok(p)
    }

    pub fn filter_value(&self, k: &str) -> Option<&[String]> {
        self.filters
            .iter()
            .find(|(fk, _)| fk == k)
            .map(|(_, v)| v.as_slice())
    }
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None" || want == "null",
        Value::Array(a) => a.iter().any(|x| scalar_eq(x, want)),
        Value::Object(_) => false,
    }
}

fn tag_list(o: &Obj) -> Vec<&str> {
    o.get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `o` passes the filters (`skip` names filters the caller handled).
pub fn matches(o: &Obj, p: &ListParams, skip: &[&str]) -> bool {
    for (k, vals) in &p.filters {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let ok = match k.as_str() {
            "tags" | "tags-any" | "not-tags" | "not-tags-any" => {
                let have = tag_list(o);
                let want: Vec<&str> = vals
                    .iter()
                    .flat_map(|v| v.split(','))
                    .filter(|s| !s.is_empty())
                    .collect();
                match k.as_str() {
                    "tags" => want.iter().all(|t| have.contains(t)),
                    "tags-any" => want.iter().any(|t| have.contains(t)),
                    "not-tags" => !want.iter().all(|t| have.contains(t)),
                    _ => !want.iter().any(|t| have.contains(t)),
                }
            }
            _ => match o.get(k) {
                Some(v) => vals.iter().any(|w| scalar_eq(v, w)),
                None => false,
            },
        };
        if !ok {
            return false;
        }
    }
    true
}

fn cmp_val(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// Keeps only `fields` of `o` (all when empty).
pub fn project(o: &Obj, fields: &[String]) -> Value {
    if fields.is_empty() {
        return Value::Object(o.clone());
    }
    let mut out = Obj::new();
    for f in fields {
        if let Some(v) = o.get(f) {
            out.insert(f.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Sorts, pages and renders `items` as `{collection: [...], collection_links?}`.
pub fn render(
    mut items: Vec<Arc<Obj>>,
    p: &ListParams,
    collection: &str,
    self_url: &str,
) -> NResult<Listing> {
    let mut sorts = p.sorts.clone();
    if !sorts.iter().any(|(k, _)| k == "id") {
        let dir = sorts.last().map(|x| x.1).unwrap_or(true);
        sorts.push(("id".into(), dir));
    }
    let cmp = |a: &Arc<Obj>, b: &Arc<Obj>| {
        for (k, asc) in &sorts {
            let o = cmp_val(a.get(k), b.get(k));
            if o != Ordering::Equal {
                return if *asc { o } else { o.reverse() };
            }
        }
        Ordering::Equal
    };
    if !p.sorts.is_empty() || p.limit.is_some() || p.marker.is_some() {
        items.sort_by(cmp);
    }
    let mut links = Vec::new();
    if p.limit.is_some() || p.marker.is_some() {
        // Walk forward (or backward with page_reverse) from the marker.
        if p.page_reverse {
            items.reverse();
        }
        let start = match &p.marker {
            Some(m) => match items.iter().position(|o| crate::store::s(o, "id") == m) {
                Some(i) => i + 1,
                None => 0,
            },
            None => 0,
        };
        let rest = items.len().saturating_sub(start);
        let take = p.limit.unwrap_or(rest).min(rest);
        let mut page: Vec<Arc<Obj>> = items[start..start + take].to_vec();
        let more = start + take < items.len();
        if p.page_reverse {
            page.reverse();
        }
        let mk = |marker: &str, reverse: bool| {
            let mut q: Vec<String> = p
                .base_query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            for f in &p.fields {
                q.push(format!("fields={}", encode(f)));
            }
            for (k, asc) in &p.sorts {
                q.push(format!("sort_key={}", encode(k)));
                q.push(format!("sort_dir={}", if *asc { "asc" } else { "desc" }));
            }
            if let Some(l) = p.limit {
                q.push(format!("limit={l}"));
            }
            q.push(format!("marker={}", encode(marker)));
            if reverse {
                q.push("page_reverse=True".into());
            }
            format!("{self_url}?{}", q.join("&"))
        };
        if !page.is_empty() {
            let first = crate::store::s(&page[0], "id").to_string();
            let last = crate::store::s(&page[page.len() - 1], "id").to_string();
            let (fwd_more, back_more) = if p.page_reverse {
                (p.marker.is_some(), more)
            } else {
                (more, p.marker.is_some())
            };
            if fwd_more && p.limit.is_some() {
                links.push(json!({"rel": "next", "href": mk(&last, false)}));
            }
            if back_more {
                links.push(json!({"rel": "previous", "href": mk(&first, true)}));
            }
        }
        items = page;
    }
    Ok(Listing {
        collection: collection.to_string(),
        items,
        fields: p.fields.clone(),
        links,
    })
}

/// A rendered page, serialised straight from the stored documents (no
/// copy of each object unless `fields` asks for a projection).
pub struct Listing {
    collection: String,
    items: Vec<Arc<Obj>>,
    fields: Vec<String>,
    links: Vec<Value>,
}

struct Items<'a>(&'a [Arc<Obj>], &'a [String]);

impl serde::Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for o in self.0 {
            if self.1.is_empty() {
                seq.serialize_element(&**o)?;
            } else {
                seq.serialize_element(&project(o, self.1))?;
            }
        }
        seq.end()
    }
}

impl serde::Serialize for Listing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(&self.collection, &Items(&self.items, &self.fields))?;
        if !self.links.is_empty() {
            m.serialize_entry(&format!("{}_links", self.collection), &self.links)?;
        }
        m.end()
    }
}
