"""IPAM benchmark: concurrent port creates on one subnet until exhaustion, then
port-list latency (see bench-network.sh). Standard library only."""
import http.client
import json
import sys
import threading
import time
import urllib.parse

URL, PASSWORD, CIDR, CONC, NLIST, LIST_AT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
u = urllib.parse.urlparse(URL)


def conn():
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def req(c, method, path, tok=None, body=None):
    h = {"Content-Type": "application/json"}
    if tok:
        h["X-Auth-Token"] = tok
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None), r


c = conn()
st, _, r = req(c, "POST", "/identity/v3/auth/tokens", body={"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}}, "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
tok = r.getheader("X-Subject-Token")
st, net, _ = req(c, "POST", "/networking/v2.0/networks", tok, {"network": {"name": "bench"}})
net_id = net["network"]["id"]
st, sub, _ = req(c, "POST", "/networking/v2.0/subnets", tok, {"subnet": {"network_id": net_id, "cidr": CIDR, "ip_version": 4}})
assert st == 201, sub

lock = threading.Lock()
addrs = []
errors = []
listed = {}
list_gate = threading.Event()


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def list_latency(label):
    lc = conn()
    times = []
    n = 0
    for _ in range(NLIST):
        t = time.perf_counter()
        st, body, _ = req(lc, "GET", "/networking/v2.0/ports", tok)
        times.append((time.perf_counter() - t) * 1000)
        n = len(body["ports"])
    listed[label] = (n, percentile(times, 50), percentile(times, 99))


def worker():
    wc = conn()
    while True:
        if list_gate.is_set():
            time.sleep(0.01)
            continue
        st, body, _ = req(wc, "POST", "/networking/v2.0/ports", tok, {"port": {"network_id": net_id}})
        if st == 409:
            if body["NeutronError"]["type"] != "IpAddressGenerationFailure":
                errors.append(body)
            return
        if st != 201:
            errors.append((st, body))
            return
        with lock:
            addrs.append(body["port"]["fixed_ips"][0]["ip_address"])
            if len(addrs) == LIST_AT:
                list_gate.set()


threads = [threading.Thread(target=worker) for _ in range(CONC)]
t0 = time.perf_counter()
paused = 0.0
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    if list_gate.is_set() and "at" not in listed:
        time.sleep(0.2)
        p0 = time.perf_counter()
        list_latency("at")
        paused += time.perf_counter() - p0
        list_gate.clear()
    time.sleep(0.01)
for t in threads:
    t.join()
elapsed = time.perf_counter() - t0 - paused
list_latency("end")
dups = len(addrs) - len(set(addrs))
print(f"port create (concurrency {CONC}, one {CIDR} subnet, until exhaustion): {len(addrs)} ports in {elapsed:.1f} s = {len(addrs) / elapsed:.0f} ports/s")
print(f"duplicate addresses: {dups}; unexpected errors: {len(errors)} {errors[:3]}")
for label, (n, p50, p99) in listed.items():
    print(f"GET /v2.0/ports with {n} ports: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({NLIST} requests)")
sys.exit(1 if dups or errors else 0)
