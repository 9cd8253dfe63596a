//! ferrostack configuration: one TOML file, every key overridable by an
//! environment variable `FERROSTACK__<SECTION>__<KEY>` (top-level keys:
//! `FERROSTACK__<KEY>`). Values in the environment are read as TOML when they
//! parse (numbers, booleans, arrays) and as strings otherwise.
//! Every key is documented in `docs/configuration.md`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "FERROSTACK__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the SQLite database, Fernet keys, clouds.yaml, openrc.
    pub data_dir: Option<PathBuf>,
    pub api: ApiConfig,
    pub database: DatabaseConfig,
    pub identity: IdentityConfig,
    pub token: TokenConfig,
    pub fernet_tokens: FernetConfig,
    pub policy: PolicyConfig,
    pub security_compliance: SecurityComplianceConfig,
    pub image: ImageConfig,
    pub compute: ComputeConfig,
    pub filter_scheduler: FilterSchedulerConfig,
    pub network: NetworkConfig,
    pub volume: VolumeConfig,
    pub bus: BusConfig,
    pub log: LogConfig,
    pub vnc: VncConfig,
    pub console: ConsoleConfig,
    pub privsep: PrivsepConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the one HTTP listener.
    pub listen: String,
    /// Base URL advertised in the catalog and version documents; default
    /// `http://<listen>` (with 127.0.0.1 when listening on 0.0.0.0).
    pub public_url: Option<String>,
    /// Largest request body accepted by non-upload APIs, in bytes.
    pub max_request_body_size: usize,
    /// Test instrumentation: append the key shape (keys, never values) of
    /// every JSON response to this file, for `scripts/compat.py samples`.
    pub record_responses: Option<std::path::PathBuf>,
}
impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8000".into(),
            public_url: None,
            max_request_body_size: 114_688,
            record_responses: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH`, `postgres://...` or `mysql://...`; default the SQLite
    /// file `<data_dir>/ferrostack.db`.
    pub url: Option<String>,
    pub max_connections: u32,
}
impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Admin password used by bootstrap; if unset one is generated once and
    /// stored in `<data_dir>/admin-password` (mode 0600).
    pub admin_password: Option<String>,
    pub region: String,
    /// bcrypt cost, as Keystone's `[identity] password_hash_rounds` (default 12).
    pub password_hash_rounds: u32,
    /// Largest password accepted (Keystone's `max_password_length`).
    pub max_password_length: usize,
    /// Also write the `ferrostack` cloud into ~/.config/openstack/clouds.yaml
    /// (only when that file is absent or was written by ferrostack). Unset:
    /// yes with the default data directory, no with an explicit one.
    pub write_user_clouds_yaml: Option<bool>,
}
impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            admin_password: None,
            region: "RegionOne".into(),
            password_hash_rounds: 12,
            max_password_length: 4096,
            write_user_clouds_yaml: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Token lifetime in seconds (Keystone's `[token] expiration`).
    pub expiration: u64,
    /// How long validated-token data is trusted before identity data is read
    /// again, in seconds, when the write happened in another process.
    pub cache_time: u64,
    /// Seconds after expiry during which `allow_expired=1` still validates.
    pub allow_expired_window: u64,
}
impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            expiration: 3600,
            cache_time: 5,
            allow_expired_window: 172_800,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FernetConfig {
    /// Key repository; default `<data_dir>/fernet-keys`.
    pub key_repository: Option<PathBuf>,
    /// Keys kept by `ferrostack fernet rotate` (Keystone's default 3).
    pub max_active_keys: usize,
}
impl Default for FernetConfig {
    fn default() -> Self {
        FernetConfig {
            key_repository: None,
            max_active_keys: 3,
        }
    }
}

/// The Image service (Glance's option names where they exist).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// `file` (default), `s3` (an S3-compatible object store) or `memory`.
    pub store: String,
    /// Directory of the `file` store; default `<data_dir>/images`.
    pub filesystem_store_datadir: Option<PathBuf>,
    /// The `s3` store (Glance's option names): endpoint URL
    /// (`http://rgw.example:8080`), bucket (it must exist), credentials.
    pub s3_store_host: Option<String>,
    pub s3_store_bucket: Option<String>,
    pub s3_store_access_key: Option<String>,
    pub s3_store_secret_key: Option<String>,
    /// Signing region; `us-east-1` suits most S3-compatible servers.
    pub s3_store_region: String,
    /// Key prefix inside the bucket; empty: keys at the bucket's top.
    pub s3_store_prefix: String,
    /// Refuse data whose format does not match the declared `disk_format`
    /// (Glance's `[image_format] require_image_format_match`). Unsafe images
    /// (qcow2 backing/data files, VMDK external extents) are refused regardless.
    pub require_image_format_match: bool,
    /// Interoperable import methods offered (`glance-direct`, `copy-image`).
    pub import_methods: Vec<String>,
    /// Largest image accepted, bytes (Glance's `image_size_cap`, 1 TiB).
    pub image_size_cap: u64,
    /// Images per project; -1 = unlimited.
    pub image_count_quota: i64,
    /// Total image bytes per project; -1 = unlimited.
    pub image_size_quota: i64,
    /// Multiple stores (Glance's `enabled_backends`), by store id:
    /// `[image.backends.fast] store = "file"`. Empty: one store, named after
    /// its type (`file`), built from the `store`/`filesystem_store_datadir`/
    /// `s3_*` settings above.
    pub backends: std::collections::BTreeMap<String, ImageBackend>,
    /// The store uploads, staging and imports go to when the request names
    /// none; empty: the first backend id in sort order.
    pub default_backend: String,
    /// Which URIs `web-download` may fetch (Glance's `[import_filtering_opts]`).
    pub import_filtering: ImportFiltering,
}

/// Glance's `[import_filtering_opts]`: an allow-list wins over its deny-list.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportFiltering {
    pub allowed_schemes: Vec<String>,
    pub disallowed_schemes: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    pub allowed_ports: Vec<u16>,
    pub disallowed_ports: Vec<u16>,
}
impl Default for ImportFiltering {
    fn default() -> Self {
        ImportFiltering {
            allowed_schemes: vec!["http".into(), "https".into()],
            disallowed_schemes: vec![],
            allowed_hosts: vec![],
            disallowed_hosts: vec![],
            allowed_ports: vec![80, 443],
            disallowed_ports: vec![],
        }
    }
}

impl ImportFiltering {
    /// Whether `web-download` may fetch from `scheme://host:port` (Glance's
    /// `validate_import_uri`). The caller parses the URI with the same parser
    /// its HTTP client uses and passes the normalised parts (host lowercase,
    /// no brackets or trailing dot; `port` only when the URI names one).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if host.is_empty() {
            return false;
        }
        let listed = |allow: &[String], deny: &[String], v: &str| {
            if !allow.is_empty() {
                allow.iter().any(|a| a.eq_ignore_ascii_case(v))
            } else {
                !deny.iter().any(|d| d.eq_ignore_ascii_case(v))
            }
        };
        if !listed(&self.allowed_schemes, &self.disallowed_schemes, scheme)
            || !listed(&self.allowed_hosts, &self.disallowed_hosts, host)
        {
            return false;
        }
        match port {
            Some(p) if !self.allowed_ports.is_empty() => self.allowed_ports.contains(&p),
            Some(p) => !self.disallowed_ports.contains(&p),
            None => true,
        }
    }
}

/// One image store of several (Glance's per-backend section).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageBackend {
    /// `file`, `s3` or `memory`.
    pub store: String,
    /// Shown by `GET /v2/info/stores`.
    pub description: Option<String>,
    /// Directory of a `file` store; default `<data_dir>/image-stores/<id>`.
    pub filesystem_store_datadir: Option<PathBuf>,
    pub s3_store_host: Option<String>,
    pub s3_store_bucket: Option<String>,
    pub s3_store_access_key: Option<String>,
    pub s3_store_secret_key: Option<String>,
    pub s3_store_region: String,
    pub s3_store_prefix: String,
    /// Glance's store weight (shown in `/v2/info/stores/detail`).
    pub weight: i64,
}
impl Default for ImageBackend {
    fn default() -> Self {
        let legacy = ImageConfig::default();
        ImageBackend {
            store: legacy.store,
            description: None,
            filesystem_store_datadir: None,
            s3_store_host: None,
            s3_store_bucket: None,
            s3_store_access_key: None,
            s3_store_secret_key: None,
            s3_store_region: legacy.s3_store_region,
            s3_store_prefix: legacy.s3_store_prefix,
            weight: 0,
        }
    }
}

impl ImageConfig {
    /// The configured stores by id, in id order: `backends`, or the one
    /// store the top-level settings describe (id = its type).
    pub fn stores(&self, data_dir: &Path) -> Vec<(String, ImageBackend)> {
        if !self.backends.is_empty() {
            return self
                .backends
                .iter()
                .map(|(id, b)| {
                    let mut b = b.clone();
                    if b.filesystem_store_datadir.is_none() {
                        b.filesystem_store_datadir = Some(data_dir.join("image-stores").join(id));
                    }
                    (id.clone(), b)
                })
                .collect();
        }
        let one = ImageBackend {
            store: self.store.clone(),
            description: None,
            filesystem_store_datadir: Some(
                self.filesystem_store_datadir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("images")),
            ),
            s3_store_host: self.s3_store_host.clone(),
            s3_store_bucket: self.s3_store_bucket.clone(),
            s3_store_access_key: self.s3_store_access_key.clone(),
            s3_store_secret_key: self.s3_store_secret_key.clone(),
            s3_store_region: self.s3_store_region.clone(),
            s3_store_prefix: self.s3_store_prefix.clone(),
            weight: 0,
        };
        vec![(self.store.clone(), one)]
    }
}
impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            store: "file".into(),
            filesystem_store_datadir: None,
            s3_store_host: None,
            s3_store_bucket: None,
            s3_store_access_key: None,
            s3_store_secret_key: None,
            s3_store_region: "us-east-1".into(),
            s3_store_prefix: String::new(),
            require_image_format_match: true,
            import_methods: vec!["glance-direct".into(), "copy-image".into()],
            image_size_cap: 1 << 40,
            image_count_quota: -1,
            image_size_quota: -1,
            backends: Default::default(),
            default_backend: String::new(),
            import_filtering: ImportFiltering::default(),
        }
    }
}

/// The message bus (DESIGN.md §3).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Empty: the in-process bus (all-in-one). `amqp://user:pass@host:5672/%2f`:
    /// RabbitMQ, for roles on separate processes or hosts (oslo's `transport_url`).
    pub url: Option<String>,
}

/// The Compute service and its agents (Nova's option names where they exist).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Hypervisor driver of this host's agent: `qemu` (one QEMU process
    /// per guest), `fake` (guests in memory, for API tests and scale
    /// simulations), or `auto` (the default): `qemu` where
    /// `qemu-system-x86_64` is installed, else `fake`, said at start-up
    /// and shown as hypervisor type `fake`.
    pub compute_driver: String,
    /// The QEMU driver's accelerator (Nova's `[libvirt] virt_type`): `kvm`,
    /// `qemu` (TCG emulation), or `auto`: KVM when a probe guest is seen to
    /// run under it (probed once per kernel and QEMU, with a timeout), else TCG.
    pub virt_type: String,
    /// Where the QEMU driver keeps guests' disks and its image cache
    /// (`_base/`), Nova's `instances_path`. Guests' QEMU processes run
    /// under uids of their own, so every directory above it must be
    /// traversable by all users. Default: `/var/lib/ferrostack/instances`
    /// when run as root, else `<data_dir>/instances`.
    pub instances_path: Option<String>,
    /// The uids (and groups of the same numbers) guests' QEMU processes run
    /// under, one per guest: `guest_uid_base` .. `+ guest_uid_count - 1`.
    /// The default range is one Linux distributions and systemd leave unused.
    pub guest_uid_base: u32,
    pub guest_uid_count: u32,
    /// The cgroup each guest's cgroup (`instance-<uuid>`) is created under,
    /// relative to the host's hierarchy (v1 or v2) at `cgroup_root`.
    pub cgroup_parent: String,
    pub cgroup_root: String,
    /// QEMU's memory beside the guest's RAM, in MiB, added to each guest's
    /// cgroup memory limit and reserved in Placement per guest; 0: the
    /// driver's estimate (TCG: its 128 MiB translation cache + 80 MiB; KVM: 80 MiB).
    pub guest_memory_overhead_mb: u64,
    /// After the host rebooted, start the guests that ran before (Nova's
    /// `resume_guests_state_on_host_boot`); otherwise they are SHUTOFF.
    pub resume_guests_state_on_host_boot: bool,
    /// What to do with a guest still running on a host after its instance
    /// was deleted (Nova's `running_deleted_instance_action`): `reap`
    /// (destroy it), `shutdown`, `log` or `noop`...
    pub running_deleted_instance_action: String,
    /// ...once deleted this many seconds (`running_deleted_instance_timeout`).
    pub running_deleted_instance_timeout: u64,
    /// Seconds a guest gets to power off cleanly after an ACPI power-button
    /// press before it is stopped hard (Nova's `shutdown_timeout`; an image's
    /// `os_shutdown_timeout` overrides it).
    pub shutdown_timeout: u64,
    /// Seconds a new guest waits, paused, for `network-vif-plugged` of its
    /// ports before it runs (Nova's `vif_plugging_timeout`; 0: no wait).
    pub vif_plugging_timeout: u64,
    /// Whether a guest whose ports are not wired in time fails to build
    /// (Nova's `vif_plugging_is_fatal`); otherwise it runs anyway.
    pub vif_plugging_is_fatal: bool,
    /// Every guest gets a config drive (Nova's `force_config_drive`).
    pub force_config_drive: bool,
    /// Nova's `[image_cache] remove_unused_base_images`: cached base
    /// images no guest uses are removed...
    pub remove_unused_base_images: bool,
    /// ...once untouched for this many seconds
    /// (`remove_unused_original_minimum_age_seconds`)...
    pub remove_unused_original_minimum_age_seconds: u64,
    /// ...checked every this many seconds (`[image_cache] manager_interval`).
    pub image_cache_manager_interval: u64,
    /// This host's name (Nova's `host`); default: the machine's hostname.
    pub host: Option<String>,
    /// How many fake hypervisor hosts this process runs (`host`, `host-2`, ...),
    /// so scheduling across hosts can be exercised on one machine; 0: none.
    pub fake_hosts: u32,
    /// What each fake host reports (below the default project quota, so a
    /// flavor too big for every host is refused by scheduling, not by quota).
    pub fake_vcpus: u32,
    pub fake_memory_mb: u64,
    pub fake_disk_gb: u64,
    /// Milliseconds each fake hypervisor operation takes (0: instant), to
    /// model a real hypervisor's latency in tests and benchmarks.
    pub fake_delay_ms: u64,
    /// Allocation ratios reported to Placement (Nova's `initial_*_allocation_ratio`).
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub reserved_host_memory_mb: u64,
    pub reserved_host_disk_mb: u64,
    /// Build attempts before a server goes to ERROR (Nova's `[scheduler] max_attempts`).
    pub max_attempts: u32,
    /// Seconds between agent heartbeats (`report_interval`).
    pub report_interval: u64,
    /// A host not heard from for this long is `down` (`service_down_time`).
    pub service_down_time: u64,
    /// Availability zone of hosts in no zoned aggregate.
    pub default_availability_zone: String,
    /// Domain appended to a guest's hostname in its metadata and config
    /// drive (Nova's `[api] dhcp_domain`; empty: none).
    pub dhcp_domain: String,
    /// Seconds a controller waits for an agent's answer to a query
    /// (`rpc_response_timeout`).
    pub rpc_response_timeout: u64,
    /// Seconds it waits for an action that may take long: a boot that
    /// downloads an image, a snapshot of a big disk, a stop that waits
    /// `shutdown_timeout` (Nova's `long_rpc_timeout`).
    pub long_rpc_timeout: u64,
    /// Flavors created at first start (m1.tiny ... m1.xlarge).
    pub bootstrap_flavors: bool,
    /// Test hook: `<saga step>:fail` or `<saga step>:hang`, comma-separated
    /// (steps: schedule, network, block_devices, spawn, finish; and delete). Never set in production.
    pub fault_injection: Option<String>,
}
impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            compute_driver: "auto".into(),
            virt_type: "auto".into(),
            instances_path: None,
            guest_uid_base: 1_879_048_192,
            guest_uid_count: 65_536,
            cgroup_parent: "ferrostack".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            guest_memory_overhead_mb: 0,
            resume_guests_state_on_host_boot: false,
            running_deleted_instance_action: "reap".into(),
            running_deleted_instance_timeout: 0,
            shutdown_timeout: 60,
            vif_plugging_timeout: 300,
            vif_plugging_is_fatal: true,
            force_config_drive: false,
            remove_unused_base_images: true,
            remove_unused_original_minimum_age_seconds: 86_400,
            image_cache_manager_interval: 2400,
            host: None,
            fake_hosts: 2,
            fake_vcpus: 4,
            fake_memory_mb: 32768,
            fake_disk_gb: 500,
            fake_delay_ms: 0,
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            reserved_host_memory_mb: 512,
            reserved_host_disk_mb: 0,
            max_attempts: 3,
            report_interval: 10,
            service_down_time: 60,
            default_availability_zone: "nova".into(),
            dhcp_domain: "novalocal".into(),
            rpc_response_timeout: 60,
            long_rpc_timeout: 1800,
            bootstrap_flavors: true,
            fault_injection: None,
        }
    }
}

impl ComputeConfig {
    /// This host's name.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".into())
        })
    }
    /// Names of the fake hosts this process runs.
    pub fn fake_host_names(&self) -> Vec<String> {
        let h = self.host_name();
        (1..=self.fake_hosts)
            .map(|i| {
                if i == 1 {
                    h.clone()
                } else {
                    format!("{h}-{i}")
                }
            })
            .collect()
    }
}

/// The Networking service (Neutron's and ML2's option names where they exist).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Host data-plane driver of the network agent: `fake` (ports are up
    /// when admin-up, nothing is built), `linuxbridge` (this host's
    /// network agent builds bridges, guests' taps and DHCP in the kernel),
    /// or `auto`: `linuxbridge` where guests are real (QEMU), ferrostack
    /// runs as root and dnsmasq and nft are installed, else `fake`.
    pub host_net_driver: String,
    /// The network namespace holding this host's bridges and taps
    /// (`linuxbridge`; none: the root namespace). Tests run each host in
    /// a namespace of their own.
    pub host_namespace: Option<String>,
    /// This host's tunnel endpoint (the Linux bridge agent's `[vxlan]
    /// local_ip`): with it, a vxlan network's bridge here carries a VXLAN
    /// device (`vxlan-<vni>`, UDP 4789) from this address to the other
    /// hosts with ports on the network; without it, vxlan networks stay on
    /// this host.
    pub local_ip: Option<String>,
    /// The host's interface that external networks whose address this host
    /// holds (`public`) may reach the world through: traffic from their
    /// bridges is forwarded out of it, masqueraded as the host's address,
    /// and answers come back. Unset (the default): nothing is routed
    /// between those bridges and any other interface; guests reach only
    /// the host. Never set it in tests.
    pub external_uplink: Option<String>,
    /// Type of project networks (ML2 `tenant_network_types`): `vxlan` or `vlan`.
    pub tenant_network_types: Vec<String>,
    /// VXLAN VNIs handed to project networks, `min:max` (ML2 `vni_ranges`).
    pub vni_ranges: Vec<String>,
    /// `physnet:min:max` VLAN ranges, or `physnet` for provider-only (ML2 `network_vlan_ranges`).
    pub network_vlan_ranges: Vec<String>,
    /// Physical networks that may carry flat networks (`*`: any).
    pub flat_networks: Vec<String>,
    /// `physnet:interface` (the Linux bridge agent's
    /// `physical_interface_mappings`): a flat network on that physical
    /// network has the host's interface on its bridge.
    pub physical_interface_mappings: Vec<String>,
    /// MTU of the underlying fabric; vxlan networks get 50 bytes less.
    pub global_physnet_mtu: u32,
    /// Creates the external network `public` (flat on physnet `public`) at first start.
    pub bootstrap_public_network: bool,
    pub public_network_cidr: String,
    /// The host holds each external network's subnet gateway address on
    /// that network's bridge (DevStack's `br-ex`), so that floating IPs
    /// are reachable from the host itself; off where a real router on the
    /// provider network has that address. Nothing is forwarded between it
    /// and the host's other interfaces.
    pub external_host_address: bool,
    /// First three bytes of generated MAC addresses.
    pub base_mac: String,
    pub max_dns_nameservers: usize,
    pub max_subnet_host_routes: usize,
    pub max_fixed_ips_per_port: usize,
    pub max_routes: usize,
    /// Default per-project quotas (-1: unlimited).
    pub quota_network: i64,
    pub quota_subnet: i64,
    pub quota_port: i64,
    pub quota_router: i64,
    pub quota_floatingip: i64,
    pub quota_security_group: i64,
    pub quota_security_group_rule: i64,
    pub quota_rbac_policy: i64,
    pub quota_subnetpool: i64,
    /// Seconds between network agent heartbeats and after which an agent is dead.
    pub report_interval: u64,
    pub agent_down_time: u64,
    /// Availability zone of this host's network agents.
    pub default_availability_zone: String,
}
impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            host_net_driver: "auto".into(),
            host_namespace: None,
            local_ip: None,
            external_uplink: None,
            tenant_network_types: vec!["vxlan".into()],
            vni_ranges: vec!["1:1000".into()],
            network_vlan_ranges: vec!["physnet1:1000:2999".into()],
            flat_networks: vec!["*".into()],
            physical_interface_mappings: Vec::new(),
            global_physnet_mtu: 1500,
            bootstrap_public_network: true,
            public_network_cidr: "172.24.4.0/24".into(),
            external_host_address: true,
            base_mac: "fa:16:3e".into(),
            max_dns_nameservers: 5,
            max_subnet_host_routes: 20,
            max_fixed_ips_per_port: 5,
            max_routes: 30,
            quota_network: 100,
            quota_subnet: 100,
            quota_port: 500,
            quota_router: 10,
            quota_floatingip: 50,
            quota_security_group: 10,
            quota_security_group_rule: 100,
            quota_rbac_policy: 10,
            quota_subnetpool: -1,
            report_interval: 30,
            agent_down_time: 75,
            default_availability_zone: "nova".into(),
        }
    }
}

/// The Block Storage service (Cinder's option names where they exist).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeConfig {
    /// `file` (a qcow2 or raw file per volume under `volumes_dir`) or `fake`.
    pub volume_driver: String,
    /// Where the file backend keeps volumes (default:
    /// `/var/lib/ferrostack/volumes` as root, else `<data_dir>/volumes`).
    pub volumes_dir: Option<PathBuf>,
    /// File format of the file backend: `qcow2` (thin) or `raw`.
    pub volume_format: String,
    /// Capacity the backend reports, GiB (0: the filesystem's size).
    pub capacity_gb: u64,
    /// Name of the volume type used when a request names none.
    pub default_volume_type: String,
    pub default_availability_zone: String,
    /// Default per-project quotas (-1: unlimited).
    pub quota_volumes: i64,
    pub quota_snapshots: i64,
    pub quota_gigabytes: i64,
    pub quota_backups: i64,
    pub quota_backup_gigabytes: i64,
    pub quota_groups: i64,
    pub per_volume_size_limit: i64,
    /// Test hook: `<saga step>:fail` or `<saga step>:hang`, comma-separated. Never set in production.
    pub fault_injection: Option<String>,
    /// The host whose volume agent (`serve --roles volume`) holds this
    /// cloud's volumes (default: this host, as in all-in-one).
    pub volume_host: Option<String>,
    /// How the file backend opens a volume to another host: `none` (the
    /// file's path: a file system the hosts share), `nbd` (NBD with TLS
    /// and a pre-shared key per attachment) or `iscsi` (a `tgt` target
    /// with a CHAP account per attachment; raw volumes only).
    pub remote_transport: String,
    /// The address exports listen on (Cinder's `target_ip_address`;
    /// default `network.local_ip`, else 127.0.0.1).
    pub target_ip: Option<String>,
    /// The iSCSI portal's port (Cinder's `target_port`).
    pub target_port: u16,
}
impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            volume_driver: "file".into(),
            volumes_dir: None,
            volume_format: "qcow2".into(),
            capacity_gb: 0,
            default_volume_type: "__DEFAULT__".into(),
            default_availability_zone: "nova".into(),
            quota_volumes: 10,
            quota_snapshots: 10,
            quota_gigabytes: 1000,
            quota_backups: 10,
            quota_backup_gigabytes: 1000,
            quota_groups: 10,
            per_volume_size_limit: -1,
            fault_injection: None,
            volume_host: None,
            remote_transport: "none".into(),
            target_ip: None,
            target_port: 3260,
        }
    }
}

/// Nova's `[filter_scheduler]` options.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSchedulerConfig {
    pub enabled_filters: Vec<String>,
    pub ram_weight_multiplier: f64,
    pub cpu_weight_multiplier: f64,
    pub disk_weight_multiplier: f64,
    pub io_ops_weight_multiplier: f64,
    pub num_instances_weight_multiplier: f64,
    pub soft_affinity_weight_multiplier: f64,
    pub soft_anti_affinity_weight_multiplier: f64,
    pub build_failure_weight_multiplier: f64,
    pub max_instances_per_host: u32,
    pub max_io_ops_per_host: u32,
    pub isolated_images: Vec<String>,
    pub isolated_hosts: Vec<String>,
    pub restrict_isolated_hosts_to_isolated_images: bool,
    /// Candidates returned by Placement per request (`[scheduler] max_placement_results`).
    pub max_placement_results: usize,
}

impl Default for FilterSchedulerConfig {
    fn default() -> Self {
        FilterSchedulerConfig {
            enabled_filters: [
                "ComputeFilter",
                "AvailabilityZoneFilter",
                "ComputeCapabilitiesFilter",
                "ImagePropertiesFilter",
                "ServerGroupAntiAffinityFilter",
                "ServerGroupAffinityFilter",
                "SameHostFilter",
                "DifferentHostFilter",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ram_weight_multiplier: 1.0,
            cpu_weight_multiplier: 1.0,
            disk_weight_multiplier: 1.0,
            io_ops_weight_multiplier: -1.0,
            num_instances_weight_multiplier: 0.0,
            soft_affinity_weight_multiplier: 1.0,
            soft_anti_affinity_weight_multiplier: 1.0,
            build_failure_weight_multiplier: 1000000.0,
            max_instances_per_host: 50,
            max_io_ops_per_host: 8,
            isolated_images: vec![],
            isolated_hosts: vec![],
            restrict_isolated_hosts_to_isolated_images: true,
            max_placement_results: 1000,
        }
    }
}

/// Keystone's `[security_compliance]`; every feature is off by default, as upstream.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityComplianceConfig {
    /// Failed password logins before the account locks; 0 disables lockout.
    pub lockout_failure_attempts: u32,
    /// Seconds an account stays locked.
    pub lockout_duration: u64,
    /// A new password must differ from this many most recent ones (0 disables).
    pub unique_last_password_count: u32,
    /// Days a password must be kept before its owner may change it again.
    pub minimum_password_age: u32,
    /// Days until a newly set password expires; 0 means never.
    pub password_expires_days: u32,
    /// Passwords set by an administrator must be changed by the user first.
    pub change_password_upon_first_use: bool,
}
impl Default for SecurityComplianceConfig {
    fn default() -> Self {
        SecurityComplianceConfig {
            lockout_failure_attempts: 0,
            lockout_duration: 1800,
            unique_last_password_count: 0,
            minimum_password_age: 0,
            password_expires_days: 0,
            change_password_upon_first_use: false,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// A policy.yaml/json overriding upstream's default rules.
    pub file: Option<PathBuf>,
}

/// The graphical console of QEMU guests (Nova's `[vnc]`): each compute
/// host serves the noVNC client and proxies its websocket to the guests'
/// VNC servers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VncConfig {
    /// Guests get a screen and `console url show` works (QEMU driver).
    pub enabled: bool,
    /// Where this host's console proxy listens (Nova's
    /// `novncproxy_host:novncproxy_port`).
    pub novncproxy_listen: String,
    /// The URL users are given, before `?path=%3Ftoken%3D<token>`; default
    /// `http://<public host>:<port>/vnc_lite.html`, the host of `api.public_url`.
    pub novncproxy_base_url: Option<String>,
    /// The noVNC client served by the proxy (Debian's `novnc` package).
    pub web: String,
}
impl Default for VncConfig {
    fn default() -> Self {
        VncConfig {
            enabled: true,
            novncproxy_listen: "0.0.0.0:6080".into(),
            novncproxy_base_url: None,
            web: "/usr/share/novnc".into(),
        }
    }
}

/// Console tokens and origins (Nova's `[consoleauth] token_ttl` and
/// `[console] allowed_origins`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Seconds a console URL stays usable; each one opens one connection.
    pub token_ttl: u64,
    /// Host names a browser page may open consoles from, besides the
    /// proxy's own (for a dashboard served under another name).
    pub allowed_origins: Vec<String>,
}
impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            token_ttl: 600,
            allowed_origins: Vec::new(),
        }
    }
}

/// Privilege separation (as oslo.privsep for Nova and Neutron): started as
/// root, `ferrostack serve` keeps a small privileged helper and runs
/// everything else (the HTTP APIs, the agents, the console proxy) as an
/// unprivileged system user, which asks the helper for the few host
/// changes that need root through a narrow, typed command set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivsepConfig {
    /// Separate privileges when started as root.
    pub enabled: bool,
    /// The system user the service runs as (created, with its group, if
    /// missing).
    pub user: String,
    /// Where the helper's socket lives (root-owned, reachable only by the
    /// service's group).
    pub socket_dir: PathBuf,
}
impl Default for PrivsepConfig {
    fn default() -> Self {
        PrivsepConfig {
            enabled: true,
            user: "ferrostack".into(),
            socket_dir: PathBuf::from("/run/ferrostack"),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `ferro_identity=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The hypervisor drivers this build has (`compute.compute_driver`).
pub const COMPUTE_DRIVERS: &[&str] = &["auto", "qemu", "fake"];
/// The QEMU driver's accelerators (`compute.virt_type`).
pub const VIRT_TYPES: &[&str] = &["kvm", "qemu", "auto"];
/// The host network drivers this build has (`network.host_net_driver`).
pub const HOST_NET_DRIVERS: &[&str] = &["auto", "fake", "linuxbridge"];
/// The volume backends this build has (`volume.volume_driver`).
pub const VOLUME_DRIVERS: &[&str] = &["file", "fake"];
/// The image store types this build has (`image.store`, `image.backends.*.store`).
pub const IMAGE_STORES: &[&str] = &["file", "s3", "memory"];

impl Config {
    /// Loads `file` (if given) and applies `FERROSTACK__*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Invalid(format!("bad variable name {key}")));
            }
            set_path(&mut table, &path, parse_env_value(&value))
                .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
        }
        let cfg = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses values no code accepts: every option that names a driver or
    /// one of a fixed set is checked here, at start-up, with the key and
    /// the accepted values in the message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let one_of = |key: &str, value: &str, accepted: &[&str]| {
            if accepted.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{key} = {value:?} is not accepted; use one of: {}",
                    accepted.join(", ")
                )))
            }
        };
        one_of(
            "compute.compute_driver",
            &self.compute.compute_driver,
            COMPUTE_DRIVERS,
        )?;
        one_of("compute.virt_type", &self.compute.virt_type, VIRT_TYPES)?;
        one_of(
            "compute.running_deleted_instance_action",
            &self.compute.running_deleted_instance_action,
            &["reap", "shutdown", "log", "noop"],
        )?;
        one_of(
            "network.host_net_driver",
            &self.network.host_net_driver,
            HOST_NET_DRIVERS,
        )?;
        one_of(
            "volume.volume_driver",
            &self.volume.volume_driver,
            VOLUME_DRIVERS,
        )?;
        one_of(
            "volume.volume_format",
            &self.volume.volume_format,
            &["qcow2", "raw"],
        )?;
        one_of(
            "volume.remote_transport",
            &self.volume.remote_transport,
            &["none", "nbd", "iscsi"],
        )?;
        if self.volume.remote_transport == "iscsi" && self.volume.volume_format != "raw" {
            return Err(ConfigError::Invalid(format!(
                "volume.remote_transport = iscsi needs volume.volume_format = raw \
                 (a target serves a volume's file as a disk of fixed size), not {}",
                self.volume.volume_format
            )));
        }
        one_of("image.store", &self.image.store, IMAGE_STORES)?;
        for (id, b) in &self.image.backends {
            one_of(
                &format!("image.backends.{id}.store"),
                &b.store,
                IMAGE_STORES,
            )?;
        }
        one_of("log.format", &self.log.format, &["text", "json"])?;
        Ok(())
    }

    /// Whether bootstrap also writes ~/.config/openstack/clouds.yaml.
    pub fn writes_user_clouds_yaml(&self) -> bool {
        self.identity
            .write_user_clouds_yaml
            .unwrap_or(self.data_dir.is_none())
    }

    /// Where the QEMU driver keeps guests (`compute.instances_path`).
    pub fn instances_path(&self) -> PathBuf {
        match &self.compute.instances_path {
            Some(p) => PathBuf::from(p),
            None if running_as_root() => PathBuf::from("/var/lib/ferrostack/instances"),
            None => self.data_dir().join("instances"),
        }
    }

    /// Where the file volume backend keeps volumes (`volume.volumes_dir`):
    /// `/var/lib/ferrostack/volumes` when run as root (guests' QEMU, under
    /// uids of their own, must reach an attached volume), else
    /// `<data_dir>/volumes`.
    /// The address volume exports listen on (`volume.target_ip`, else
    /// `network.local_ip`, else 127.0.0.1).
    pub fn volume_target_ip(&self) -> String {
        self.volume
            .target_ip
            .clone()
            .or_else(|| self.network.local_ip.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1".into())
    }

    pub fn volumes_dir(&self) -> PathBuf {
        match &self.volume.volumes_dir {
            Some(p) => p.clone(),
            None if running_as_root() => PathBuf::from("/var/lib/ferrostack/volumes"),
            None => self.data_dir().join("volumes"),
        }
    }

    /// `data_dir`; by default `/var/lib/ferrostack` when run as root (the
    /// service's own user must reach it: root's home is closed to it),
    /// else `default_data_dir()`.
    pub fn data_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(d) => d.clone(),
            None if running_as_root() => PathBuf::from(ROOT_DATA_DIR),
            None => default_data_dir(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir().join("ferrostack.db").display()
            )
        })
    }

    pub fn key_repository(&self) -> PathBuf {
        self.fernet_tokens
            .key_repository
            .clone()
            .unwrap_or_else(|| self.data_dir().join("fernet-keys"))
    }

    /// Base URL clients reach the listener at.
    /// The host name (or address) in `public_url()`.
    pub fn public_host(&self) -> String {
        let url = self.public_url();
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.starts_with('[') {
            return authority
                .split_once(']')
                .map_or(authority.to_string(), |(h, _)| format!("{h}]"));
        }
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string()
    }

    pub fn public_url(&self) -> String {
        if let Some(u) = &self.api.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let listen = self
            .api
            .listen
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("http://{listen}")
    }
}

/// The data directory of a ferrostack started as root.
pub const ROOT_DATA_DIR: &str = "/var/lib/ferrostack";

/// Whether this process runs as root (its effective uid, from /proc).
/// Whether `cmd` is an executable file in a directory of `PATH`.
pub fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

impl Config {
    /// `network.host_net_driver` with `auto` decided: `linuxbridge` when
    /// guests are QEMU's (`compute_driver` `qemu`, or `auto` with QEMU
    /// installed), this process is root (it builds the data plane, or
    /// keeps root for the privileged helper that does) and dnsmasq is
    /// installed; `fake` otherwise.
    pub fn host_net_driver(&self) -> &str {
        match self.network.host_net_driver.as_str() {
            "auto" => {
                let qemu = match self.compute.compute_driver.as_str() {
                    "qemu" => true,
                    "auto" => on_path("qemu-system-x86_64"),
                    _ => false,
                };
                if qemu && running_as_root() && on_path("dnsmasq") && on_path("nft") {
                    "linuxbridge"
                } else {
                    "fake"
                }
            }
            other => other,
        }
    }
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|u| u == "0")
        })
        .unwrap_or(false)
}

/// `$XDG_DATA_HOME/ferrostack`, else `~/.local/share/ferrostack`, else `./ferrostack-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ferrostack");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/ferrostack");
    }
    PathBuf::from("ferrostack-data")
}

fn parse_env_value(v: &str) -> toml::Value {
    // A bare TOML value: 12, true, ["a", "b"]; anything else is a string.
    match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_string())),
        Err(_) => toml::Value::String(v.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => {
            let entry = table
                .entry(head.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("{head} is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn public_host_is_the_host_of_the_public_url() {
        let mut c = super::Config::default();
        assert_eq!(c.public_host(), "127.0.0.1");
        c.api.public_url = Some("https://cloud.example.com:8443/".into());
        assert_eq!(c.public_host(), "cloud.example.com");
        c.api.public_url = Some("http://[fd00::1]:8000".into());
        assert_eq!(c.public_host(), "[fd00::1]");
        c.api.public_url = Some("http://10.0.0.5".into());
        assert_eq!(c.public_host(), "10.0.0.5");
    }

    #[test]
    fn unknown_driver_names_are_refused_with_the_key() {
        for (var, key) in [
            (
                "FERROSTACK__COMPUTE__COMPUTE_DRIVER",
                "compute.compute_driver",
            ),
            (
                "FERROSTACK__NETWORK__HOST_NET_DRIVER",
                "network.host_net_driver",
            ),
            ("FERROSTACK__VOLUME__VOLUME_DRIVER", "volume.volume_driver"),
            ("FERROSTACK__VOLUME__VOLUME_FORMAT", "volume.volume_format"),
            ("FERROSTACK__COMPUTE__VIRT_TYPE", "compute.virt_type"),
            ("FERROSTACK__IMAGE__STORE", "image.store"),
        ] {
            let e = Config::load(None, [(var.to_string(), "nonsense".to_string())])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(key) && e.contains("nonsense") && e.contains("use one of"),
                "{e}"
            );
        }
        assert!(Config::load(None, Vec::<(String, String)>::new()).is_ok());
    }

    use super::*;

    #[test]
    fn import_filtering_as_glance() {
        let f = ImportFiltering::default();
        assert!(f.allows("http", "example.com", None));
        assert!(f.allows("https", "example.com", Some(443)));
        assert!(
            !f.allows("http", "example.com", Some(8080)),
            "port not allowed"
        );
        assert!(!f.allows("ftp", "example.com", None), "scheme not allowed");
        assert!(!f.allows("file", "", None), "no host");
        let f = ImportFiltering {
            allowed_hosts: vec!["127.0.0.1".into()],
            allowed_ports: vec![8080],
            ..Default::default()
        };
        assert!(f.allows("http", "127.0.0.1", Some(8080)));
        assert!(!f.allows("http", "10.0.0.1", Some(8080)));
        let f = ImportFiltering {
            allowed_ports: vec![],
            disallowed_ports: vec![22],
            disallowed_hosts: vec!["::1".into()],
            ..Default::default()
        };
        assert!(f.allows("http", "example.com", Some(8080)));
        assert!(!f.allows("http", "example.com", Some(22)));
        assert!(!f.allows("http", "::1", None));
    }

    #[test]
    fn env_overrides_file_and_types() {
        let dir = std::env::temp_dir().join(format!("ferro-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[token]\nexpiration = 100\n[api]\nlisten = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let env = vec![
            (
                "FERROSTACK__TOKEN__EXPIRATION".to_string(),
                "600".to_string(),
            ),
            (
                "FERROSTACK__IDENTITY__ADMIN_PASSWORD".to_string(),
                "s3cret pw".to_string(),
            ),
            ("FERROSTACK_BIN".to_string(), "ignored".to_string()),
        ];
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!(c.token.expiration, 600);
        assert_eq!(c.identity.admin_password.as_deref(), Some("s3cret pw"));
        assert_eq!(c.public_url(), "http://127.0.0.1:9000");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let env = vec![("FERROSTACK__TOKEN__EXPIRY".to_string(), "1".to_string())];
        assert!(Config::load(None, env).is_err());
    }
}
