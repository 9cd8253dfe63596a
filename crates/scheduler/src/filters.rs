//! Nova's host filters, by their upstream names.
use crate::{HostFilter, HostState, RequestSpec, SchedulerConfig};

pub fn by_name(name: &str, cfg: &SchedulerConfig) -> Option<Box<dyn HostFilter>> {
    Some(match name {
        "AllHostsFilter" => Box::new(AllHosts),
        "ComputeFilter" => Box::new(Compute),
        "AvailabilityZoneFilter" => Box::new(AvailabilityZone),
        "ComputeCapabilitiesFilter" => Box::new(ComputeCapabilities),
        "ImagePropertiesFilter" => Box::new(ImageProperties),
        "ServerGroupAffinityFilter" => Box::new(GroupAffinity),
        "ServerGroupAntiAffinityFilter" => Box::new(GroupAntiAffinity),
        "SameHostFilter" => Box::new(SameHost),
        "DifferentHostFilter" => Box::new(DifferentHost),
        "AggregateInstanceExtraSpecsFilter" => Box::new(AggregateExtraSpecs),
        "AggregateMultiTenancyIsolation" => Box::new(AggregateTenancy),
        "AggregateImagePropertiesIsolation" => Box::new(AggregateImageIsolation),
        "NumInstancesFilter" => Box::new(NumInstances(cfg.max_instances_per_host)),
        "AggregateNumInstancesFilter" => {
            Box::new(AggregateNumInstances(cfg.max_instances_per_host))
        }
        "IoOpsFilter" => Box::new(IoOps(cfg.max_io_ops_per_host)),
        "IsolatedHostsFilter" => Box::new(IsolatedHosts {
            images: cfg.isolated_images.clone(),
            hosts: cfg.isolated_hosts.clone(),
            restrict: cfg.restrict_isolated_hosts_to_isolated_images,
        }),
        // Resource fit is Placement's job since Nova 19; these names stay
        // accepted so upstream configurations load.
        "RamFilter" | "CoreFilter" | "DiskFilter" | "RetryFilter" => Box::new(AllHosts),
        _ => return None,
    })
}

struct AllHosts;
impl HostFilter for AllHosts {
    fn name(&self) -> &'static str {
        "AllHostsFilter"
    }
    fn passes(&self, _: &HostState, _: &RequestSpec) -> bool {
        true
    }
}

/// Enabled and up services only.
struct Compute;
impl HostFilter for Compute {
    fn name(&self) -> &'static str {
        "ComputeFilter"
    }
    fn passes(&self, h: &HostState, _: &RequestSpec) -> bool {
        h.enabled && h.up
    }
}

struct AvailabilityZone;
impl HostFilter for AvailabilityZone {
    fn name(&self) -> &'static str {
        "AvailabilityZoneFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        match &s.availability_zone {
            None => true,
            Some(az) => &h.availability_zone == az,
        }
    }
}

/// Flavor extra specs `capabilities:key` (and unscoped keys) against the host.
struct ComputeCapabilities;
impl HostFilter for ComputeCapabilities {
    fn name(&self) -> &'static str {
        "ComputeCapabilitiesFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        for (k, want) in &s.flavor_extra_specs {
            let key = match k.split_once(':') {
                Some(("capabilities", rest)) => rest,
                Some(_) => continue,
                None => k.as_str(),
            };
            let have = match key {
                "hypervisor_type" => h.hypervisor_type.clone(),
                "cpu_info:arch" | "arch" => h.arch.clone(),
                "vcpus_total" => h.vcpus_total.to_string(),
                "memory_mb" => h.ram_total_mb.to_string(),
                _ => continue,
            };
            if !extra_spec_matches(&have, want) {
                return false;
            }
        }
        true
    }
}

/// Nova's extra-spec operators: `s== x`, `<in> x`, `<or> a <or> b`, `>= n`, `<= n`, `== n`, plain equality.
pub fn extra_spec_matches(have: &str, want: &str) -> bool {
    let w = want.trim();
    let num = |s: &str| s.trim().parse::<f64>().ok();
    if let Some(rest) = w.strip_prefix("<or>") {
        return rest.split("<or>").any(|alt| alt.trim() == have);
    }
    let mut it = w.splitn(2, ' ');
    let op = it.next().unwrap_or("");
    let arg = it.next().unwrap_or("").trim();
    match op {
        "s==" => have == arg,
        "s!=" => have != arg,
        "<in>" => have.contains(arg),
        "==" => num(have).zip(num(arg)).is_some_and(|(a, b)| a == b),
        ">=" => num(have).zip(num(arg)).is_some_and(|(a, b)| a >= b),
        "<=" => num(have).zip(num(arg)).is_some_and(|(a, b)| a <= b),
        "!=" => num(have).zip(num(arg)).is_some_and(|(a, b)| a != b),
        _ => have == w,
    }
}

struct ImageProperties;
impl HostFilter for ImageProperties {
    fn name(&self) -> &'static str {
        "ImagePropertiesFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        let p = &s.image_properties;
        if let Some(arch) = p.get("hw_architecture").or_else(|| p.get("architecture"))
            && !arch.is_empty()
            && !h.arch.is_empty()
            && arch != &h.arch
            && !(arch == "amd64" && h.arch == "x86_64")
        {
            return false;
        }
        if let Some(ht) = p.get("img_hv_type").or_else(|| p.get("hypervisor_type"))
            && !ht.is_empty()
            && !ht.eq_ignore_ascii_case(&h.hypervisor_type)
            && !(ht == "qemu" && h.hypervisor_type == "kvm")
        {
            return false;
        }
        true
    }
}

fn group_of<'a>(s: &'a RequestSpec, policies: &[&str]) -> Option<&'a crate::GroupSpec> {
    s.group
        .as_ref()
        .filter(|g| policies.contains(&g.policy.as_str()))
}

struct GroupAffinity;
impl HostFilter for GroupAffinity {
    fn name(&self) -> &'static str {
        "ServerGroupAffinityFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        match group_of(s, &["affinity"]) {
            Some(g) if !g.member_hosts.is_empty() => g.member_hosts.contains(&h.host),
            _ => true,
        }
    }
}

struct GroupAntiAffinity;
impl HostFilter for GroupAntiAffinity {
    fn name(&self) -> &'static str {
        "ServerGroupAntiAffinityFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        match group_of(s, &["anti-affinity"]) {
            Some(g) => {
                let on_host = g.member_hosts.iter().filter(|x| *x == &h.host).count() as u32;
                on_host < g.max_server_per_host.unwrap_or(1)
            }
            None => true,
        }
    }
}

struct SameHost;
impl HostFilter for SameHost {
    fn name(&self) -> &'static str {
        "SameHostFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        s.same_host.is_empty()
            || s.same_host
                .iter()
                .any(|i| s.instance_hosts.get(i) == Some(&h.host))
    }
}

struct DifferentHost;
impl HostFilter for DifferentHost {
    fn name(&self) -> &'static str {
        "DifferentHostFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        !s.different_host
            .iter()
            .any(|i| s.instance_hosts.get(i) == Some(&h.host))
    }
}

struct AggregateExtraSpecs;
impl HostFilter for AggregateExtraSpecs {
    fn name(&self) -> &'static str {
        "AggregateInstanceExtraSpecsFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        for (k, want) in &s.flavor_extra_specs {
            let key = match k.split_once(':') {
                Some(("aggregate_instance_extra_specs", rest)) => rest,
                Some(_) => continue,
                None => k.as_str(),
            };
            let vals = h.aggregate_values(key);
            if vals.is_empty() {
                if k.contains(':') {
                    return false;
                }
                continue;
            }
            if !vals.iter().any(|v| extra_spec_matches(v, want)) {
                return false;
            }
        }
        true
    }
}

struct AggregateTenancy;
impl HostFilter for AggregateTenancy {
    fn name(&self) -> &'static str {
        "AggregateMultiTenancyIsolation"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        let allowed: Vec<String> = h
            .aggregates
            .values()
            .flat_map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("filter_tenant_id"))
                    .flat_map(|(_, v)| v.split(',').map(|x| x.trim().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        allowed.is_empty() || allowed.contains(&s.project_id)
    }
}

struct AggregateImageIsolation;
impl HostFilter for AggregateImageIsolation {
    fn name(&self) -> &'static str {
        "AggregateImagePropertiesIsolation"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        for (k, v) in &s.image_properties {
            let vals = h.aggregate_values(k);
            if !vals.is_empty() && !vals.contains(v) {
                return false;
            }
        }
        true
    }
}

struct NumInstances(u32);
impl HostFilter for NumInstances {
    fn name(&self) -> &'static str {
        "NumInstancesFilter"
    }
    fn passes(&self, h: &HostState, _: &RequestSpec) -> bool {
        (h.instances.len() as u32) < self.0
    }
}

struct AggregateNumInstances(u32);
impl HostFilter for AggregateNumInstances {
    fn name(&self) -> &'static str {
        "AggregateNumInstancesFilter"
    }
    fn passes(&self, h: &HostState, _: &RequestSpec) -> bool {
        let max = h
            .aggregate_values("max_instances_per_host")
            .iter()
            .filter_map(|v| v.parse::<u32>().ok())
            .min()
            .unwrap_or(self.0);
        (h.instances.len() as u32) < max
    }
}

struct IoOps(u32);
impl HostFilter for IoOps {
    fn name(&self) -> &'static str {
        "IoOpsFilter"
    }
    fn passes(&self, h: &HostState, _: &RequestSpec) -> bool {
        h.num_io_ops < self.0
    }
}

struct IsolatedHosts {
    images: Vec<String>,
    hosts: Vec<String>,
    restrict: bool,
}
impl HostFilter for IsolatedHosts {
    fn name(&self) -> &'static str {
        "IsolatedHostsFilter"
    }
    fn passes(&self, h: &HostState, s: &RequestSpec) -> bool {
        let image = s.image_properties.get("id").cloned().unwrap_or_default();
        let isolated_image = self.images.contains(&image);
        let isolated_host = self.hosts.contains(&h.host);
        if self.restrict {
            isolated_image == isolated_host
        } else {
            !isolated_image || isolated_host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn operators() {
        assert!(extra_spec_matches("8", ">= 4"));
        assert!(!extra_spec_matches("2", ">= 4"));
        assert!(extra_spec_matches("fake", "s== fake"));
        assert!(extra_spec_matches("kvm", "<or> qemu <or> kvm"));
        assert!(extra_spec_matches("x86_64", "x86_64"));
    }
}
