//! What Compute needs of Placement (Nova's scheduler report client): its
//! own view of inventories, candidates and allocations, and the narrow
//! [`PlacementApi`] the wiring implements over the Placement service, as
//! Image, Networking and Block Storage are reached through traits too.
use ferro_common::Error;
use std::collections::BTreeMap;

/// Consumer allocations: provider uuid -> resource class -> amount.
pub type AllocMap = BTreeMap<String, BTreeMap<String, u64>>;

/// One resource class's inventory on a compute node.
#[derive(Clone, Debug, PartialEq)]
pub struct Inventory {
    pub total: u64,
    pub reserved: u64,
    pub min_unit: u64,
    pub max_unit: u64,
    pub step_size: u64,
    pub allocation_ratio: f64,
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

/// The Placement calls Compute makes.
#[async_trait::async_trait]
pub trait PlacementApi: Send + Sync {
    async fn allocation_candidates(&self, q: &CandidateQuery) -> Result<Vec<Candidate>, Error>;
    async fn put_allocations(
        &self,
        consumer: &str,
        project: &str,
        user: &str,
        allocs: AllocMap,
        consumer_generation: Option<u64>,
    ) -> Result<(), Error>;
    /// The consumer's allocations and generation (None: no such consumer).
    async fn get_allocations(&self, consumer: &str) -> (AllocMap, Option<u64>);
    /// Gone already is fine.
    async fn delete_allocations(&self, consumer: &str) -> Result<(), Error>;
    /// Creates or updates a compute node's provider and inventories.
    async fn ensure_provider(
        &self,
        uuid: &str,
        name: &str,
        inventories: BTreeMap<String, Inventory>,
        traits: Vec<String>,
    ) -> Result<(), Error>;
    /// Gone already is fine.
    async fn delete_provider(&self, uuid: &str) -> Result<(), Error>;
    async fn set_provider_aggregates(&self, uuid: &str, aggs: Vec<String>) -> Result<(), Error>;
    /// Resource class -> amount used on a provider.
    async fn provider_usages(&self, uuid: &str) -> BTreeMap<String, u64>;
}
