//! Nova's weighers; a multiplier of 0 switches one off.
use crate::{HostState, HostWeigher, RequestSpec, SchedulerConfig};

pub fn all(cfg: &SchedulerConfig) -> Vec<(Box<dyn HostWeigher>, f64)> {
    vec![
        (
            Box::new(Ram) as Box<dyn HostWeigher>,
            cfg.ram_weight_multiplier,
        ),
        (Box::new(Cpu), cfg.cpu_weight_multiplier),
        (Box::new(Disk), cfg.disk_weight_multiplier),
        (Box::new(IoOps), cfg.io_ops_weight_multiplier),
        (Box::new(NumInstances), cfg.num_instances_weight_multiplier),
        (Box::new(SoftAffinity), cfg.soft_affinity_weight_multiplier),
        (
            Box::new(SoftAntiAffinity),
            cfg.soft_anti_affinity_weight_multiplier,
        ),
        (Box::new(BuildFailure), cfg.build_failure_weight_multiplier),
    ]
}

struct Ram;
impl HostWeigher for Ram {
    fn name(&self) -> &'static str {
        "RAMWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        h.free_ram_mb()
    }
}
struct Cpu;
impl HostWeigher for Cpu {
    fn name(&self) -> &'static str {
        "CPUWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        h.free_vcpus()
    }
}
struct Disk;
impl HostWeigher for Disk {
    fn name(&self) -> &'static str {
        "DiskWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        h.free_disk_gb()
    }
}
struct IoOps;
impl HostWeigher for IoOps {
    fn name(&self) -> &'static str {
        "IoOpsWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        f64::from(h.num_io_ops)
    }
}
struct NumInstances;
impl HostWeigher for NumInstances {
    fn name(&self) -> &'static str {
        "NumInstancesWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        h.instances.len() as f64
    }
}
fn members_on(h: &HostState, s: &RequestSpec, policy: &str) -> f64 {
    s.group
        .as_ref()
        .filter(|g| g.policy == policy)
        .map(|g| g.member_hosts.iter().filter(|x| *x == &h.host).count() as f64)
        .unwrap_or(0.0)
}
struct SoftAffinity;
impl HostWeigher for SoftAffinity {
    fn name(&self) -> &'static str {
        "ServerGroupSoftAffinityWeigher"
    }
    fn weigh(&self, h: &HostState, s: &RequestSpec) -> f64 {
        members_on(h, s, "soft-affinity")
    }
}
struct SoftAntiAffinity;
impl HostWeigher for SoftAntiAffinity {
    fn name(&self) -> &'static str {
        "ServerGroupSoftAntiAffinityWeigher"
    }
    fn weigh(&self, h: &HostState, s: &RequestSpec) -> f64 {
        -members_on(h, s, "soft-anti-affinity")
    }
}
struct BuildFailure;
impl HostWeigher for BuildFailure {
    fn name(&self) -> &'static str {
        "BuildFailureWeigher"
    }
    fn weigh(&self, h: &HostState, _: &RequestSpec) -> f64 {
        -f64::from(h.failed_builds)
    }
}
