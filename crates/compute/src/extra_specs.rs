//! Flavor extra-spec validation, as Nova applies it from microversion 2.86
//! to `POST /flavors/{id}/os-extra_specs` and
//! `PUT /flavors/{id}/os-extra_specs/{key}` (each pair is checked before the
//! flavor is looked up, so a bad spec is a 400 even for a missing flavor).
//!
//! Nova keeps a registry of validators, each a key pattern plus a rule for
//! the value. For one key it:
//! 1. takes the validator whose *template* name equals the key (a key spelt
//!    like `hw:numa_cpus.{num}` therefore fails with "expected a name of
//!    format"),
//! 2. else the validator whose pattern matches the whole key,
//! 3. else accepts the key when it has no `:` or when the part before the
//!    first `:` is not a namespace Nova knows, and refuses it otherwise.
//!
//! The registry here is data: `SPECS` for fixed names, plus the patterned
//! families (`hw:numa_cpus.{num}`, `hw:numa_mem.{num}`,
//! `aggregate_instance_extra_specs:{key}`, `capabilities:{cap}{filter}`,
//! `resources{group}:{RC}` and `trait{group}:{TRAIT}`, with the
//! os-resource-classes and os-traits catalogues). Python's regex and `int()`
//! semantics are reproduced by hand: `\d` and `int()` accept every Unicode
//! decimal digit, `\s` and `strip()` Python's whitespace, `.` anything but
//! a newline, and integers are unbounded up to Python's 4300-digit limit.

use std::cmp::Ordering;

/// What a value must look like.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Any string (Nova's `str` type without enum or pattern).
    Any,
    /// `oslo_utils.strutils.bool_from_string(strict=True)`.
    Bool,
    /// Python `int()`, then the optional bounds (min, max); max is checked
    /// first.
    Int(Option<i64>, Option<i64>),
    /// One of the whitespace-separated words, exactly.
    OneOf(&'static str),
    Pattern(Pat),
}

/// The value regexes used in Nova's registry, matched by hand.
#[derive(Clone, Copy, Debug)]
enum Pat {
    /// `hw:cpu_realtime_mask`.
    RealtimeMask,
    /// `hw:cpu_dedicated_mask`, `hw:numa_cpus.{num}`.
    CpuMask,
    /// `hw:mem_page_size`.
    PageSize,
    /// `hw:pmem`.
    Pmem,
    /// `pci_passthrough:alias`.
    PciAlias,
}

impl Pat {
    /// The regex as Nova spells it (it is quoted in the error message).
    fn regex(self) -> &'static str {
        match self {
            Pat::RealtimeMask => r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*",
            Pat::CpuMask => r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*",
            Pat::PageSize => r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)",
            Pat::Pmem => "([a-zA-Z0-9_]+(,)?)+",
            Pat::PciAlias => r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*",
        }
    }

    /// Whether the whole of `s` matches [`Pat::regex`].
    fn matches(self, s: &str) -> bool {
        match self {
            Pat::RealtimeMask | Pat::CpuMask => cpu_mask(s),
            Pat::PageSize => {
                matches!(s, "large" | "small" | "any")
                    || digits1(s).is_some_and(|rest| {
                        let rest = match rest.strip_prefix(['k', 'K', 'M', 'G', 'T']) {
                            Some(r) => r.strip_prefix('i').unwrap_or(r),
                            None => rest,
                        };
                        matches!(rest, "" | "b" | "bit" | "B")
                    })
            }
            Pat::Pmem => {
                !s.is_empty()
                    && !s.starts_with(',')
                    && !s.contains(",,")
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ',')
            }
            Pat::PciAlias => pci_alias(s),
        }
    }
}

const BOOL: Rule = Rule::Bool;
const ANY: Rule = Rule::Any;
const INT: Rule = Rule::Int(None, None);
const UINT: Rule = Rule::Int(Some(0), None);
const POS: Rule = Rule::Int(Some(1), None);
const SHARES: Rule = Rule::OneOf("custom high normal low");
const TRAIT: Rule = Rule::OneOf("required forbidden");

/// Every validator with a fixed name (`hw`, `hw_rng`, `hw_video`, `os`,
/// `pci_passthrough`, `accel`, `vmware`, `quota` and the un-namespaced
/// ones). `capabilities:` names are in [`CAPABILITIES`].
const SPECS: &[(&str, Rule)] = &[
    // hw: realtime, hypervisor id, CPU policy
    ("hw:cpu_realtime", BOOL),
    ("hw:cpu_realtime_mask", Rule::Pattern(Pat::RealtimeMask)),
    ("hw:hide_hypervisor_id", BOOL),
    ("hw:cpu_policy", Rule::OneOf("dedicated shared mixed")),
    (
        "hw:cpu_thread_policy",
        Rule::OneOf("prefer isolate require"),
    ),
    ("hw:emulator_threads_policy", Rule::OneOf("isolate share")),
    ("hw:cpu_dedicated_mask", Rule::Pattern(Pat::CpuMask)),
    // hw: memory and NUMA (`hw:numa_cpus.{num}`/`hw:numa_mem.{num}` in code)
    ("hw:mem_page_size", Rule::Pattern(Pat::PageSize)),
    ("hw:locked_memory", BOOL),
    ("hw:numa_nodes", POS),
    (
        "hw:pci_numa_affinity_policy",
        Rule::OneOf("required preferred legacy socket"),
    ),
    // hw: CPU topology
    ("hw:cpu_sockets", POS),
    ("hw:cpu_cores", POS),
    ("hw:cpu_threads", POS),
    ("hw:cpu_max_sockets", POS),
    ("hw:cpu_max_cores", POS),
    ("hw:cpu_max_threads", POS),
    // hw: feature flags
    ("hw:boot_menu", BOOL),
    ("hw:vif_multiqueue_enabled", BOOL),
    ("hw:mem_encryption", BOOL),
    (
        "hw:mem_encryption_model",
        Rule::OneOf("amd-sev amd-sev-es amd-sev-snp"),
    ),
    ("hw:pmem", Rule::Pattern(Pat::Pmem)),
    ("hw:pmu", BOOL),
    ("hw:serial_port_count", UINT),
    ("hw:tpm_model", Rule::OneOf("tpm-tis tpm-crb")),
    ("hw:tpm_version", Rule::OneOf("1.2 2.0")),
    (
        "hw:tpm_secret_security",
        Rule::OneOf("user host deployment"),
    ),
    (
        "hw:watchdog_action",
        Rule::OneOf("none pause poweroff reset disabled"),
    ),
    ("hw:viommu_model", Rule::OneOf("intel smmuv3 virtio auto")),
    ("hw:virtio_packed_ring", BOOL),
    (
        "hw:sound_model",
        Rule::OneOf("sb16 es1370 pcspk ac97 ich6 ich9 usb virtio"),
    ),
    ("hw:usb_model", Rule::OneOf("none nec-xhci qemu-xhci")),
    ("hw:redirected_usb_ports", Rule::Int(Some(0), Some(15))),
    ("hw:ephemeral_encryption", BOOL),
    (
        "hw:ephemeral_encryption_format",
        Rule::OneOf("plain luks luksv2"),
    ),
    // hw_rng, hw_video
    ("hw_rng:allowed", BOOL),
    ("hw_rng:rate_bytes", UINT),
    ("hw_rng:rate_period", UINT),
    ("hw_video:ram_max_mb", UINT),
    // no namespace (`null` module)
    ("hide_hypervisor_id", BOOL),
    ("group_policy", Rule::OneOf("isolate none")),
    // os, pci_passthrough, accel, vmware
    ("os:secure_boot", Rule::OneOf("disabled required")),
    ("pci_passthrough:alias", Rule::Pattern(Pat::PciAlias)),
    ("accel:device_profile", ANY),
    ("vmware:hw_version", ANY),
    ("vmware:storage_policy", ANY),
    // quota: VMware CPU, memory, disk IO and VIF
    ("quota:cpu_limit", UINT),
    ("quota:cpu_reservation", INT),
    ("quota:cpu_shares_level", SHARES),
    ("quota:cpu_shares_share", UINT),
    ("quota:memory_limit", UINT),
    ("quota:memory_reservation", INT),
    ("quota:memory_shares_level", SHARES),
    ("quota:memory_shares_share", UINT),
    ("quota:disk_io_limit", UINT),
    ("quota:disk_io_reservation", INT),
    ("quota:disk_io_shares_level", SHARES),
    ("quota:disk_io_shares_share", UINT),
    ("quota:vif_limit", UINT),
    ("quota:vif_reservation", INT),
    ("quota:vif_shares_level", SHARES),
    ("quota:vif_shares_share", UINT),
    // quota: libvirt CPU, disk and VIF
    ("quota:cpu_shares", UINT),
    ("quota:cpu_period", UINT),
    ("quota:cpu_quota", INT),
    ("quota:disk_read_bytes_sec", UINT),
    ("quota:disk_read_iops_sec", UINT),
    ("quota:disk_write_bytes_sec", UINT),
    ("quota:disk_write_iops_sec", UINT),
    ("quota:disk_total_bytes_sec", UINT),
    ("quota:disk_total_iops_sec", UINT),
    ("quota:vif_inbound_average", UINT),
    ("quota:vif_inbound_peak", UINT),
    ("quota:vif_inbound_burst", UINT),
    ("quota:vif_outbound_average", UINT),
    ("quota:vif_outbound_peak", UINT),
    ("quota:vif_outbound_burst", UINT),
];

/// `capabilities:{name}`: any value.
const CAPABILITIES: &str = "id uuid service_id host vcpus memory_mb local_gb vcpus_used \
    memory_mb_used local_gb_used hypervisor_type hypervisor_version hypervisor_hostname \
    free_ram_mb free_disk_gb current_workload running_vms disk_available_least host_ip mapped \
    cpu_allocation_ratio ram_allocation_ratio disk_allocation_ratio total_usable_ram_mb \
    total_usable_disk_gb disk_mb_used free_disk_mb vcpus_total num_instances num_io_ops \
    failed_builds aggregates cell_uuid updated";

/// `capabilities:{name}{filter}`, the filter being `(:\w+)*`: any value.
const NESTED_CAPABILITIES: &str = "cpu_info metrics stats numa_topology supported_hv_specs \
    pci_device_pools nodename pci_stats supported_instances limits instances";

/// The namespaces Nova knows besides `resources{group}` and `trait{group}`.
const NAMESPACES: &str = "accel aggregate_instance_extra_specs capabilities hw hw_rng \
    hw_video os pci_passthrough quota vmware";

/// `os_resource_classes.STANDARDS`.
const STANDARD_RESOURCE_CLASSES: &str = "VCPU MEMORY_MB DISK_GB PCI_DEVICE SRIOV_NET_VF \
    NUMA_SOCKET NUMA_CORE NUMA_THREAD NUMA_MEMORY_MB IPV4_ADDRESS VGPU VGPU_DISPLAY_HEAD \
    NET_BW_EGR_KILOBIT_PER_SEC NET_BW_IGR_KILOBIT_PER_SEC PCPU MEM_ENCRYPTION_CONTEXT FPGA PGPU \
    NET_PACKET_RATE_KILOPACKET_PER_SEC NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC \
    NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC";

/// `os_traits.get_traits()`, written `PREFIX_{NAME NAME ...}`: each trait
/// is `PREFIX_NAME`.
const STANDARD_TRAITS: &str = "\
    COMPUTE_{DEVICE_TAGGING NODE TRUSTED_CERTS SAME_HOST_COLD_MIGRATE RESCUE_BFV ACCELERATORS \
    SOCKET_PCI_NUMA_AFFINITY REMOTE_MANAGED_PORTS MEM_BACKING_FILE MANAGED_PCI_DEVICE \
    ADDRESS_SPACE_PASSTHROUGH ADDRESS_SPACE_EMULATED SHARE_LOCAL_FS} COMPUTE_ARCH_{AARCH64 PPC64LE \
    MIPSEL S390X RISCV64 X86_64} COMPUTE_CONFIG_DRIVE_{REGENERATION} COMPUTE_EPHEMERAL_{ENCRYPTION \
    ENCRYPTION_PLAIN ENCRYPTION_LUKS ENCRYPTION_LUKSV2} COMPUTE_FIRMWARE_{BIOS UEFI} \
    COMPUTE_GRAPHICS_{MODEL_BOCHS MODEL_CIRRUS MODEL_GOP MODEL_NONE MODEL_QXL MODEL_VGA \
    MODEL_VIRTIO MODEL_VMVGA MODEL_XEN} COMPUTE_IMAGE_{TYPE_AKI TYPE_AMI TYPE_ARI TYPE_ISO \
    TYPE_QCOW2 TYPE_RAW TYPE_VDI TYPE_VHD TYPE_VHDX TYPE_VMDK TYPE_PLOOP} \
    COMPUTE_MIGRATE_{AUTO_CONVERGE POST_COPY} COMPUTE_NET_{ATTACH_INTERFACE \
    ATTACH_INTERFACE_WITH_TAG VIRTIO_PACKED VIF_MODEL_E1000 VIF_MODEL_E1000E VIF_MODEL_LAN9118 \
    VIF_MODEL_NETFRONT VIF_MODEL_NE2K_PCI VIF_MODEL_PCNET VIF_MODEL_RTL8139 VIF_MODEL_SPAPR_VLAN \
    VIF_MODEL_SRIOV VIF_MODEL_VIRTIO VIF_MODEL_VMXNET VIF_MODEL_VMXNET3 VIF_MODEL_IGB} \
    COMPUTE_SECURITY_{TPM_1_2 TPM_2_0 TPM_TIS TPM_CRB TPM_SECRET_SECURITY_USER \
    TPM_SECRET_SECURITY_HOST TPM_SECRET_SECURITY_DEPLOYMENT UEFI_SECURE_BOOT STATELESS_FIRMWARE} \
    COMPUTE_SOUND_{MODEL_SB16 MODEL_ES1370 MODEL_PCSPK MODEL_AC97 MODEL_ICH6 MODEL_ICH9 MODEL_USB \
    MODEL_VIRTIO} COMPUTE_STATUS_{DISABLED} COMPUTE_STORAGE_{BUS_FDC BUS_IDE BUS_LXC BUS_SATA \
    BUS_SCSI BUS_USB BUS_VIRTIO BUS_UML BUS_XEN VIRTIO_FS} COMPUTE_USB_{MODEL_QEMU_XHCI \
    MODEL_NEC_XHCI} COMPUTE_VIOMMU_{MODEL_INTEL MODEL_SMMUV3 MODEL_VIRTIO MODEL_AUTO} \
    COMPUTE_VOLUME_{ATTACH ATTACH_WITH_TAG EXTEND MULTI_ATTACH} HW_ARCH_{ALPHA ARMV6 ARMV7 ARMV7B \
    AARCH64 CRIS I686 IA64 LM32 M68K MICROBLAZE MICROBLAZEEL MIPS MIPSEL MIPS64 MIPS64EL OPENRISC \
    PARISC PARISC64 PPC PPCLE PPC64 PPC64LE PPCEMB S390 S390X SH4 SH4EB SPARC SPARC64 UNICORE32 \
    X86_64 XTENSA XTENSAEB} HW_CPU_{HYPERTHREADING} HW_CPU_AARCH64_{FP ASIMD EVTSTRM AES PMULL \
    SHA1 SHA2 CRC32 FPHP ASIMDHP ASIMDRDM ATOMICS JSCVT FCMA LRCPC DCPOP SHA3 SM3 SM4 ASIMDDP \
    SHA512 SVE CPUID} HW_CPU_AMD_{SEV} HW_CPU_PPC64LE_{POWER8 POWER9} HW_CPU_X86_{AVX AVX2 CLMUL \
    FMA3 FMA4 F16C MMX SSE SSE2 SSE3 SSSE3 SSE41 SSE42 SSE4A XOP 3DNOW AVX512F AVX512CD AVX512PF \
    AVX512ER AVX512VL AVX512BW AVX512DQ AVX512VNNI AVX512VBMI AVX512IFMA AVX512VBMI2 AVX512BITALG \
    AVX512VAES AVX512GFNI AVX512VPCLMULQDQ AVX512VPOPCNTDQ ABM BMI BMI2 TBM AESNI SHA MPX SGX TSX \
    ASF VMX SVM PDPE1GB STIBP AMXBF16 AMXINT8 AMXTILE} HW_CPU_X86_AMD_{SEV SEV_ES SEV_SNP SVM IBPB \
    NO_SSB SSBD VIRT_SSBD} HW_CPU_X86_INTEL_{MD_CLEAR PCID SPEC_CTRL SSBD VMX TDX} \
    HW_GPU_API_{DIRECTX_V10 DIRECTX_V11 DIRECTX_V12 DIRECT2D DIRECT3D_V6_0 DIRECT3D_V7_0 \
    DIRECT3D_V8_0 DIRECT3D_V8_1 DIRECT3D_V9_0 DIRECT3D_V9_0B DIRECT3D_V9_0C DIRECT3D_V9_0L \
    DIRECT3D_V10_0 DIRECT3D_V10_1 DIRECT3D_V11_0 DIRECT3D_V11_1 DIRECT3D_V11_2 DIRECT3D_V11_3 \
    DIRECT3D_V12_0 VULKAN DXVA OPENCL_V1_0 OPENCL_V1_1 OPENCL_V1_2 OPENCL_V2_0 OPENCL_V2_1 \
    OPENCL_V2_2 OPENGL_V1_1 OPENGL_V1_2 OPENGL_V1_3 OPENGL_V1_4 OPENGL_V1_5 OPENGL_V2_0 \
    OPENGL_V2_1 OPENGL_V3_0 OPENGL_V3_1 OPENGL_V3_2 OPENGL_V3_3 OPENGL_V4_0 OPENGL_V4_1 \
    OPENGL_V4_2 OPENGL_V4_3 OPENGL_V4_4 OPENGL_V4_5} HW_GPU_CUDA_{COMPUTE_CAPABILITY_V1_0 \
    COMPUTE_CAPABILITY_V1_1 COMPUTE_CAPABILITY_V1_2 COMPUTE_CAPABILITY_V1_3 \
    COMPUTE_CAPABILITY_V2_0 COMPUTE_CAPABILITY_V2_1 COMPUTE_CAPABILITY_V3_0 \
    COMPUTE_CAPABILITY_V3_2 COMPUTE_CAPABILITY_V3_5 COMPUTE_CAPABILITY_V3_7 \
    COMPUTE_CAPABILITY_V5_0 COMPUTE_CAPABILITY_V5_2 COMPUTE_CAPABILITY_V5_3 \
    COMPUTE_CAPABILITY_V6_0 COMPUTE_CAPABILITY_V6_1 COMPUTE_CAPABILITY_V6_2 \
    COMPUTE_CAPABILITY_V7_0 COMPUTE_CAPABILITY_V7_1 COMPUTE_CAPABILITY_V7_2 SDK_V6_5 SDK_V7_5 \
    SDK_V8_0 SDK_V9_0 SDK_V9_1 SDK_V9_2 SDK_V10_0} HW_GPU_MAX_DISPLAY_HEADS_{1 2 4 6 8} \
    HW_GPU_RESOLUTION_{W320H240 W640H480 W800H600 W1024H600 W1024H768 W1152H864 W1280H720 \
    W1280H768 W1280H800 W1280H1024 W1360H768 W1366H768 W1440H900 W1600H900 W1600H1200 W1680H1050 \
    W1920H1080 W1920H1200 W2560H1440 W2560H1600 W3840H2160 W7680H4320} HW_NIC_{SRIOV MULTIQUEUE \
    VMDQ PROGRAMMABLE_PIPELINE} HW_NIC_ACCEL_{SSL IPSEC TLS DIFFIEH RSA ECC LZS DEFLATE} \
    HW_NIC_DCB_{PFC ETS QCN} HW_NIC_OFFLOAD_{TSO GRO GSO UFO LRO LSO TCS UCS SCS L2CRC FDF RXVLAN \
    TXVLAN VXLAN GRE GENEVE TXUDP QINQ RDMA RXHASH RX TX SG SWITCHDEV} HW_NIC_SRIOV_{QOS_TX QOS_RX \
    MULTIQUEUE TRUSTED} HW_NUMA_{ROOT} HW_NVME_{CES BES WZS} HW_PCI_{LIVE_MIGRATABLE ONE_TIME_USE} \
    MISC_{SHARES_VIA_AGGREGATE} OWNER_{CYBORG NOVA} STORAGE_DISK_{HDD SSD}";

/// First code point of each run of ten Unicode decimal digits (category Nd,
/// Unicode 14 as in Python 3.11): Python's `\d`, and the digits `int()` reads.
const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
    0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
    0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

/// Validates one flavor extra spec as Nova does from microversion 2.86.
/// Ok(()) when the key's namespace is unknown to Nova or the key and value are valid;
/// Err(message) with Nova's 400 message otherwise.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    if is_template(key) {
        // Nova finds the validator by its template name, then fails to match
        // the key against the template's own pattern.
        return Err(format!(
            "Validation failed; expected a name of format '{key}' but got '{key}'."
        ));
    }
    match rule_for(key) {
        Some(rule) => check_value(rule, value),
        None if known_namespace(key) => Err(format!(
            "Validation failed; extra spec '{key}' does not appear to be a valid extra spec."
        )),
        None => Ok(()),
    }
}

/// The rule of the validator whose pattern matches the whole key.
fn rule_for(key: &str) -> Option<Rule> {
    if let Some((_, rule)) = SPECS.iter().find(|(name, _)| *name == key) {
        return Some(*rule);
    }
    if let Some(rest) = key.strip_prefix("hw:numa_cpus") {
        return any_char_then_digits(rest).then_some(Rule::Pattern(Pat::CpuMask));
    }
    if let Some(rest) = key.strip_prefix("hw:numa_mem") {
        return any_char_then_digits(rest).then_some(POS);
    }
    if let Some(rest) = key.strip_prefix("aggregate_instance_extra_specs:") {
        return (!rest.is_empty() && !rest.contains('\n')).then_some(ANY);
    }
    if let Some(rest) = key.strip_prefix("capabilities:") {
        let nested = NESTED_CAPABILITIES.split_whitespace().any(|cap| {
            rest.strip_prefix(cap).is_some_and(|filter| {
                filter.is_empty()
                    || filter.strip_prefix(':').is_some_and(|f| {
                        f.split(':')
                            .all(|w| !w.is_empty() && w.chars().all(is_word))
                    })
            })
        });
        let flat = listed(CAPABILITIES, rest);
        return (nested || flat).then_some(ANY);
    }
    let (namespace, name) = key.split_once(':')?;
    if grouped(namespace, "resources") {
        let custom = name.strip_prefix("CUSTOM_").is_some_and(custom_name);
        return (custom || listed(STANDARD_RESOURCE_CLASSES, name)).then_some(INT);
    }
    if grouped(namespace, "trait") {
        let custom = name.strip_prefix("CUSTOM_").is_some_and(custom_name);
        return (custom || standard_trait(name)).then_some(TRAIT);
    }
    None
}

/// Whether the key is, literally, the template name of a patterned
/// validator that its own pattern refuses (e.g. `trait{group}:COMPUTE_NODE`).
/// `aggregate_instance_extra_specs:{key}` is not one: `.+` matches `{key}`.
fn is_template(key: &str) -> bool {
    if !key.contains('{') {
        return false;
    }
    if key == "hw:numa_cpus.{num}" || key == "hw:numa_mem.{num}" {
        return true;
    }
    if let Some(cap) = key
        .strip_prefix("capabilities:")
        .and_then(|k| k.strip_suffix("{filter}"))
    {
        return listed(NESTED_CAPABILITIES, cap);
    }
    if let Some(rc) = key.strip_prefix("resources{group}:") {
        return rc == "CUSTOM_{resource}" || listed(STANDARD_RESOURCE_CLASSES, rc);
    }
    if let Some(trait_) = key.strip_prefix("trait{group}:") {
        return trait_ == "CUSTOM_{trait}" || standard_trait(trait_);
    }
    false
}

/// Whether the part of the key before its first `:` is a namespace of
/// Nova's registry (keys without `:` have none).
fn known_namespace(key: &str) -> bool {
    key.split_once(':').is_some_and(|(ns, _)| {
        listed(NAMESPACES, ns) || grouped(ns, "resources") || grouped(ns, "trait")
    })
}

/// `{base}([a-zA-Z0-9_-]{1,64})?`.
fn grouped(namespace: &str, base: &str) -> bool {
    namespace.strip_prefix(base).is_some_and(|group| {
        group.len() <= 64
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// `[A-Z0-9_]+`.
fn custom_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn standard_trait(name: &str) -> bool {
    STANDARD_TRAITS.split('}').any(|group| {
        group.split_once('{').is_some_and(|(prefix, names)| {
            name.strip_prefix(prefix.trim())
                .is_some_and(|n| listed(names, n))
        })
    })
}

/// Whether `name` is one of the whitespace-separated words of `list`.
fn listed(list: &str, name: &str) -> bool {
    list.split_whitespace().any(|word| word == name)
}

/// `.\d+` (the `.` of `hw:numa_cpus.{num}` is unescaped in Nova).
fn any_char_then_digits(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c != '\n') && digits1(chars.as_str()) == Some("")
}

fn check_value(rule: Rule, value: &str) -> Result<(), String> {
    match rule {
        Rule::Any => Ok(()),
        Rule::Bool => {
            let lowered = value.trim_matches(is_space).to_lowercase();
            let known = [
                "1", "t", "true", "on", "y", "yes", "0", "f", "false", "off", "n", "no",
            ];
            if known.contains(&lowered.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "Validation failed; '{value}' is not a valid boolean-like value."
                ))
            }
        }
        Rule::Int(min, max) => {
            let Some((number, text)) = py_int(value) else {
                return Err(format!(
                    "Validation failed; '{value}' is not a valid integer value."
                ));
            };
            if let Some(max) = max
                && number.cmp(&i128::from(max)) == Ordering::Greater
            {
                return Err(format!(
                    "Validation failed; '{text}' is greater than the max value of '{max}'."
                ));
            }
            if let Some(min) = min
                && number.cmp(&i128::from(min)) == Ordering::Less
            {
                return Err(format!(
                    "Validation failed; '{text}' is less than the min value of '{min}'."
                ));
            }
            Ok(())
        }
        Rule::OneOf(choices) => {
            if listed(choices, value) {
                Ok(())
            } else {
                let choices: Vec<&str> = choices.split_whitespace().collect();
                Err(format!(
                    "Validation failed; '{value}' is not one of: {}.",
                    choices.join(", ")
                ))
            }
        }
        Rule::Pattern(pat) => {
            if pat.matches(value) {
                Ok(())
            } else {
                Err(format!(
                    "Validation failed; '{value}' is not of the format '{}'.",
                    pat.regex()
                ))
            }
        }
    }
}

/// Python's `int(s)`: surrounding whitespace (not U+001C..U+001F, which
/// `str.strip()` would take), a sign, decimal digits with single `_` between
/// them. Returns the value (saturated to i128, enough to compare with the
/// small bounds) and how Python prints it.
fn py_int(s: &str) -> Option<(i128, String)> {
    let s = s.trim_matches(char::is_whitespace);
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut digits = String::new();
    let mut after_digit = false;
    for c in body.chars() {
        if c == '_' && after_digit {
            after_digit = false;
        } else {
            digits.push(char::from(b'0' + digit_value(c)?));
            after_digit = true;
        }
    }
    // Python refuses strings of more than 4300 digits (sys.int_info).
    if !after_digit || digits.len() > 4300 {
        return None;
    }
    let magnitude = match digits.trim_start_matches('0') {
        "" => "0",
        m => m,
    };
    let text = if negative && magnitude != "0" {
        format!("-{magnitude}")
    } else {
        magnitude.to_string()
    };
    let saturated = if negative { i128::MIN } else { i128::MAX };
    Some((text.parse().unwrap_or(saturated), text))
}

/// The value of a Unicode decimal digit (Python's `\d`).
fn digit_value(c: char) -> Option<u8> {
    let c = u32::from(c);
    let zero = match DIGIT_ZEROS.binary_search(&c) {
        Ok(i) => DIGIT_ZEROS[i],
        Err(0) => return None,
        Err(i) => DIGIT_ZEROS[i - 1],
    };
    u8::try_from(c - zero).ok().filter(|d| *d < 10)
}

/// Python's `str.isspace()` and regex `\s`.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's regex `\w` (approximately: alphanumeric or `_`).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `\d+`: the rest after at least one digit, or None.
fn digits1(s: &str) -> Option<&str> {
    let rest = s.trim_start_matches(|c| digit_value(c).is_some());
    (rest.len() < s.len()).then_some(rest)
}

/// `\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*`, which is the language
/// `\^?\d+(-\d+|,\^?\d+)*`.
fn cpu_mask(s: &str) -> bool {
    let mut rest = match digits1(s.strip_prefix('^').unwrap_or(s)) {
        Some(rest) => rest,
        None => return false,
    };
    while !rest.is_empty() {
        let next = if let Some(r) = rest.strip_prefix('-') {
            digits1(r)
        } else if let Some(r) = rest.strip_prefix(',') {
            digits1(r.strip_prefix('^').unwrap_or(r))
        } else {
            None
        };
        match next {
            Some(r) => rest = r,
            None => return false,
        }
    }
    true
}

/// `[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*`. Every `:` separates an alias from a
/// count, so between two colons there must be `\d+\s*,` then a non-empty
/// alias; before the first, a non-empty alias; after the last, `\d+`.
fn pci_alias(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    !first.is_empty()
        && digits1(last) == Some("")
        && middle.iter().all(|part| {
            digits1(part)
                .and_then(|r| r.trim_start_matches(is_space).strip_prefix(','))
                .is_some_and(|alias| !alias.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::validate;

    fn ok(key: &str, value: &str) {
        assert_eq!(validate(key, value), Ok(()), "{key}={value}");
    }

    /// `message` without its leading "Validation failed; ".
    fn err(key: &str, value: &str, message: &str) {
        let want = format!("Validation failed; {message}");
        assert_eq!(validate(key, value), Err(want), "{key}={value}");
    }

    fn unknown(key: &str) {
        let message = format!("extra spec '{key}' does not appear to be a valid extra spec.");
        err(key, "1", &message);
    }

    #[test]
    fn unknown_namespaces_and_plain_keys_are_accepted() {
        let keys = "hhw:cpu_realtime_mask w:cpu_realtime_mask hw_cpu_realtime_mask foo foo:bar \
            hww:cpu_policy HW:cpu_policy resources.x:VCPU Trait:FOO quota_x:foo";
        for key in keys.split_whitespace().chain(["trait x:FOO", ""]) {
            ok(key, "anything");
        }
        // a group longer than 64 characters makes no `resources` namespace
        ok(&format!("resources{}:VCPU", "a".repeat(65)), "x");
        unknown(&format!("resources{}:VCPUS", "a".repeat(64)));
    }

    #[test]
    fn unknown_keys_in_known_namespaces_are_refused() {
        let keys = "hw:cpu_realtime_maskk hw:cpu_realtime_mas hw:foo hw:cpu_policyyyyyyy hw: \
            hw_rng:foo hw_video:foo quota:foo os:foo accel:foo vmware:foo pci_passthrough:foo \
            capabilities:foo capabilities:cpu_info: capabilities:cpu_info:a-b \
            aggregate_instance_extra_specs: hw:numa_cpus hw:numa_cpus.x hw:numa_mem. \
            resources:VVCPU resources_foo:VVCPU resources1:CUSTOM_ resources:custom_foo \
            trait:bar trait_foo:bar trait:CUSTOM_foo trait:HW_CPU_X86_AVX3";
        for key in keys.split_whitespace() {
            unknown(key);
        }
    }

    #[test]
    fn enums() {
        ok("hw:cpu_policy", "mixed");
        ok("hw:cpu_thread_policy", "prefer");
        ok("hw:pci_numa_affinity_policy", "socket");
        ok("hw:tpm_version", "2.0");
        ok("hw:sound_model", "ich9");
        ok("hw:usb_model", "qemu-xhci");
        ok("hw:ephemeral_encryption_format", "luksv2");
        ok("os:secure_boot", "required");
        ok("group_policy", "none");
        ok("quota:vif_shares_level", "custom");
        let policies = "is not one of: dedicated, shared, mixed.";
        err(
            "hw:cpu_policy",
            "sharrred",
            &format!("'sharrred' {policies}"),
        );
        err("hw:cpu_policy", " shared", &format!("' shared' {policies}"));
        err(
            "hw:cpu_policy",
            "shared mixed",
            &format!("'shared mixed' {policies}"),
        );
        err("hw:tpm_version", "4.2", "'4.2' is not one of: 1.2, 2.0.");
        err(
            "group_policy",
            "Isolate",
            "'Isolate' is not one of: isolate, none.",
        );
        err(
            "hw:watchdog_action",
            "",
            "'' is not one of: none, pause, poweroff, reset, disabled.",
        );
    }

    #[test]
    fn integers() {
        for v in ["1", " +2\n", "1_000", "007", "\u{663}", "\u{ff17}"] {
            ok("hw:numa_nodes", v);
        }
        ok("quota:cpu_quota", "-1");
        ok("quota:cpu_reservation", &"9".repeat(60));
        ok("hw:redirected_usb_ports", "15");
        ok("hw:redirected_usb_ports", "0");
        let not_ints = [
            "five", "!", "", " ", "1.0", "1_", "_1", "1__0", "- 1", "0x10", "+-1", "\u{1c}1",
        ];
        for v in not_ints {
            err(
                "hw:serial_port_count",
                v,
                &format!("'{v}' is not a valid integer value."),
            );
        }
        err(
            "hw:numa_nodes",
            "0",
            "'0' is less than the min value of '1'.",
        );
        err(
            "hw:numa_mem.0",
            " -0_5",
            "'-5' is less than the min value of '1'.",
        );
        err(
            "hw:redirected_usb_ports",
            "016",
            "'16' is greater than the max value of '15'.",
        );
        let big = "9".repeat(45);
        err(
            "hw:redirected_usb_ports",
            &big,
            &format!("'{big}' is greater than the max value of '15'."),
        );
        let small = format!("-{big}");
        err(
            "hw_rng:rate_bytes",
            &small,
            &format!("'{small}' is less than the min value of '0'."),
        );
        let huge = "1".repeat(4301);
        err(
            "hw:numa_nodes",
            &huge,
            &format!("'{huge}' is not a valid integer value."),
        );
    }

    #[test]
    fn booleans() {
        for v in [
            "1", "0", "true", "TRUE", " Yes ", "n", "off", "On", "f", "\u{1c}t",
        ] {
            ok("hw:cpu_realtime", v);
        }
        ok("hide_hypervisor_id", "true");
        ok("hw_rng:allowed", "False");
        for v in ["2", "00", "tru", "yah", "", "truee"] {
            err(
                "hw:boot_menu",
                v,
                &format!("'{v}' is not a valid boolean-like value."),
            );
        }
    }

    #[test]
    fn patterns() {
        let mask = r"is not of the format '\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*'.";
        for v in [
            "0",
            "^0",
            "^0,2-3,1",
            "0-4,^2,6",
            "0-3,8-9,11,10",
            "1-2-3",
            "0,^1-3",
        ] {
            ok("hw:cpu_dedicated_mask", v);
            ok("hw:cpu_realtime_mask", v);
            ok("hw:numa_cpus.0", v);
        }
        for v in [
            "a", "^0,2-3,b", "", "^", "0,", "0-", "^^0", "0,,1", "0-^1", " 0",
        ] {
            err("hw:numa_cpus.1", v, &format!("'{v}' {mask}"));
        }
        let realtime = r"'x' is not of the format '(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*'.";
        err("hw:cpu_realtime_mask", "x", realtime);

        for v in [
            "large", "small", "any", "2048", "2kbit", "1GB", "1Gib", "4Ki", "4k", "2b",
        ] {
            ok("hw:mem_page_size", v);
        }
        let size = r"is not of the format '(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)'.";
        for v in [
            "largest",
            "2kbits",
            "1gigabyte",
            "Large",
            "1i",
            "1KiiB",
            "k",
            "",
        ] {
            err("hw:mem_page_size", v, &format!("'{v}' {size}"));
        }

        for v in ["a", "a,b", "a,b,", "SMALL_1,large"] {
            ok("hw:pmem", v);
        }
        for v in ["", ",a", "a,,b", "a b", "a-b"] {
            err(
                "hw:pmem",
                v,
                &format!("'{v}' is not of the format '([a-zA-Z0-9_]+(,)?)+'."),
            );
        }

        for v in [
            "a1:2",
            "a1:2,b2:3",
            "a1:2 , b2:10",
            "a b:1",
            "x,y:1",
            "a:1,\tb:2",
            "a:1, :2",
        ] {
            ok("pci_passthrough:alias", v);
        }
        let alias = r"is not of the format '[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*'.";
        for v in [
            "a1", "a1:", ":1", "a1:x", "a1:2,", "a1:2,b2", "a1:2;b:3", "a:1:2", "a:1,:2",
        ] {
            err("pci_passthrough:alias", v, &format!("'{v}' {alias}"));
        }
    }

    #[test]
    fn numa_keys() {
        ok("hw:numa_mem.0", "1024");
        ok("hw:numa_mem.12", "1");
        ok("hw:numa_memX3", "1"); // the `.` of Nova's pattern is a wildcard
        err(
            "hw:numa_mem.0",
            "lots",
            "'lots' is not a valid integer value.",
        );
        unknown("hw:numa_mem.1x");
    }

    #[test]
    fn grouped_resources_and_traits() {
        let resources = "resources:VCPU resources_foo:VCPU resources1:MEMORY_MB \
            resources-a_B:NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC resources:CUSTOM_FOO \
            resources_foo:CUSTOM_BAR_2";
        for key in resources.split_whitespace() {
            ok(key, "4");
            ok(key, "-1");
            err(key, "N", "'N' is not a valid integer value.");
        }
        let traits = "trait:STORAGE_DISK_SSD trait_foo:HW_CPU_X86_AVX2 \
            trait1:COMPUTE_STATUS_DISABLED trait:HW_GPU_MAX_DISPLAY_HEADS_8 trait:OWNER_NOVA \
            trait:CUSTOM_FOO trait_foo:CUSTOM_BAR";
        for key in traits.split_whitespace() {
            ok(key, "required");
            ok(key, "forbidden");
            err(
                key,
                "forbiden",
                "'forbiden' is not one of: required, forbidden.",
            );
        }
    }

    #[test]
    fn free_form_keys() {
        ok("aggregate_instance_extra_specs:foo", "<in> bar");
        ok("aggregate_instance_extra_specs:{key}", "x");
        ok("capabilities:hypervisor_type", "s== QEMU");
        ok("capabilities:cpu_info", "x");
        ok("capabilities:cpu_info:arch", "x86_64");
        ok("capabilities:stats:a:b_2", "x");
        ok("accel:device_profile", "");
        ok("vmware:hw_version", "vmx-13");
    }

    #[test]
    fn template_names_are_refused() {
        let keys = "hw:numa_cpus.{num} hw:numa_mem.{num} capabilities:cpu_info{filter} \
            resources{group}:VCPU resources{group}:CUSTOM_{resource} trait{group}:COMPUTE_NODE \
            trait{group}:CUSTOM_{trait}";
        for key in keys.split_whitespace() {
            err(
                key,
                "1",
                &format!("expected a name of format '{key}' but got '{key}'."),
            );
        }
    }
}
