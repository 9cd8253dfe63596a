//! Nova's filter scheduler over Placement's candidates: every enabled
//! `HostFilter` removes hosts, every `HostWeigher` scores the rest (each
//! weigher's scores normalised to 0..1, then multiplied by its multiplier,
//! as upstream). When nothing is left, the error says which filter removed
//! which hosts. Filter and option names are upstream's (`enabled_filters`,
//! `ram_weight_multiplier`, ...). Pure: no I/O.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod filters;
pub mod weighers;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One candidate host as the scheduler sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostState {
    pub host: String,
    /// The compute node's resource provider uuid.
    pub node: String,
    pub availability_zone: String,
    pub enabled: bool,
    pub up: bool,
    pub disabled_reason: Option<String>,
    pub vcpus_total: f64,
    pub vcpus_used: f64,
    pub ram_total_mb: f64,
    pub ram_used_mb: f64,
    pub disk_total_gb: f64,
    pub disk_used_gb: f64,
    pub hypervisor_type: String,
    pub hypervisor_version: u64,
    pub arch: String,
    /// aggregate id -> metadata
    pub aggregates: BTreeMap<String, BTreeMap<String, String>>,
    pub instances: BTreeSet<String>,
    pub num_io_ops: u32,
    pub failed_builds: u32,
}

impl HostState {
    pub fn free_ram_mb(&self) -> f64 {
        self.ram_total_mb - self.ram_used_mb
    }
    pub fn free_vcpus(&self) -> f64 {
        self.vcpus_total - self.vcpus_used
    }
    pub fn free_disk_gb(&self) -> f64 {
        self.disk_total_gb - self.disk_used_gb
    }
    /// Every value of `key` across this host's aggregates.
    pub fn aggregate_values(&self, key: &str) -> BTreeSet<String> {
        self.aggregates
            .values()
            .filter_map(|m| m.get(key))
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .collect()
    }
}

/// A server group the instance belongs to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupSpec {
    pub id: String,
    /// affinity, anti-affinity, soft-affinity, soft-anti-affinity
    pub policy: String,
    pub max_server_per_host: Option<u32>,
    /// Hosts of the group's members (with repeats: one entry per member).
    pub member_hosts: Vec<String>,
}

/// What is being placed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestSpec {
    pub instance_uuid: String,
    pub project_id: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub flavor_extra_specs: BTreeMap<String, String>,
    pub image_properties: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    /// `az:host[:node]` or `hypervisor_hostname` pinning.
    pub force_host: Option<String>,
    pub group: Option<GroupSpec>,
    pub same_host: Vec<String>,
    pub different_host: Vec<String>,
    /// Instance uuid -> host, for same/different_host hints.
    pub instance_hosts: BTreeMap<String, String>,
    /// Hosts already tried for this build (reschedules).
    pub ignore_hosts: Vec<String>,
}

pub trait HostFilter: Send + Sync {
    fn name(&self) -> &'static str;
    fn passes(&self, host: &HostState, spec: &RequestSpec) -> bool;
}

pub trait HostWeigher: Send + Sync {
    fn name(&self) -> &'static str;
    /// Raw score; larger is better before normalisation.
    fn weigh(&self, host: &HostState, spec: &RequestSpec) -> f64;
}

/// One filter's effect, for the fault message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterResult {
    pub filter: String,
    pub start: usize,
    pub end: usize,
    pub removed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoValidHost {
    pub reason: String,
    pub results: Vec<FilterResult>,
}

impl NoValidHost {
    /// `No valid host was found. ...` with the filter chain, as the fault says it.
    pub fn message(&self) -> String {
        let mut s = format!("No valid host was found. {}", self.reason);
        if !self.results.is_empty() {
            let parts: Vec<String> = self
                .results
                .iter()
                .map(|r| {
                    if r.removed.is_empty() {
                        format!("{}: (start: {}, end: {})", r.filter, r.start, r.end)
                    } else {
                        format!(
                            "{}: (start: {}, end: {}) removed {}",
                            r.filter,
                            r.start,
                            r.end,
                            r.removed.join(", ")
                        )
                    }
                })
                .collect();
            s.push_str(" Filter results: [");
            s.push_str(&parts.join("; "));
            s.push(']');
        }
        s
    }
}

/// Scheduler options, under upstream's `[filter_scheduler]` names.
pub use ferro_config::FilterSchedulerConfig as SchedulerConfig;

pub struct Scheduler {
    filters: Vec<Box<dyn HostFilter>>,
    weighers: Vec<(Box<dyn HostWeigher>, f64)>,
}

impl Scheduler {
    /// Builds the chain; an unknown filter name is an error (as upstream's start-up).
    pub fn new(cfg: &SchedulerConfig) -> Result<Scheduler, String> {
        let mut fs = Vec::new();
        for name in &cfg.enabled_filters {
            fs.push(
                filters::by_name(name, cfg)
                    .ok_or_else(|| format!("unknown scheduler filter {name}"))?,
            );
        }
        Ok(Scheduler {
            filters: fs,
            weighers: weighers::all(cfg),
        })
    }

    /// Filters then weighs `hosts`; returns them best first.
    pub fn select(
        &self,
        hosts: Vec<HostState>,
        spec: &RequestSpec,
    ) -> Result<Vec<HostState>, NoValidHost> {
        let mut results = Vec::new();
        let mut left: Vec<HostState> = hosts
            .into_iter()
            .filter(|h| !spec.ignore_hosts.contains(&h.host))
            .collect();
        if left.is_empty() {
            return Err(NoValidHost {
                reason: if spec.ignore_hosts.is_empty() {
                    "There are no compute hosts with enough free resources (Placement returned no candidates).".into()
                } else {
                    format!(
                        "Exceeded maximum number of retries; already tried {}.",
                        spec.ignore_hosts.join(", ")
                    )
                },
                results,
            });
        }
        for f in &self.filters {
            let start = left.len();
            let (keep, gone): (Vec<HostState>, Vec<HostState>) =
                left.into_iter().partition(|h| f.passes(h, spec));
            results.push(FilterResult {
                filter: f.name().to_string(),
                start,
                end: keep.len(),
                removed: gone.into_iter().map(|h| h.host).collect(),
            });
            left = keep;
            if left.is_empty() {
                return Err(NoValidHost {
                    reason: format!(
                        "Filtering removed all hosts for instance {}.",
                        spec.instance_uuid
                    ),
                    results,
                });
            }
        }
        let n = left.len();
        let mut totals = vec![0.0f64; n];
        for (w, mult) in &self.weighers {
            if *mult == 0.0 {
                continue;
            }
            let raw: Vec<f64> = left.iter().map(|h| w.weigh(h, spec)).collect();
            let (lo, hi) = raw
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            for (i, v) in raw.iter().enumerate() {
                let norm = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                totals[i] += norm * mult;
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        // Stable: equal weights keep the candidates' order (host name).
        order.sort_by(|a, b| {
            totals[*b]
                .partial_cmp(&totals[*a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut slots: Vec<Option<HostState>> = left.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, ram_used: f64) -> HostState {
        HostState {
            host: name.into(),
            node: format!("node-{name}"),
            availability_zone: "nova".into(),
            enabled: true,
            up: true,
            vcpus_total: 16.0,
            ram_total_mb: 8192.0,
            ram_used_mb: ram_used,
            disk_total_gb: 100.0,
            hypervisor_type: "fake".into(),
            arch: "x86_64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ram_weigher_spreads_and_filters_explain() {
        let s = Scheduler::new(&SchedulerConfig::default()).unwrap();
        let spec = RequestSpec {
            instance_uuid: "i".into(),
            vcpus: 1,
            memory_mb: 512,
            ..Default::default()
        };
        let out = s
            .select(vec![host("a", 4096.0), host("b", 0.0)], &spec)
            .unwrap();
        assert_eq!(out[0].host, "b");

        let mut down = host("c", 0.0);
        down.up = false;
        let spec_az = RequestSpec {
            availability_zone: Some("other".into()),
            ..spec.clone()
        };
        let err = s.select(vec![down, host("d", 0.0)], &spec_az).unwrap_err();
        let msg = err.message();
        assert!(
            msg.contains("ComputeFilter: (start: 2, end: 1) removed c"),
            "{msg}"
        );
        assert!(
            msg.contains("AvailabilityZoneFilter: (start: 1, end: 0) removed d"),
            "{msg}"
        );
    }

    #[test]
    fn affinity_and_anti_affinity() {
        let s = Scheduler::new(&SchedulerConfig::default()).unwrap();
        let mut spec = RequestSpec {
            instance_uuid: "i".into(),
            group: Some(GroupSpec {
                id: "g".into(),
                policy: "anti-affinity".into(),
                max_server_per_host: None,
                member_hosts: vec!["a".into()],
            }),
            ..Default::default()
        };
        let out = s
            .select(vec![host("a", 0.0), host("b", 0.0)], &spec)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].host, "b");
        spec.group.as_mut().unwrap().policy = "affinity".into();
        let out = s
            .select(vec![host("a", 0.0), host("b", 0.0)], &spec)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].host, "a");
    }

    #[test]
    fn unknown_filter_is_refused() {
        let cfg = SchedulerConfig {
            enabled_filters: vec!["NoSuchFilter".into()],
            ..Default::default()
        };
        assert!(Scheduler::new(&cfg).is_err());
    }
}
