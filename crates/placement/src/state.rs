//! The in-memory Placement model, the change sets that persist it, and the
//! pure (synchronous) logic every write and query runs on.
use crate::names::{STANDARD_RESOURCE_CLASSES, is_standard_trait};
use crate::{AllocMap, Candidate, Inventory};
use ferro_common::Error;
use ferro_db::docs::DocOp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) const KIND_RP: &str = "placement_rp";
pub(crate) const KIND_CONSUMER: &str = "placement_consumer";
pub(crate) const KIND_RC: &str = "placement_rc";
pub(crate) const KIND_TRAIT: &str = "placement_trait";

pub(crate) const CODE_DEFAULT: &str = "placement.undefined_code";
pub(crate) const CODE_CONCURRENT: &str = "placement.concurrent_update";
pub(crate) const CODE_INUSE: &str = "placement.inventory.inuse";
pub(crate) const CODE_DUPLICATE: &str = "placement.duplicate_name";
pub(crate) const CODE_PROVIDER_INUSE: &str = "placement.resource_provider.inuse";
pub(crate) const CODE_CANNOT_DELETE_PARENT: &str =
    "placement.resource_provider.cannot_delete_parent";
pub(crate) const CODE_RP_NOT_FOUND: &str = "placement.resource_provider.not_found";

/// A Placement error: HTTP status, detail and Placement's error code.
#[derive(Debug, Clone)]
pub struct PErr {
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
}

impl PErr {
    pub(crate) fn new(status: u16, detail: impl Into<String>, code: &'static str) -> PErr {
        PErr {
            status,
            detail: detail.into(),
            code,
        }
    }
    pub(crate) fn bad(d: impl Into<String>) -> PErr {
        PErr::new(400, d, CODE_DEFAULT)
    }
    pub(crate) fn not_found(d: impl Into<String>) -> PErr {
        PErr::new(404, d, CODE_DEFAULT)
    }
    pub(crate) fn rp_not_found(uuid: &str) -> PErr {
        PErr::new(
            404,
            format!("No resource provider with uuid {uuid} found"),
            CODE_RP_NOT_FOUND,
        )
    }
    pub(crate) fn conflict(d: impl Into<String>) -> PErr {
        PErr::new(409, d, CODE_DEFAULT)
    }
    pub(crate) fn concurrent(d: impl Into<String>) -> PErr {
        PErr::new(409, d, CODE_CONCURRENT)
    }
}

impl From<Error> for PErr {
    fn from(e: Error) -> PErr {
        if matches!(e, Error::Internal { .. } | Error::Unavailable { .. }) {
            tracing::error!("placement: {}", e.log_message());
        }
        PErr::new(e.status(), e.to_string(), CODE_DEFAULT)
    }
}

impl From<PErr> for Error {
    fn from(e: PErr) -> Error {
        match e.status {
            400 => Error::validation(e.detail),
            401 => Error::unauthorized(e.detail),
            403 => Error::forbidden(e.detail),
            404 => Error::not_found_msg(e.detail),
            409 => Error::conflict(e.detail),
            _ => Error::internal(e.detail),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Provider {
    pub uuid: String,
    pub name: String,
    pub generation: u64,
    #[serde(default)]
    pub parent: Option<String>,
    pub root: String,
    #[serde(default)]
    pub inventories: BTreeMap<String, Inventory>,
    #[serde(default)]
    pub traits: BTreeSet<String>,
    #[serde(default)]
    pub aggregates: BTreeSet<String>,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
}

impl Provider {
    pub(crate) fn new(uuid: &str, name: &str, parent: Option<String>, root: String) -> Provider {
        let now = ferro_db::now_micros();
        Provider {
            uuid: uuid.to_string(),
            name: name.to_string(),
            generation: 0,
            parent,
            root,
            inventories: BTreeMap::new(),
            traits: BTreeSet::new(),
            aggregates: BTreeSet::new(),
            created_at: now,
            updated_at: now,
        }
    }
    /// Bumps the generation and the modification time.
    pub(crate) fn bump(&mut self) {
        self.generation += 1;
        self.updated_at = ferro_db::now_micros();
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Consumer {
    pub uuid: String,
    pub project: String,
    pub user: String,
    #[serde(default)]
    pub consumer_type: Option<String>,
    pub generation: u64,
    #[serde(default)]
    pub allocations: AllocMap,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
}

/// `(total - reserved) * allocation_ratio`.
pub(crate) fn capacity(inv: &Inventory) -> f64 {
    (inv.total.saturating_sub(inv.reserved)) as f64 * inv.allocation_ratio
}

#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub providers: BTreeMap<String, Provider>,
    pub consumers: BTreeMap<String, Consumer>,
    pub custom_rcs: BTreeSet<String>,
    /// Custom traits, and any non-standard trait the Rust API registered.
    pub custom_traits: BTreeSet<String>,
}

/// Pending changes: built against the current state, persisted in one DB
/// transaction, then applied to the state.
#[derive(Default, Debug)]
pub(crate) struct Changes {
    pub providers: BTreeMap<String, Option<Provider>>,
    pub consumers: BTreeMap<String, Option<Consumer>>,
    pub rcs: BTreeMap<String, bool>,
    pub traits: BTreeMap<String, bool>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.providers.is_empty()
            && self.consumers.is_empty()
            && self.rcs.is_empty()
            && self.traits.is_empty()
    }
    pub(crate) fn put_provider(&mut self, p: Provider) {
        self.providers.insert(p.uuid.clone(), Some(p));
    }
    pub(crate) fn ops(&self) -> Result<Vec<DocOp>, PErr> {
        let mut ops = Vec::new();
        for (id, p) in &self.providers {
            ops.push(match p {
                Some(p) => DocOp::put(KIND_RP, id.clone(), to_json(p)?),
                None => DocOp::delete(KIND_RP, id.clone()),
            });
        }
        for (id, c) in &self.consumers {
            ops.push(match c {
                Some(c) => DocOp::put(KIND_CONSUMER, id.clone(), to_json(c)?),
                None => DocOp::delete(KIND_CONSUMER, id.clone()),
            });
        }
        for (name, present) in &self.rcs {
            ops.push(if *present {
                DocOp::put(KIND_RC, name.clone(), serde_json::json!({"name": name}))
            } else {
                DocOp::delete(KIND_RC, name.clone())
            });
        }
        for (name, present) in &self.traits {
            ops.push(if *present {
                DocOp::put(KIND_TRAIT, name.clone(), serde_json::json!({"name": name}))
            } else {
                DocOp::delete(KIND_TRAIT, name.clone())
            });
        }
        Ok(ops)
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, PErr> {
    serde_json::to_value(v).map_err(|e| PErr::from(Error::internal(e)))
}

/// One consumer's allocations to write.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerWrite {
    pub consumer: String,
    pub project: String,
    pub user: String,
    pub consumer_type: Option<String>,
    pub allocs: AllocMap,
    /// None: do not check; Some(None): must be new; Some(Some(g)): must match.
    pub generation: Option<Option<u64>>,
}

/// The parsed allocation-candidates / provider filter (one request group).
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pub resources: BTreeMap<String, u64>,
    /// AND of ORs of trait names.
    pub required: Vec<Vec<String>>,
    pub forbidden: Vec<String>,
    /// AND of ORs of aggregate uuids.
    pub member_of: Vec<Vec<String>>,
    pub forbidden_aggs: Vec<String>,
    pub in_tree: Option<String>,
    pub root_required: Vec<Vec<String>>,
    pub root_forbidden: Vec<String>,
    pub limit: Option<usize>,
}

impl State {
    /// The state from its stored documents; one that cannot be read stops
    /// start-up, naming its kind and id.
    pub(crate) fn load(
        rps: Vec<(String, serde_json::Value)>,
        consumers: Vec<(String, serde_json::Value)>,
        rcs: Vec<(String, serde_json::Value)>,
        traits: Vec<(String, serde_json::Value)>,
    ) -> Result<State, ferro_common::Error> {
        let mut st = State::default();
        for (id, v) in rps {
            let p = serde_json::from_value::<Provider>(v)
                .map_err(|e| ferro_db::docs::undecodable(KIND_RP, &id, &e))?;
            st.providers.insert(id, p);
        }
        for (id, v) in consumers {
            let c = serde_json::from_value::<Consumer>(v)
                .map_err(|e| ferro_db::docs::undecodable(KIND_CONSUMER, &id, &e))?;
            st.consumers.insert(id, c);
        }
        st.custom_rcs = rcs.into_iter().map(|(id, _)| id).collect();
        st.custom_traits = traits.into_iter().map(|(id, _)| id).collect();
        Ok(st)
    }

    pub(crate) fn apply(&mut self, ch: Changes) {
        for (id, p) in ch.providers {
            match p {
                Some(p) => self.providers.insert(id, p),
                None => self.providers.remove(&id),
            };
        }
        for (id, c) in ch.consumers {
            match c {
                Some(c) => self.consumers.insert(id, c),
                None => self.consumers.remove(&id),
            };
        }
        for (n, present) in ch.rcs {
            if present {
                self.custom_rcs.insert(n);
            } else {
                self.custom_rcs.remove(&n);
            }
        }
        for (n, present) in ch.traits {
            if present {
                self.custom_traits.insert(n);
            } else {
                self.custom_traits.remove(&n);
            }
        }
    }

    pub(crate) fn provider(&self, uuid: &str) -> Result<&Provider, PErr> {
        self.providers
            .get(uuid)
            .ok_or_else(|| PErr::rp_not_found(uuid))
    }

    pub(crate) fn rc_exists(&self, rc: &str) -> bool {
        STANDARD_RESOURCE_CLASSES.contains(&rc) || self.custom_rcs.contains(rc)
    }

    pub(crate) fn trait_exists(&self, t: &str) -> bool {
        is_standard_trait(t) || self.custom_traits.contains(t)
    }

    pub(crate) fn all_traits(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = crate::names::STANDARD_TRAITS
            .iter()
            .map(|s| s.to_string())
            .collect();
        s.extend(self.custom_traits.iter().cloned());
        s
    }

    /// rp -> rc -> used, over every consumer.
    pub(crate) fn usage_map(&self) -> HashMap<&str, BTreeMap<&str, u64>> {
        let mut m: HashMap<&str, BTreeMap<&str, u64>> = HashMap::new();
        for c in self.consumers.values() {
            for (rp, res) in &c.allocations {
                let e = m.entry(rp.as_str()).or_default();
                for (rc, n) in res {
                    *e.entry(rc.as_str()).or_default() += n;
                }
            }
        }
        m
    }

    /// rc -> used for one provider (every inventory class, 0 when unused,
    /// plus any allocated class).
    pub(crate) fn provider_usage(&self, uuid: &str) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(p) = self.providers.get(uuid) {
            for rc in p.inventories.keys() {
                out.insert(rc.clone(), 0);
            }
        }
        for c in self.consumers.values() {
            if let Some(res) = c.allocations.get(uuid) {
                for (rc, n) in res {
                    *out.entry(rc.clone()).or_default() += n;
                }
            }
        }
        out
    }

    pub(crate) fn provider_has_allocations(&self, uuid: &str) -> bool {
        self.consumers.values().any(|c| {
            c.allocations
                .get(uuid)
                .is_some_and(|r| r.values().any(|n| *n > 0))
        })
    }

    pub(crate) fn children(&self, uuid: &str) -> Vec<&Provider> {
        self.providers
            .values()
            .filter(|p| p.parent.as_deref() == Some(uuid))
            .collect()
    }

    /// Every provider below `uuid` (not including it).
    pub(crate) fn descendants(&self, uuid: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![uuid.to_string()];
        while let Some(u) = todo.pop() {
            for c in self.children(&u) {
                if !out.contains(&c.uuid) && c.uuid != uuid {
                    out.push(c.uuid.clone());
                    todo.push(c.uuid.clone());
                }
            }
        }
        out
    }

    /// Validates and plans replacing the inventories of `uuid`. `check_gen`
    /// is the caller's provider generation, if it must match.
    pub(crate) fn plan_set_inventories(
        &self,
        uuid: &str,
        invs: BTreeMap<String, Inventory>,
        check_gen: Option<u64>,
        ch: &mut Changes,
    ) -> Result<Provider, PErr> {
        let p = self.provider(uuid)?;
        if let Some(g) = check_gen
            && g != p.generation
        {
            return Err(PErr::concurrent("resource provider generation conflict"));
        }
        for rc in invs.keys() {
            if !self.rc_exists(rc) && !ch.rcs.get(rc).copied().unwrap_or(false) {
                return Err(PErr::bad(format!(
                    "Unknown resource class in inventory for resource provider {uuid}: No such resource class {rc}."
                )));
            }
        }
        let usage = self.provider_usage(uuid);
        for (rc, used) in &usage {
            if *used > 0 && !invs.contains_key(rc) {
                return Err(PErr::new(
                    409,
                    format!(
                        "update conflict: Inventory for '{rc}' on resource provider '{uuid}' in use."
                    ),
                    CODE_INUSE,
                ));
            }
        }
        for (rc, inv) in &invs {
            let used = usage.get(rc).copied().unwrap_or(0);
            if used as f64 > capacity(inv) {
                tracing::warn!(
                    "resource provider {uuid} has capacity {} for {rc} but {used} is used",
                    capacity(inv)
                );
            }
        }
        let mut np = p.clone();
        if np.inventories != invs {
            np.inventories = invs;
            np.bump();
            ch.put_provider(np.clone());
        }
        Ok(np)
    }

    /// Validates and plans writing the allocations of several consumers at
    /// once (each consumer's allocations are replaced).
    pub(crate) fn plan_allocations(
        &self,
        writes: &[ConsumerWrite],
        ch: &mut Changes,
    ) -> Result<(), PErr> {
        let now = ferro_db::now_micros();
        // Providers may already be planned (reshaper); read through `ch`.
        let prov = |u: &str| -> Option<Provider> {
            match ch.providers.get(u) {
                Some(p) => p.clone(),
                None => self.providers.get(u).cloned(),
            }
        };
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut writing: BTreeSet<&str> = BTreeSet::new();
        for w in writes {
            if !writing.insert(w.consumer.as_str()) {
                return Err(PErr::bad(format!("Duplicate consumer {}", w.consumer)));
            }
            let existing = self.consumers.get(&w.consumer);
            if let Some(want) = w.generation {
                let have = existing.map(|c| c.generation);
                if have != want {
                    let fmt = |g: Option<u64>| g.map_or("None".to_string(), |g| g.to_string());
                    return Err(PErr::concurrent(match have {
                        Some(h) => format!(
                            "consumer generation conflict - expected {h} but got {}",
                            fmt(want)
                        ),
                        None => format!(
                            "consumer generation conflict - expected null but got {}",
                            fmt(want)
                        ),
                    }));
                }
            }
            for (rp, res) in &w.allocs {
                if prov(rp).is_none() {
                    return Err(PErr::bad(format!(
                        "Allocation for resource provider '{rp}' that does not exist."
                    )));
                }
                for rc in res.keys() {
                    if !self.rc_exists(rc) {
                        return Err(PErr::bad(format!(
                            "Unable to allocate inventory: No such resource class {rc}."
                        )));
                    }
                }
            }
            let old = existing.map(|c| &c.allocations);
            for (rp, res) in &w.allocs {
                if old.and_then(|o| o.get(rp)) != Some(res) {
                    touched.insert(rp.clone());
                }
            }
            if let Some(o) = old {
                for (rp, res) in o {
                    if w.allocs.get(rp) != Some(res) {
                        touched.insert(rp.clone());
                    }
                }
            }
        }
        // Usage after the change, for the providers receiving allocations.
        let mut usage: HashMap<(String, String), u64> = HashMap::new();
        for c in self.consumers.values() {
            if writing.contains(c.uuid.as_str()) {
                continue;
            }
            for (rp, res) in &c.allocations {
                if touched.contains(rp) {
                    for (rc, n) in res {
                        *usage.entry((rp.clone(), rc.clone())).or_default() += n;
                    }
                }
            }
        }
        for w in writes {
            for (rp, res) in &w.allocs {
                for (rc, n) in res {
                    *usage.entry((rp.clone(), rc.clone())).or_default() += n;
                }
            }
        }
        for w in writes {
            for (rp, res) in &w.allocs {
                let p = prov(rp).ok_or_else(|| PErr::bad("provider vanished"))?;
                for (rc, n) in res {
                    let Some(inv) = p.inventories.get(rc) else {
                        return Err(PErr::conflict(format!(
                            "Unable to allocate inventory: Inventory for '{rc}' on resource provider '{rp}' invalid."
                        )));
                    };
                    if *n < inv.min_unit
                        || *n > inv.max_unit
                        || (inv.step_size > 0 && n % inv.step_size != 0)
                    {
                        return Err(PErr::conflict(format!(
                            "Unable to allocate inventory: Unable to create allocation for '{rc}' on resource provider '{rp}'. The requested amount would violate inventory constraints."
                        )));
                    }
                    let used = usage.get(&(rp.clone(), rc.clone())).copied().unwrap_or(0);
                    if touched.contains(rp) && used as f64 > capacity(inv) {
                        return Err(PErr::conflict(format!(
                            "Unable to allocate inventory: Unable to create allocation for '{rc}' on resource provider '{rp}'. The requested amount would exceed the capacity."
                        )));
                    }
                }
            }
        }
        let bumped: Vec<Provider> = touched
            .iter()
            .filter_map(|rp| prov(rp))
            .map(|mut p| {
                p.bump();
                p
            })
            .collect();
        for w in writes {
            let existing = self.consumers.get(&w.consumer);
            if w.allocs.is_empty() {
                if existing.is_some() {
                    ch.consumers.insert(w.consumer.clone(), None);
                }
                continue;
            }
            let c = Consumer {
                uuid: w.consumer.clone(),
                project: w.project.clone(),
                user: w.user.clone(),
                consumer_type: w
                    .consumer_type
                    .clone()
                    .or_else(|| existing.and_then(|c| c.consumer_type.clone())),
                generation: existing.map_or(1, |c| c.generation + 1),
                allocations: w.allocs.clone(),
                created_at: existing.map_or(now, |c| c.created_at),
                updated_at: now,
            };
            ch.consumers.insert(w.consumer.clone(), Some(c));
        }
        for p in bumped {
            ch.put_provider(p);
        }
        Ok(())
    }

    /// Whether provider `p` passes the non-resource filters of `q`.
    fn matches_filters(&self, p: &Provider, q: &Query) -> bool {
        if let Some(t) = &q.in_tree {
            match self.providers.get(t) {
                Some(tp) if tp.root == p.root => {}
                _ => return false,
            }
        }
        if !q
            .required
            .iter()
            .all(|any| any.iter().any(|t| p.traits.contains(t)))
        {
            return false;
        }
        if q.forbidden.iter().any(|t| p.traits.contains(t)) {
            return false;
        }
        if !q
            .member_of
            .iter()
            .all(|any| any.iter().any(|a| p.aggregates.contains(a)))
        {
            return false;
        }
        if q.forbidden_aggs.iter().any(|a| p.aggregates.contains(a)) {
            return false;
        }
        if !q.root_required.is_empty() || !q.root_forbidden.is_empty() {
            let Some(root) = self.providers.get(&p.root) else {
                return false;
            };
            if !q
                .root_required
                .iter()
                .all(|any| any.iter().any(|t| root.traits.contains(t)))
                || q.root_forbidden.iter().any(|t| root.traits.contains(t))
            {
                return false;
            }
        }
        true
    }

    /// Whether `p` alone has room for `resources` given `usage`.
    fn has_capacity(
        p: &Provider,
        resources: &BTreeMap<String, u64>,
        usage: Option<&BTreeMap<&str, u64>>,
    ) -> bool {
        resources.iter().all(|(rc, amt)| {
            let Some(inv) = p.inventories.get(rc) else {
                return false;
            };
            let used = usage.and_then(|u| u.get(rc.as_str())).copied().unwrap_or(0);
            *amt >= inv.min_unit
                && *amt <= inv.max_unit
                && (inv.step_size == 0 || amt % inv.step_size == 0)
                && (used + amt) as f64 <= capacity(inv)
        })
    }

    /// Providers matching every filter of `q` (GET /resource_providers).
    pub(crate) fn filter_providers(&self, q: &Query) -> Vec<&Provider> {
        let usage = self.usage_map();
        self.providers
            .values()
            .filter(|p| self.matches_filters(p, q))
            .filter(|p| Self::has_capacity(p, &q.resources, usage.get(p.uuid.as_str())))
            .collect()
    }

    /// Single-provider allocation candidates for `q`, ordered by name.
    pub(crate) fn candidates(&self, q: &Query) -> Vec<Candidate> {
        let mut ps = self.filter_providers(q);
        ps.sort_by(|a, b| a.name.cmp(&b.name).then(a.uuid.cmp(&b.uuid)));
        if let Some(l) = q.limit {
            ps.truncate(l);
        }
        let usage = self.usage_map();
        ps.into_iter()
            .map(|p| {
                let u = usage.get(p.uuid.as_str());
                let summary = p
                    .inventories
                    .iter()
                    .map(|(rc, inv)| {
                        let used = u.and_then(|u| u.get(rc.as_str())).copied().unwrap_or(0);
                        (rc.clone(), (capacity(inv) as u64, used))
                    })
                    .collect();
                Candidate {
                    provider: p.uuid.clone(),
                    name: p.name.clone(),
                    allocations: q.resources.clone(),
                    summary,
                    traits: p.traits.iter().cloned().collect(),
                    aggregates: p.aggregates.iter().cloned().collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(total: u64) -> Inventory {
        Inventory {
            total,
            reserved: 0,
            min_unit: 1,
            max_unit: total,
            step_size: 1,
            allocation_ratio: 1.0,
        }
    }

    fn rp(st: &mut State, uuid: &str, invs: &[(&str, Inventory)]) {
        let mut p = Provider::new(uuid, uuid, None, uuid.to_string());
        for (rc, i) in invs {
            p.inventories.insert(rc.to_string(), i.clone());
        }
        st.providers.insert(uuid.to_string(), p);
    }

    fn write(st: &mut State, c: &str, rp: &str, res: &[(&str, u64)]) -> Result<(), PErr> {
        let mut allocs = AllocMap::new();
        allocs.insert(
            rp.to_string(),
            res.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        );
        let mut ch = Changes::default();
        st.plan_allocations(
            &[ConsumerWrite {
                consumer: c.into(),
                project: "p".into(),
                user: "u".into(),
                consumer_type: None,
                allocs,
                generation: None,
            }],
            &mut ch,
        )?;
        st.apply(ch);
        Ok(())
    }

    fn q(res: &[(&str, u64)]) -> Query {
        Query {
            resources: res.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Query::default()
        }
    }

    #[test]
    fn capacity_uses_reserved_and_ratio() {
        let mut i = inv(8);
        i.reserved = 2;
        i.allocation_ratio = 4.0;
        assert_eq!(capacity(&i), 24.0);
    }

    #[test]
    fn candidates_respect_capacity() {
        let mut st = State::default();
        rp(&mut st, "a", &[("VCPU", inv(4)), ("MEMORY_MB", inv(1024))]);
        rp(&mut st, "b", &[("VCPU", inv(2))]);
        let c = st.candidates(&q(&[("VCPU", 2)]));
        assert_eq!(c.len(), 2);
        let c = st.candidates(&q(&[("VCPU", 2), ("MEMORY_MB", 512)]));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].provider, "a");
        assert_eq!(c[0].summary["MEMORY_MB"], (1024, 0));
        write(&mut st, "c1", "a", &[("VCPU", 3)]).unwrap();
        let c = st.candidates(&q(&[("VCPU", 2)]));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].provider, "b");
        let c = st.candidates(&q(&[("VCPU", 1)]));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].summary["VCPU"], (4, 3));
    }

    #[test]
    fn unit_constraints() {
        let mut st = State::default();
        let mut i = inv(16);
        i.min_unit = 2;
        i.max_unit = 8;
        i.step_size = 2;
        rp(&mut st, "a", &[("VCPU", i)]);
        assert!(st.candidates(&q(&[("VCPU", 1)])).is_empty());
        assert!(st.candidates(&q(&[("VCPU", 3)])).is_empty());
        assert!(st.candidates(&q(&[("VCPU", 10)])).is_empty());
        assert_eq!(st.candidates(&q(&[("VCPU", 4)])).len(), 1);
        assert_eq!(
            write(&mut st, "c", "a", &[("VCPU", 3)]).unwrap_err().status,
            409
        );
        write(&mut st, "c", "a", &[("VCPU", 8)]).unwrap();
    }

    #[test]
    fn overcommit_and_conflict() {
        let mut st = State::default();
        let mut i = inv(2);
        i.allocation_ratio = 2.0;
        i.max_unit = 4;
        rp(&mut st, "a", &[("VCPU", i)]);
        write(&mut st, "c1", "a", &[("VCPU", 3)]).unwrap();
        let e = write(&mut st, "c2", "a", &[("VCPU", 2)]).unwrap_err();
        assert_eq!(e.status, 409);
        write(&mut st, "c2", "a", &[("VCPU", 1)]).unwrap();
        // Replacing c1's own allocation does not count it twice.
        write(&mut st, "c1", "a", &[("VCPU", 3)]).unwrap();
        assert_eq!(st.provider_usage("a")["VCPU"], 4);
        assert_eq!(st.consumers["c1"].generation, 2);
        assert_eq!(st.consumers["c2"].generation, 1);
    }

    #[test]
    fn consumer_generation_checks() {
        let mut st = State::default();
        rp(&mut st, "a", &[("VCPU", inv(8))]);
        let mk = |g: Option<Option<u64>>, n: u64| ConsumerWrite {
            consumer: "c".into(),
            project: "p".into(),
            user: "u".into(),
            consumer_type: None,
            allocs: [("a".to_string(), [("VCPU".to_string(), n)].into())].into(),
            generation: g,
        };
        let mut ch = Changes::default();
        st.plan_allocations(&[mk(Some(Some(3)), 1)], &mut ch)
            .unwrap_err();
        let mut ch = Changes::default();
        st.plan_allocations(&[mk(Some(None), 1)], &mut ch).unwrap();
        st.apply(ch);
        let mut ch = Changes::default();
        let e = st
            .plan_allocations(&[mk(Some(None), 2)], &mut ch)
            .unwrap_err();
        assert_eq!(e.code, CODE_CONCURRENT);
        let mut ch = Changes::default();
        st.plan_allocations(&[mk(Some(Some(1)), 2)], &mut ch)
            .unwrap();
        st.apply(ch);
        assert_eq!(st.consumers["c"].generation, 2);
        assert_eq!(st.providers["a"].generation, 2);
    }

    #[test]
    fn trait_and_aggregate_filters() {
        let mut st = State::default();
        rp(&mut st, "a", &[("VCPU", inv(4))]);
        rp(&mut st, "b", &[("VCPU", inv(4))]);
        st.providers
            .get_mut("a")
            .unwrap()
            .traits
            .insert("HW_CPU_X86_AVX".into());
        st.providers
            .get_mut("b")
            .unwrap()
            .aggregates
            .insert("agg1".into());
        let mut qq = q(&[("VCPU", 1)]);
        qq.required = vec![vec!["HW_CPU_X86_AVX".into()]];
        assert_eq!(st.candidates(&qq)[0].provider, "a");
        let mut qq = q(&[("VCPU", 1)]);
        qq.forbidden = vec!["HW_CPU_X86_AVX".into()];
        assert_eq!(st.candidates(&qq)[0].provider, "b");
        let mut qq = q(&[("VCPU", 1)]);
        qq.member_of = vec![vec!["agg1".into(), "agg2".into()]];
        let c = st.candidates(&qq);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].provider, "b");
        let mut qq = q(&[("VCPU", 1)]);
        qq.forbidden_aggs = vec!["agg1".into()];
        assert_eq!(st.candidates(&qq)[0].provider, "a");
        let mut qq = q(&[("VCPU", 1)]);
        qq.limit = Some(1);
        assert_eq!(st.candidates(&qq).len(), 1);
        let mut qq = q(&[("VCPU", 1)]);
        qq.in_tree = Some("b".into());
        assert_eq!(st.candidates(&qq)[0].provider, "b");
    }

    #[test]
    fn inventory_in_use_cannot_be_removed() {
        let mut st = State::default();
        rp(&mut st, "a", &[("VCPU", inv(4)), ("DISK_GB", inv(10))]);
        write(&mut st, "c", "a", &[("VCPU", 1)]).unwrap();
        let mut ch = Changes::default();
        let e = st
            .plan_set_inventories("a", [("DISK_GB".into(), inv(10))].into(), None, &mut ch)
            .unwrap_err();
        assert_eq!(e.code, CODE_INUSE);
        let mut ch = Changes::default();
        st.plan_set_inventories("a", [("VCPU".into(), inv(4))].into(), None, &mut ch)
            .unwrap();
        let mut ch = Changes::default();
        let e = st
            .plan_set_inventories("a", [("VCPU".into(), inv(4))].into(), Some(0), &mut ch)
            .unwrap_err();
        assert_eq!(e.code, CODE_CONCURRENT);
    }
}
