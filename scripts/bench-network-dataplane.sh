#!/usr/bin/env bash
# The host data plane's benchmark (issue 18): the Linux bridge driver and the
# network agent, release build, as root, inside network namespaces the
# benchmark creates and removes (crates/network-agent/examples/dataplane_bench.rs):
#   * converge PORTS (200) guest ports with RULES (20) security group rules
#     each, DHCP namespace and dnsmasq included, from an empty host;
#   * one port's rule added; a convergence that changes nothing;
#   * after drift (the security group table deleted, a tenth of the taps
#     taken off their bridge behind the agent's back);
#   * beside the prototype's one `nft -f` of the same rules keyed by address
#     (../shared/reference/dataplane/06-security-groups.sh), same run;
#   * a guest's tap appearing -> the agent wired it and told Networking.
# Targets (issue 18): <= 100 ms per port change; <= 2 s for 200 ports.
#
#   scripts/bench-network-dataplane.sh        PORTS=200 RULES=20
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "bench-network-dataplane: needs root (namespaces, bridges, nftables)" >&2; exit 1; }
ferro_need dnsmasq dnsmasq-base
ferro_need nft nftables
cd "$REPO"
cargo build -q --release -p ferro-network-agent --example dataplane_bench
mkdir -p target/bench
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores" | tee target/bench/network-dataplane.txt
target/release/examples/dataplane_bench | tee -a target/bench/network-dataplane.txt
