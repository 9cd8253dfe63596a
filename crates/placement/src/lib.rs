//! Placement (the resource-provider inventory and allocation service).
//!
//! All state lives in memory behind one `tokio::sync::Mutex`, loaded from the
//! document store at start-up and written through on every change (one
//! `docs_apply` transaction per write; the in-memory state changes only after
//! the write committed). The Rust API below is what compute and the scheduler
//! call; `http` serves the Placement REST API (microversions 1.0-1.39).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod http;
pub mod names;
mod state;

pub use state::PErr;
use state::{Changes, ConsumerWrite, Provider, Query, State};

use ferro_auth::TokenValidator;
use ferro_common::Error;
use ferro_config::Config;
use ferro_db::Db;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// rp uuid -> resource class -> amount
pub type AllocMap = BTreeMap<String, BTreeMap<String, u64>>;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub total: u64,
    #[serde(default)]
    pub reserved: u64,
    #[serde(default = "one")]
    pub min_unit: u64,
    #[serde(default = "max_int")]
    pub max_unit: u64,
    #[serde(default = "one")]
    pub step_size: u64,
    #[serde(default = "ratio")]
    pub allocation_ratio: f64,
}
fn one() -> u64 {
    1
}
fn max_int() -> u64 {
    2147483647
}
fn ratio() -> f64 {
    1.0
}

/// What the scheduler asks for (one unnamed request group).
#[derive(Clone, Debug, Default)]
pub struct CandidateQuery {
    pub resources: BTreeMap<String, u64>,
    pub required: Vec<String>,
    pub forbidden: Vec<String>,
    /// Each inner list is an OR of aggregate uuids; the outer list is an AND.
    pub member_of: Vec<Vec<String>>,
    pub in_tree: Option<String>,
    pub limit: Option<usize>,
}

/// One provider that can satisfy the whole query alone.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub provider: String,
    pub name: String,
    pub allocations: BTreeMap<String, u64>,
    /// resource class -> (capacity = (total-reserved)*ratio, used)
    pub summary: BTreeMap<String, (u64, u64)>,
    pub traits: Vec<String>,
    pub aggregates: Vec<String>,
}

pub struct PlacementService {
    pub db: Db,
    pub cfg: Config,
    pub validator: Arc<dyn TokenValidator>,
    /// `<public_url>/placement`
    pub base_url: String,
    state: tokio::sync::Mutex<State>,
}

impl PlacementService {
    pub async fn new(
        db: Db,
        cfg: Config,
        validator: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Self>, Error> {
        let base_url = format!("{}/placement", cfg.public_url());
        let st = State::load(
            db.docs_load(state::KIND_RP).await?,
            db.docs_load(state::KIND_CONSUMER).await?,
            db.docs_load(state::KIND_RC).await?,
            db.docs_load(state::KIND_TRAIT).await?,
        )?;
        Ok(Arc::new(PlacementService {
            db,
            cfg,
            validator,
            base_url,
            state: tokio::sync::Mutex::new(st),
        }))
    }

    /// Persists `ch` in one transaction, then applies it to `st`.
    pub(crate) async fn commit(&self, st: &mut State, ch: Changes) -> Result<(), PErr> {
        if ch.is_empty() {
            return Ok(());
        }
        let ops = ch.ops()?;
        self.db.docs_apply(ops).await?;
        st.apply(ch);
        Ok(())
    }

    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, State> {
        self.state.lock().await
    }

    /// Creates the provider or updates its name, inventories and traits
    /// (compute nodes report themselves through this). Inventories are
    /// replaced; the given traits are added (existing ones are kept; use
    /// [`Self::set_provider_traits`] to replace). Unknown traits are
    /// registered on demand. The generation bumps only on a change.
    pub async fn ensure_provider(
        &self,
        uuid: &str,
        name: &str,
        inventories: BTreeMap<String, Inventory>,
        traits: Vec<String>,
    ) -> Result<(), Error> {
        self.ensure_provider_inner(uuid, name, inventories, traits, false)
            .await
            .map_err(Error::from)
    }

    /// Replaces the traits of a provider (unknown traits are registered).
    pub async fn set_provider_traits(&self, uuid: &str, traits: Vec<String>) -> Result<(), Error> {
        let mut st = self.lock().await;
        let mut ch = Changes::default();
        let p = st.provider(uuid).map_err(Error::from)?;
        let mut np = p.clone();
        let want: std::collections::BTreeSet<String> = traits.into_iter().collect();
        for t in &want {
            if !st.trait_exists(t) {
                check_trait_name(t)?;
                ch.traits.insert(t.clone(), true);
            }
        }
        if np.traits != want {
            np.traits = want;
            np.bump();
            ch.put_provider(np);
        }
        self.commit(&mut st, ch).await.map_err(Error::from)
    }

    async fn ensure_provider_inner(
        &self,
        uuid: &str,
        name: &str,
        inventories: BTreeMap<String, Inventory>,
        traits: Vec<String>,
        replace_traits: bool,
    ) -> Result<(), PErr> {
        let mut st = self.lock().await;
        let mut ch = Changes::default();
        if let Some(other) = st
            .providers
            .values()
            .find(|p| p.name == name && p.uuid != uuid)
        {
            return Err(PErr::new(
                409,
                format!(
                    "Conflicting resource provider name: {name} already exists ({}).",
                    other.uuid
                ),
                state::CODE_DUPLICATE,
            ));
        }
        for (rc, inv) in &inventories {
            if !st.rc_exists(rc) {
                if names::valid_custom_name(rc) {
                    ch.rcs.insert(rc.clone(), true);
                } else {
                    return Err(PErr::bad(format!("No such resource class {rc}.")));
                }
            }
            validate_inventory(rc, inv, true)?;
        }
        for t in &traits {
            if !st.trait_exists(t) {
                check_trait_name(t)?;
                ch.traits.insert(t.clone(), true);
            }
        }
        let created = !st.providers.contains_key(uuid);
        if created {
            let p = Provider::new(uuid, name, None, uuid.to_string());
            ch.put_provider(p);
        }
        // Inventories (against a state view that includes the new provider).
        let mut np = match ch.providers.get(uuid) {
            Some(Some(p)) => p.clone(),
            _ => st.provider(uuid)?.clone(),
        };
        let usage = st.provider_usage(uuid);
        for (rc, used) in &usage {
            if *used > 0 && !inventories.contains_key(rc) {
                return Err(PErr::new(
                    409,
                    format!("Inventory for '{rc}' on resource provider '{uuid}' in use."),
                    state::CODE_INUSE,
                ));
            }
        }
        let mut changed = false;
        if np.name != name {
            np.name = name.to_string();
            np.updated_at = ferro_db::now_micros();
            ch.put_provider(np.clone());
        }
        if np.inventories != inventories {
            np.inventories = inventories;
            changed = true;
        }
        let mut want: std::collections::BTreeSet<String> = traits.into_iter().collect();
        if !replace_traits {
            want.extend(np.traits.iter().cloned());
        }
        if np.traits != want {
            np.traits = want;
            changed = true;
        }
        if changed {
            np.bump();
            ch.put_provider(np);
        }
        self.commit(&mut st, ch).await
    }

    /// Deletes a provider (409 when it has allocations or children; Ok
    /// when it does not exist).
    pub async fn delete_provider(&self, uuid: &str) -> Result<(), Error> {
        match self.delete_provider_inner(uuid).await {
            Err(e) if e.status == 404 => Ok(()),
            r => r.map_err(Error::from),
        }
    }

    pub(crate) async fn delete_provider_inner(&self, uuid: &str) -> Result<(), PErr> {
        let mut st = self.lock().await;
        st.provider(uuid)?;
        if st.provider_has_allocations(uuid) {
            return Err(PErr::new(
                409,
                format!(
                    "Unable to delete resource provider {uuid}: Resource provider has allocations."
                ),
                state::CODE_PROVIDER_INUSE,
            ));
        }
        if !st.children(uuid).is_empty() {
            return Err(PErr::new(
                409,
                format!(
                    "Unable to delete parent resource provider {uuid}: It has child resource providers."
                ),
                state::CODE_CANNOT_DELETE_PARENT,
            ));
        }
        let mut ch = Changes::default();
        ch.providers.insert(uuid.to_string(), None);
        // Forget empty allocation entries that still name the provider.
        for c in st.consumers.values() {
            if c.allocations.contains_key(uuid) {
                let mut nc = c.clone();
                nc.allocations.remove(uuid);
                if nc.allocations.is_empty() {
                    ch.consumers.insert(c.uuid.clone(), None);
                } else {
                    ch.consumers.insert(c.uuid.clone(), Some(nc));
                }
            }
        }
        self.commit(&mut st, ch).await
    }

    pub async fn allocation_candidates(&self, q: &CandidateQuery) -> Result<Vec<Candidate>, Error> {
        let st = self.lock().await;
        let query = Query {
            resources: q.resources.clone(),
            required: q.required.iter().map(|t| vec![t.clone()]).collect(),
            forbidden: q.forbidden.clone(),
            member_of: q.member_of.clone(),
            in_tree: q.in_tree.clone(),
            limit: q.limit,
            ..Query::default()
        };
        if let Some(t) = &query.in_tree
            && !st.providers.contains_key(t)
        {
            return Ok(Vec::new());
        }
        Ok(st.candidates(&query))
    }

    /// Replaces every allocation of `consumer` atomically; an empty map
    /// deletes them. 409 (Error::Conflict) when capacity is exceeded or
    /// `consumer_generation` does not match. `None` skips the generation
    /// check (the HTTP API enforces Placement 1.28's "null means new").
    pub async fn put_allocations(
        &self,
        consumer: &str,
        project: &str,
        user: &str,
        allocs: AllocMap,
        consumer_generation: Option<u64>,
    ) -> Result<(), Error> {
        let allocs: AllocMap = allocs
            .into_iter()
            .map(|(rp, res)| (rp, res.into_iter().filter(|(_, n)| *n > 0).collect()))
            .filter(|(_, res): &(String, BTreeMap<String, u64>)| !res.is_empty())
            .collect();
        let w = ConsumerWrite {
            consumer: consumer.to_string(),
            project: project.to_string(),
            user: user.to_string(),
            consumer_type: None,
            allocs,
            generation: consumer_generation.map(Some),
        };
        self.write_allocations(vec![w]).await.map_err(Error::from)
    }

    pub(crate) async fn write_allocations(&self, writes: Vec<ConsumerWrite>) -> Result<(), PErr> {
        let mut st = self.lock().await;
        let mut ch = Changes::default();
        st.plan_allocations(&writes, &mut ch)?;
        self.commit(&mut st, ch).await
    }

    pub async fn get_allocations(&self, consumer: &str) -> (AllocMap, Option<u64>) {
        let st = self.lock().await;
        match st.consumers.get(consumer) {
            Some(c) => (c.allocations.clone(), Some(c.generation)),
            None => (AllocMap::new(), None),
        }
    }

    pub async fn delete_allocations(&self, consumer: &str) -> Result<(), Error> {
        let st = self.lock().await;
        let Some(c) = st.consumers.get(consumer) else {
            return Ok(());
        };
        let w = ConsumerWrite {
            consumer: consumer.to_string(),
            project: c.project.clone(),
            user: c.user.clone(),
            consumer_type: None,
            allocs: AllocMap::new(),
            generation: None,
        };
        drop(st);
        self.write_allocations(vec![w]).await.map_err(Error::from)
    }

    pub async fn provider_aggregates(&self, uuid: &str) -> Vec<String> {
        let st = self.lock().await;
        st.providers
            .get(uuid)
            .map(|p| p.aggregates.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub async fn set_provider_aggregates(
        &self,
        uuid: &str,
        aggs: Vec<String>,
    ) -> Result<(), Error> {
        let mut st = self.lock().await;
        let p = st.provider(uuid).map_err(Error::from)?;
        let want: std::collections::BTreeSet<String> = aggs.into_iter().collect();
        let mut ch = Changes::default();
        if p.aggregates != want {
            let mut np = p.clone();
            np.aggregates = want;
            np.bump();
            ch.put_provider(np);
        }
        self.commit(&mut st, ch).await.map_err(Error::from)
    }

    /// resource class -> used, for one provider.
    pub async fn provider_usages(&self, uuid: &str) -> BTreeMap<String, u64> {
        self.lock().await.provider_usage(uuid)
    }
}

/// Any trait the Rust API names must at least look like one.
fn check_trait_name(t: &str) -> Result<(), Error> {
    if names::valid_name_chars(t) {
        Ok(())
    } else {
        Err(Error::validation(format!("Invalid trait name {t}.")))
    }
}

/// Placement's inventory field rules. `reserved_may_equal_total`: 1.26+.
pub(crate) fn validate_inventory(
    rc: &str,
    inv: &Inventory,
    reserved_may_equal_total: bool,
) -> Result<(), PErr> {
    const MAX: u64 = 2147483647;
    let bad = |why: &str| PErr::bad(format!("Bad inventory {rc}: {why}"));
    if inv.total < 1 || inv.total > MAX {
        return Err(bad("total must be between 1 and 2147483647"));
    }
    if inv.reserved > MAX {
        return Err(bad("reserved must be at most 2147483647"));
    }
    if inv.min_unit < 1 || inv.max_unit < 1 || inv.step_size < 1 {
        return Err(bad("min_unit, max_unit and step_size must be at least 1"));
    }
    if inv.min_unit > MAX || inv.max_unit > MAX || inv.step_size > MAX {
        return Err(bad(
            "min_unit, max_unit and step_size must be at most 2147483647",
        ));
    }
    if inv.allocation_ratio.is_nan()
        || inv.allocation_ratio <= 0.0
        || !inv.allocation_ratio.is_finite()
    {
        return Err(bad("allocation_ratio must be greater than 0"));
    }
    let cap = state::capacity(inv);
    let invalid = if reserved_may_equal_total {
        inv.reserved > inv.total
    } else {
        inv.reserved >= inv.total || cap <= 0.0
    };
    if invalid {
        return Err(PErr::bad(format!(
            "Invalid inventory for '{rc}': the reserved value is greater than or equal to total or the capacity is zero."
        )));
    }
    Ok(())
}
