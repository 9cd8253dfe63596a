"""The networking golden path with the real `openstack` CLI (see golden-path-network.sh)."""
import json
import subprocess
import sys
import time

from golden_common import Run, expect

OSC, WORK = sys.argv[1], sys.argv[2]
run = Run(OSC, timeout=120)
osc, step = run.osc, run.step


def refused(*args):
    """What `openstack <args>` says when it fails ("" when it succeeds)."""
    print("$ openstack " + " ".join(args), flush=True)
    p = subprocess.run([OSC, *args], capture_output=True, text=True, timeout=120)
    print((p.stdout + p.stderr).strip())
    return (p.stdout + p.stderr) if p.returncode != 0 else ""


def ports():
    return {p["ID"] for p in osc("port", "list", "-f", "json")}


before = step("port list before", ports) or set()
step("network create net1", lambda: osc("network", "create", "net1", "-f", "json"))
sub = step("subnet create --subnet-range 10.0.0.0/24",
           lambda: osc("subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24",
                       "sub1", "-f", "json"))
step("subnet gateway and pool", lambda: expect(
    sub and sub["gateway_ip"] == "10.0.0.1"
    and sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}],
    f"subnet {sub}"))
step("router create r1", lambda: osc("router", "create", "r1", "-f", "json"))
step("router set --external-gateway public",
     lambda: osc("router", "set", "--external-gateway", "public", "r1"))
step("router add subnet r1 sub1", lambda: osc("router", "add", "subnet", "r1", "sub1"))
r = step("router show: gateway on public with SNAT", lambda: osc("router", "show", "r1", "-f", "json"))
step("router gateway fields", lambda: expect(
    r and r["external_gateway_info"]["enable_snat"] is True
    and r["external_gateway_info"]["external_fixed_ips"][0]["ip_address"].startswith("172.24.4."),
    f"router {r and r['external_gateway_info']}"))
rule = step("security group rule create --protocol tcp --dst-port 22",
            lambda: osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
                        "default", "-f", "json"))
step("image create cirros", lambda: osc("image", "create", "--disk-format", "raw", "--container-format",
                                         "bare", "--file", "/dev/null", "cirros", "-f", "json"))
step("server create --network net1 --wait",
     lambda: osc("server", "create", "--flavor", "m1.tiny", "--image", "cirros", "--network", "net1",
                 "--wait", "s1", "-f", "json"))
fip = step("floating ip create public", lambda: osc("floating", "ip", "create", "public", "-f", "json"))
fip_addr = fip["floating_ip_address"] if fip else "?"
step("server add floating ip", lambda: osc("server", "add", "floating", "ip", "s1", fip_addr))


def both_addresses():
    deadline = time.time() + 10
    while True:
        s = osc("server", "show", "s1", "-f", "json")
        text = json.dumps(s["addresses"])
        if fip_addr in text and "10.0.0." in text:
            return s
        if time.time() > deadline:
            raise AssertionError(f"addresses {text}")
        time.sleep(0.5)


step("server show lists the fixed and the floating address", both_addresses)
step("security group create web", lambda: osc("security", "group", "create", "web", "-f", "json"))
step("server add security group s1 web", lambda: osc("server", "add", "security", "group", "s1", "web"))
step("server's port has web", lambda: expect(
    any(g["name"] == "web" for g in osc("server", "show", "s1", "-f", "json")["security_groups"]),
    "web not among the server's groups"))
step("server remove security group s1 web",
     lambda: osc("server", "remove", "security", "group", "s1", "web"))
step("security group delete web", lambda: osc("security", "group", "delete", "web"))
step("port create --network net1 p2", lambda: osc("port", "create", "--network", "net1", "p2", "-f", "json"))
step("server add port s1 p2", lambda: osc("server", "add", "port", "s1", "p2"))
step("p2 bound to s1", lambda: expect(
    osc("port", "show", "p2", "-f", "json")["device_id"] == osc("server", "show", "s1", "-f", "json")["id"],
    "p2 not on s1"))
step("server remove port s1 p2", lambda: osc("server", "remove", "port", "s1", "p2"))
step("p2 unbound, kept", lambda: expect(
    osc("port", "show", "p2", "-f", "json")["device_id"] in ("", None), "p2 still bound"))
step("port delete p2", lambda: osc("port", "delete", "p2"))
step("server add network s1 net1", lambda: osc("server", "add", "network", "s1", "net1"))
step("server has two ports", lambda: expect(
    len(osc("port", "list", "--server", "s1", "-f", "json")) == 2, "expected two ports"))
step("server delete --wait", lambda: osc("server", "delete", "--wait", "s1"))
step("floating ip delete", lambda: osc("floating", "ip", "delete", fip_addr))
step("security group rule delete", lambda: osc("security", "group", "rule", "delete", rule["id"]))
step("router remove subnet", lambda: osc("router", "remove", "subnet", "r1", "sub1"))
step("router unset --external-gateway", lambda: osc("router", "unset", "--external-gateway", "r1"))
step("router delete", lambda: osc("router", "delete", "r1"))
wide = step("subnet create --subnet-range 10.20.30.0/16: stored as 10.20.0.0/16",
            lambda: osc("subnet", "create", "--network", "net1", "--subnet-range", "10.20.30.0/16",
                        "sub-wide", "-f", "json"))
step("the host bits are dropped, as Neutron does", lambda: expect(
    wide and wide["cidr"] == "10.20.0.0/16" and wide["gateway_ip"] == "10.20.0.1"
    and wide["allocation_pools"] == [{"start": "10.20.0.2", "end": "10.20.255.254"}],
    f"subnet {wide}"))
step("subnet delete", lambda: osc("subnet", "delete", "sub1", "sub-wide"))
step("network delete", lambda: osc("network", "delete", "net1"))
scope = step("address scope create --ip-version 4 as1",
             lambda: osc("address", "scope", "create", "--ip-version", "4", "as1", "-f", "json"))
pool = step("subnet pool create --address-scope as1 --pool-prefix 10.150.0.0/16 pool1",
            lambda: osc("subnet", "pool", "create", "--address-scope", "as1", "--pool-prefix",
                        "10.150.0.0/16", "--default-prefix-length", "24", "pool1", "-f", "json"))
step("the pool is in the scope", lambda: expect(
    scope and pool and pool["address_scope_id"] == scope["id"], f"pool {pool}"))
step("a pool overlapping another of the scope is refused (409)", lambda: expect(
    "409" in refused("subnet", "pool", "create", "--address-scope", "as1", "--pool-prefix",
                     "10.150.7.0/24", "pool2"), "pool2 was not refused with 409"))
step("network create net2; subnet create --subnet-pool pool1",
     lambda: (osc("network", "create", "net2", "-f", "json"),
              osc("subnet", "create", "--network", "net2", "--subnet-pool", "pool1", "sub-pool", "-f", "json")))
step("network show net2: ipv4_address_scope is as1", lambda: expect(
    scope and osc("network", "show", "net2", "-f", "json")["ipv4_address_scope"] == scope["id"],
    "net2 not in as1"))
step("address scope delete while in use is refused (409)", lambda: expect(
    "409" in refused("address", "scope", "delete", "as1"), "as1 was not refused with 409"))
step("clean up: subnet, network, pool, scope",
     lambda: (osc("subnet", "delete", "sub-pool"), osc("network", "delete", "net2"),
              osc("subnet", "pool", "delete", "pool1"), osc("address", "scope", "delete", "as1")))
step("no orphan ports", lambda: expect(ports() == before, f"ports left: {ports() - before}"))
run.finish("golden-path-network")
