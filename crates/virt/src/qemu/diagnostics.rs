//! What a running guest's QEMU has done, as libvirt reports it to Nova's
//! diagnostics: CPU time per vCPU (the vCPU threads' in `/proc`), I/O per
//! disk (QMP `query-blockstats`), traffic per NIC (its tap's counters, seen
//! from the guest), memory, and the time since the process started.
use super::qmp::Qmp;
use crate::{Diagnostics, DiskStats, GuestSpec, NicStats, VirtError};
use serde_json::Value;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// Measures a running guest (`pid` is its verified QEMU).
pub async fn running(
    q: &mut Qmp,
    pid: u32,
    spec: &GuestSpec,
    hypervisor: &str,
) -> Result<Diagnostics, VirtError> {
    let cpus = q.execute("query-cpus-fast", None).await?;
    let mut cpu_times_ns = Vec::new();
    for c in cpus.as_array().into_iter().flatten() {
        let tid = c["thread-id"].as_u64().unwrap_or_default();
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|s| stat_cpu_ticks(&s))
            .unwrap_or_default();
        cpu_times_ns.push(ticks * (1_000_000_000 / USER_HZ));
    }
    let stats = q.execute("query-blockstats", None).await?;
    let prefix = match spec.image_properties.get("hw_disk_bus").map(String::as_str) {
        Some("scsi" | "sata") => "sd",
        Some("ide") => "hd",
        _ => "vd",
    };
    let disks = block_stats(&stats, prefix);
    let uptime = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_field(&s, 22))
        .zip(host_uptime())
        .map(|(start, up)| up.saturating_sub(start / USER_HZ));
    Ok(Diagnostics {
        hypervisor: hypervisor.to_string(),
        uptime,
        cpu_times_ns,
        disks,
        nics: spec
            .vifs
            .iter()
            .map(|v| nic(&v.mac_address, &v.tap_name))
            .collect(),
        memory_max_mb: spec.memory_mb,
        // Without a balloon the guest has all of its RAM, as libvirt says.
        memory_used_mb: spec.memory_mb,
    })
}

/// A guest whose QEMU does not run: its shape, no counters.
pub fn stopped(spec: &GuestSpec, hypervisor: &str) -> Diagnostics {
    Diagnostics {
        hypervisor: hypervisor.to_string(),
        uptime: None,
        cpu_times_ns: vec![0; spec.vcpus.max(1) as usize],
        disks: Vec::new(),
        nics: spec
            .vifs
            .iter()
            .map(|v| NicStats {
                mac_address: v.mac_address.clone(),
                name: v.tap_name.clone(),
                ..NicStats::default()
            })
            .collect(),
        memory_max_mb: spec.memory_mb,
        memory_used_mb: 0,
    }
}

/// Field `n` (1-based, as proc(5) numbers them) of a `/proc/.../stat` line;
/// the command name in parentheses may hold spaces.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    // Fields from 3 on follow the name.
    after
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// utime + stime of a `/proc/.../stat` line, in ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    Some(stat_field(stat, 14)? + stat_field(stat, 15)?)
}

fn host_uptime() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

/// `query-blockstats` as one entry per guest disk: `drive<n>` is the
/// guest's n-th disk of the boot command line (`<prefix>a`, ...), `dev-<name>`
/// a hot-plugged volume; the config drive is left out, as libvirt counts
/// only disks.
fn block_stats(v: &Value, prefix: &str) -> Vec<DiskStats> {
    let mut out = Vec::new();
    for d in v.as_array().into_iter().flatten() {
        let dev = d["device"].as_str().unwrap_or_default();
        let name = if let Some(n) = dev.strip_prefix("drive").and_then(|n| n.parse::<u8>().ok()) {
            format!("{prefix}{}", char::from(b'a' + n.min(25)))
        } else if let Some(n) = d["qdev"]
            .as_str()
            .and_then(|q| q.split('/').find_map(|p| p.strip_prefix("dev-")))
        {
            n.to_string()
        } else {
            continue;
        };
        let s = &d["stats"];
        let u = |k: &str| s[k].as_u64().unwrap_or_default();
        out.push(DiskStats {
            name,
            read_bytes: u("rd_bytes"),
            read_requests: u("rd_operations"),
            write_bytes: u("wr_bytes"),
            write_requests: u("wr_operations"),
            errors_count: u("failed_rd_operations") + u("failed_wr_operations"),
        });
    }
    out
}

/// A NIC's counters from its tap: what the tap sent, the guest received.
fn nic(mac: &str, tap: &str) -> NicStats {
    let c = |k: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{tap}/statistics/{k}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_default()
    };
    NicStats {
        mac_address: mac.to_string(),
        name: tap.to_string(),
        rx_octets: c("tx_bytes"),
        rx_errors: c("tx_errors"),
        rx_drop: c("tx_dropped"),
        rx_packets: c("tx_packets"),
        tx_octets: c("rx_bytes"),
        tx_errors: c("rx_errors"),
        tx_drop: c("rx_dropped"),
        tx_packets: c("rx_packets"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proc_stat_fields_survive_odd_command_names() {
        let line =
            "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 98765 0";
        assert_eq!(stat_cpu_ticks(line), Some(325));
        assert_eq!(stat_field(line, 22), Some(98765));
        assert_eq!(stat_field(line, 3), None, "state is not a number");
    }

    #[test]
    fn block_stats_name_the_guests_disks() {
        let v = json!([
            {"device": "drive0", "stats": {"rd_bytes": 4096, "rd_operations": 2, "wr_bytes": 512,
              "wr_operations": 1, "failed_rd_operations": 0, "failed_wr_operations": 1}},
            {"device": "drive1", "stats": {"rd_bytes": 1}},
            {"device": "config", "stats": {"rd_bytes": 9}},
            {"device": "", "qdev": "/machine/peripheral/x", "stats": {}},
            {"device": "", "qdev": "/machine/peripheral/dev-vdc/virtio-backend", "stats": {"wr_bytes": 7}}
        ]);
        let d = block_stats(&v, "vd");
        assert_eq!(d.len(), 3);
        assert_eq!((d[2].name.as_str(), d[2].write_bytes), ("vdc", 7));
        assert_eq!(d[0].name, "vda");
        assert_eq!(
            (d[0].read_bytes, d[0].write_requests, d[0].errors_count),
            (4096, 1, 1)
        );
        assert_eq!(d[1].name, "vdb");
    }
}
