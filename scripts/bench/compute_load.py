#!/usr/bin/env python3
"""Compute + Placement load for scripts/bench-compute.sh, the same code for ferrostack
and for real Nova/Placement (../shared/peers). Stdlib only: urllib (a new connection
per request, as the peers' uwsgi closes every connection anyway) and threads.

Every command logs in with password (admin/admin in the Default domain) at AUTH_URL
(the identity root or .../v3) and takes the compute, image and placement endpoints
from the token's catalog (interface public). Results are printed as one line each,
`<name> key=value ...`, which bench-compute.sh parses; progress goes to stderr.

  compute_load.py ready AUTH_URL PASSWORD --t0-ns NS [--hosts N] [--timeout S] [--pid PID]
      Polls (every 0.1 s) until the cloud answers: identity (GET AUTH_URL, any HTTP
      status), a token (POST /v3/auth/tokens 201), compute (GET of the compute
      endpoint answers below 500) and N nova-compute services up in GET /os-services plus N
      hypervisors in GET /os-hypervisors. Prints the milliseconds since NS (a
      `date +%s%N` taken just before the server was launched) at which each answered:
        ready identity_ms=.. token_ms=.. compute_ms=.. compute_up_ms=..

  compute_load.py boots AUTH_URL PASSWORD [--seq 100] [--conc 100] [--poll 0.05]
                  [--boot-timeout 120] [--conc-timeout 300] [--delete-window 5]
      Makes sure of a public flavor bench-boot (1 vCPU, 64 MB, 1 GB disk) and a public
      1 MiB raw image bench-boot (created when absent), lifts the project's instance,
      cores and ram quotas (-1), then
      * seq: SEQ servers one after another: POST /servers (networks "none",
        microversion 2.79), then GET /servers/{id} every POLL s until ACTIVE or ERROR;
        latency = first response showing ACTIVE - POST sent;
      * conc: CONC POSTs released together from CONC threads (a barrier); one poller
        lists GET /servers/detail?name=bench-conc- every POLL s (sleep between
        responses) and latency = response that first shows a server ACTIVE - that
        server's POST sent. Servers not ACTIVE after CONC_TIMEOUT s count as timeouts.
      After each phase its servers are deleted (DELETE_WINDOW at a time, each waited
      for until GET answers 404) and the time recorded. Prints, per phase:
        boot_seq n=.. active=.. error=.. timeout=.. p50_ms=.. p99_ms=.. ok_p50_ms=..
                 ok_p99_ms=.. mean_ms=.. max_ms=.. post_p50_ms=.. post_p99_ms=.. wall_s=..
      (p50/p99 over all boots, a failed or timed-out boot counting as infinitely slow:
      "inf"; ok_* and mean/max over the boots that reached ACTIVE)
        boot_conc ... (same keys) poll_cycle_ms=..
        delete_seq n=.. gone=.. retried=.. wall_s=..  /  delete_conc ...

  compute_load.py placement AUTH_URL PASSWORD [--rps 1000] [--requests 200]
                  [--warmup 5] [--mv 1.39]
      Creates RPS resource providers named bench-rp-NNNNN (those already present are
      reused), each with VCPU 32 (ratio 4), MEMORY_MB 131072, DISK_GB 2048 inventory,
      then GET /allocation_candidates?resources=VCPU:1,MEMORY_MB:512,DISK_GB:1 WARMUP
      times (not counted) and REQUESTS times one after another (microversion MV):
        rp_create n=.. wall_s=.. per_s=..
        alloc_candidates n=.. candidates=.. bytes=.. p50_ms=.. p99_ms=.. mean_ms=.. max_ms=.. errors=..
"""
import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

TIMEOUT = 120
COMPUTE_MV = "2.79"
FLAVOR = ("bench-boot", 64, 1, 1)  # name, MB, vCPUs, GB disk
IMAGE = "bench-boot"


def log(msg):
    print(f"compute_load: {msg}", file=sys.stderr, flush=True)


class HTTPFailure(Exception):
    pass


def request(method, url, token=None, body=None, headers=None, raw=None, ctype=None,
            timeout=TIMEOUT):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    hdrs = {"Accept": "application/json"}
    if token:
        hdrs["X-Auth-Token"] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    elif raw is not None:
        data = raw
        hdrs["Content-Type"] = ctype or "application/octet-stream"
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def jbody(status, payload, what, want=(200,)):
    if status not in want:
        raise HTTPFailure(f"{what} -> HTTP {status}: {payload[:300]!r}")
    return json.loads(payload) if payload else {}


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def v3_url(auth_url):
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


class Cloud:
    def __init__(self, auth_url, password, interface="public"):
        self.auth = v3_url(auth_url)
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        status, headers, payload = request("POST", self.auth + "/auth/tokens", body=body)
        tok = jbody(status, payload, "POST /v3/auth/tokens", (201,))["token"]
        self.token = headers["X-Subject-Token"]
        self.project_id = tok["project"]["id"]
        self.endpoints = {}
        for svc in tok.get("catalog", []):
            for ep in svc.get("endpoints", []):
                if ep.get("interface") == interface:
                    self.endpoints.setdefault(svc["type"], ep["url"].rstrip("/"))

    def url(self, stype):
        if stype not in self.endpoints:
            raise HTTPFailure(f"no {stype} endpoint in the catalog "
                              f"(have {sorted(self.endpoints)})")
        return self.endpoints[stype]

    def call(self, method, url, body=None, want=(200,), headers=None, what=None, **kw):
        status, _, payload = request(method, url, self.token, body=body, headers=headers, **kw)
        return jbody(status, payload, what or f"{method} {url}", want)


def nova_headers():
    return {"OpenStack-API-Version": f"compute {COMPUTE_MV}",
            "X-OpenStack-Nova-API-Version": COMPUTE_MV}


# --------------------------------------------------------------------------- ready


def cmd_ready(args):
    t0 = args.t0_ns / 1e9
    deadline = time.time() + args.timeout
    found = {}

    def mark(key):
        if key not in found:
            found[key] = round((time.time() - t0) * 1000)
            log(f"{key} after {found[key]} ms")

    cloud = None
    while time.time() < deadline:
        if args.pid and not os.path.exists(f"/proc/{args.pid}"):
            log(f"process {args.pid} exited")
            break
        try:
            if "identity_ms" not in found:
                request("GET", args.auth_url, timeout=2)
                mark("identity_ms")
            if cloud is None:
                cloud = Cloud(args.auth_url, args.password)
                mark("token_ms")
            if "compute_ms" not in found:
                status, _, _ = request("GET", cloud.url("compute"), cloud.token, timeout=5)
                if status >= 500:
                    raise HTTPFailure(f"compute endpoint -> {status}")
                mark("compute_ms")
            services = cloud.call("GET", cloud.url("compute") + "/os-services",
                                  headers=nova_headers(), timeout=5).get("services", [])
            up = {s.get("host") for s in services
                  if s.get("binary") == "nova-compute" and s.get("state") == "up"
                  and s.get("status") == "enabled"}
            hyps = cloud.call("GET", cloud.url("compute") + "/os-hypervisors",
                              headers=nova_headers(), timeout=5).get("hypervisors", [])
            if len(up) >= args.hosts and len(hyps) >= args.hosts:
                mark("compute_up_ms")
                break
        except (OSError, HTTPFailure, KeyError, ValueError) as exc:
            if args.verbose:
                log(f"not ready: {exc}")
            if "token_ms" not in found:
                cloud = None
        time.sleep(0.1)
    keys = ("identity_ms", "token_ms", "compute_ms", "compute_up_ms")
    print("ready " + " ".join(f"{k}={found.get(k, 'timeout')}" for k in keys), flush=True)
    return 0 if "compute_up_ms" in found else 1


# --------------------------------------------------------------------------- boots


def ensure_flavor(cloud):
    nova = cloud.url("compute")
    name, ram, vcpus, disk = FLAVOR
    flavors = cloud.call("GET", nova + "/flavors/detail?is_public=None",
                         headers=nova_headers()).get("flavors", [])
    for f in flavors:
        if f["name"] == name:
            return f["id"]
    return cloud.call("POST", nova + "/flavors", headers=nova_headers(), body={"flavor": {
        "name": name, "ram": ram, "vcpus": vcpus, "disk": disk}})["flavor"]["id"]


def ensure_image(cloud):
    glance = cloud.url("image")
    listed = cloud.call("GET", glance + "/v2/images?name=" + IMAGE).get("images", [])
    for img in listed:
        if img.get("status") == "active":
            return img["id"]
    img = cloud.call("POST", glance + "/v2/images", want=(201,), body={
        "name": IMAGE, "disk_format": "raw", "container_format": "bare",
        "visibility": "public"})
    status, _, payload = request("PUT", f"{glance}/v2/images/{img['id']}/file", cloud.token,
                                 raw=bytes(1024 * 1024))
    if status != 204:
        raise HTTPFailure(f"image upload -> {status} {payload[:200]!r}")
    return img["id"]


def lift_quotas(cloud):
    nova = cloud.url("compute")
    cloud.call("PUT", f"{nova}/os-quota-sets/{cloud.project_id}", headers=nova_headers(),
               body={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})


def server_body(name, image, flavor):
    return {"server": {"name": name, "imageRef": image, "flavorRef": flavor,
                       "networks": "none"}}


def post_server(cloud, body):
    """(server id or None, seconds the POST took, error text)"""
    t = time.time()
    try:
        status, _, payload = request("POST", cloud.url("compute") + "/servers", cloud.token,
                                     body=body, headers=nova_headers())
    except OSError as exc:
        return None, time.time() - t, f"POST /servers: {exc}"
    took = time.time() - t
    if status != 202:
        return None, took, f"POST /servers -> {status} {payload[:200]!r}"
    return json.loads(payload)["server"]["id"], took, None


def summary(name, lat, posts, n, active, error, wall, extra=""):
    """p50/p99 over all N boots: a boot that failed or timed out counts as infinitely
    slow (printed as inf when a percentile lands on one); ok_* are over the ACTIVE ones."""
    timeouts = n - active - error
    parts = [f"{name} n={n} active={active} error={error} timeout={timeouts}"]
    ms = sorted(x * 1000 for x in lat)
    every = ms + [math.inf] * max(0, n - len(ms))
    fmt = lambda v: "inf" if v == math.inf else f"{v:.1f}"  # noqa: E731
    if every:
        parts.append(f"p50_ms={fmt(percentile(every, 50))} p99_ms={fmt(percentile(every, 99))}")
    else:
        parts.append("p50_ms=n/a p99_ms=n/a")
    if ms:
        parts.append(f"ok_p50_ms={percentile(ms, 50):.1f} ok_p99_ms={percentile(ms, 99):.1f} "
                     f"mean_ms={statistics.mean(ms):.1f} max_ms={max(ms):.1f}")
    else:
        parts.append("ok_p50_ms=n/a ok_p99_ms=n/a mean_ms=n/a max_ms=n/a")
    if posts:
        pm = [x * 1000 for x in posts]
        parts.append(f"post_p50_ms={percentile(pm, 50):.1f} post_p99_ms={percentile(pm, 99):.1f}")
    parts.append(f"wall_s={wall:.1f}")
    if extra:
        parts.append(extra)
    print(" ".join(parts), flush=True)


def boot_seq(cloud, args, image, flavor):
    nova = cloud.url("compute")
    lat, posts, ids = [], [], []
    active = error = 0
    errors = []
    t_start = time.time()
    for i in range(args.seq):
        t0 = time.time()
        sid, took, err = post_server(cloud, server_body(f"bench-seq-{i:04d}", image, flavor))
        posts.append(took)
        if sid is None:
            error += 1
            errors.append(err)
            continue
        ids.append(sid)
        st = None
        while time.time() - t0 < args.boot_timeout:
            status, _, payload = request("GET", f"{nova}/servers/{sid}", cloud.token,
                                         headers=nova_headers())
            if status == 200:
                st = json.loads(payload)["server"]["status"]
                if st == "ACTIVE":
                    lat.append(time.time() - t0)
                    active += 1
                    break
                if st == "ERROR":
                    error += 1
                    break
            time.sleep(args.poll)
        if (i + 1) % 10 == 0:
            log(f"seq: {i + 1}/{args.seq} booted, last {(time.time() - t0) * 1000:.0f} ms")
    for err in errors[:5]:
        log(f"seq: {err}")
    summary("boot_seq", lat, posts, args.seq, active, error, time.time() - t_start)
    return ids


def boot_conc(cloud, args, image, flavor):
    nova = cloud.url("compute")
    n = args.conc
    barrier = threading.Barrier(n)
    sent = {}      # id -> POST sent time
    posts, errors = [], []
    lock = threading.Lock()

    def worker(i):
        body = server_body(f"bench-conc-{i:04d}", image, flavor)
        barrier.wait()
        t0 = time.time()
        sid, took, err = post_server(cloud, body)
        with lock:
            posts.append(took)
            if sid:
                sent[sid] = t0
            else:
                errors.append(err)

    t_start = time.time()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    done_at, failed = {}, set()
    cycles = []
    while True:
        alive = any(t.is_alive() for t in threads)
        tc = time.time()
        try:
            status, _, payload = request(
                "GET", f"{nova}/servers/detail?name=bench-conc-&limit=1000", cloud.token,
                headers=nova_headers())
        except OSError as exc:
            status, payload = None, str(exc).encode()
        now = time.time()
        cycles.append(now - tc)
        if status == 200:
            for srv in json.loads(payload).get("servers", []):
                sid = srv["id"]
                if srv["status"] == "ACTIVE" and sid not in done_at:
                    done_at[sid] = now
                elif srv["status"] == "ERROR":
                    failed.add(sid)
        elif len(cycles) < 5 or len(cycles) % 100 == 0:
            log(f"conc: GET /servers/detail -> {status} {payload[:200]!r}")
        with lock:
            pending = [s for s in sent if s not in done_at and s not in failed]
        if not alive and not pending:
            break
        if now - t_start > args.conc_timeout:
            log(f"conc: {len(pending)} server(s) not ACTIVE after {args.conc_timeout} s")
            break
        if len(cycles) % 40 == 0:
            log(f"conc: {len(done_at)}/{n} ACTIVE, {len(failed)} ERROR, "
                f"{len(sent)} POSTs answered after {now - t_start:.1f} s")
        time.sleep(args.poll)
    for t in threads:
        t.join(timeout=TIMEOUT)
    for err in errors[:5]:
        log(f"conc: {err}")
    lat = [done_at[s] - sent[s] for s in done_at if s in sent]
    error = len(errors) + len(failed - set(done_at))
    summary("boot_conc", lat, posts, n, len(lat), error, time.time() - t_start,
            f"poll_cycle_ms={statistics.mean(cycles) * 1000 + args.poll * 1000:.1f}")
    return list(sent)


def delete_servers(cloud, ids, name, args):
    """DELETE the servers, DELETE_WINDOW at a time, each waited for until GET answers 404.
    A DELETE that fails (5xx, connection error), or a server still there 30 s after its
    DELETE, gets the DELETE again (up to 5 times)."""
    nova = cloud.url("compute")
    t_start = time.time()
    todo = [(sid, 0) for sid in ids]
    inflight = {}  # id -> (DELETE sent at, attempts)
    gone = retried = 0
    deadline = t_start + args.delete_timeout

    def send(sid, attempts):
        nonlocal retried
        retried += attempts > 0
        try:
            status, _, payload = request("DELETE", f"{nova}/servers/{sid}", cloud.token,
                                         headers=nova_headers())
        except OSError as exc:
            status, payload = None, str(exc).encode()
        if status in (202, 204, 404):
            inflight[sid] = (time.time(), attempts + 1)
        else:
            if attempts < 3:
                log(f"{name}: DELETE {sid} -> {status} {payload[:200]!r}")
            if attempts + 1 < 5:
                todo.append((sid, attempts + 1))

    while (todo or inflight) and time.time() < deadline:
        while todo and len(inflight) < args.delete_window:
            send(*todo.pop(0))
        for sid, (sent, attempts) in list(inflight.items()):
            try:
                status, _, _ = request("GET", f"{nova}/servers/{sid}", cloud.token,
                                       headers=nova_headers())
            except OSError:
                continue
            if status == 404:
                del inflight[sid]
                gone += 1
            elif time.time() - sent > 30 and attempts < 5:
                del inflight[sid]
                send(sid, attempts)
        time.sleep(args.poll)
    print(f"{name} n={len(ids)} gone={gone} retried={retried} "
          f"wall_s={time.time() - t_start:.1f}", flush=True)


def cmd_boots(args):
    cloud = Cloud(args.auth_url, args.password)
    flavor = ensure_flavor(cloud)
    image = ensure_image(cloud)
    lift_quotas(cloud)
    log(f"flavor {flavor}, image {image}; compute at {cloud.url('compute')}")
    if args.seq:
        ids = boot_seq(cloud, args, image, flavor)
        delete_servers(cloud, ids, "delete_seq", args)
    if args.conc:
        ids = boot_conc(cloud, args, image, flavor)
        delete_servers(cloud, ids, "delete_conc", args)
    return 0


# --------------------------------------------------------------------------- placement

INVENTORY = {"VCPU": {"total": 32, "allocation_ratio": 4.0},
             "MEMORY_MB": {"total": 131072, "allocation_ratio": 1.0},
             "DISK_GB": {"total": 2048, "allocation_ratio": 1.0}}
QUERY = "resources=VCPU:1,MEMORY_MB:512,DISK_GB:1"


def cmd_placement(args):
    cloud = Cloud(args.auth_url, args.password)
    pl = cloud.url("placement")
    mv = {"OpenStack-API-Version": f"placement {args.mv}"}
    have = {rp["name"] for rp in cloud.call("GET", pl + "/resource_providers",
                                            headers=mv).get("resource_providers", [])}
    t0 = time.time()
    created = 0
    for i in range(args.rps):
        name = f"bench-rp-{i:05d}"
        if name in have:
            continue
        rp_uuid = str(uuid.uuid4())
        status, _, payload = request("POST", pl + "/resource_providers", cloud.token,
                                     body={"name": name, "uuid": rp_uuid}, headers=mv)
        if status not in (200, 201):
            raise HTTPFailure(f"POST /resource_providers -> {status} {payload[:300]!r}")
        if status == 200 and payload:  # microversion >= 1.20 returns the provider
            gen = json.loads(payload)["generation"]
        else:
            status, _, payload = request("GET", f"{pl}/resource_providers/{rp_uuid}",
                                         cloud.token, headers=mv)
            gen = jbody(status, payload, "GET /resource_providers/{uuid}")["generation"]
        cloud.call("PUT", f"{pl}/resource_providers/{rp_uuid}/inventories", headers=mv,
                   body={"resource_provider_generation": gen, "inventories": INVENTORY})
        created += 1
        if created % 200 == 0:
            log(f"placement: {created} providers created")
    wall = time.time() - t0
    print(f"rp_create n={created} wall_s={wall:.1f} "
          f"per_s={created / wall if wall > 0 and created else 0:.1f}", flush=True)
    url = f"{pl}/allocation_candidates?{QUERY}"
    times, errors, ncand, nbytes = [], 0, None, None
    for i in range(args.warmup + args.requests):
        t = time.time()
        status, _, payload = request("GET", url, cloud.token, headers=mv)
        dt = time.time() - t
        if status != 200:
            errors += 1
            if errors <= 3:
                log(f"allocation_candidates -> {status} {payload[:200]!r}")
            continue
        if i >= args.warmup:
            times.append(dt)
        if ncand is None:
            ncand = len(json.loads(payload).get("allocation_requests", []))
            nbytes = len(payload)
    if times:
        ms = [x * 1000 for x in times]
        stats = (f"p50_ms={percentile(ms, 50):.2f} p99_ms={percentile(ms, 99):.2f} "
                 f"mean_ms={statistics.mean(ms):.2f} max_ms={max(ms):.2f}")
    else:
        stats = "p50_ms=n/a p99_ms=n/a mean_ms=n/a max_ms=n/a"
    print(f"alloc_candidates n={len(times)} mv={args.mv} candidates={ncand} bytes={nbytes} "
          f"{stats} errors={errors}", flush=True)
    return 0 if times and not errors else 1


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("ready", "boots", "placement"):
        sp = sub.add_parser(name)
        sp.add_argument("auth_url")
        sp.add_argument("password")
        sp.add_argument("--verbose", action="store_true")
        if name == "ready":
            sp.add_argument("--t0-ns", type=int, required=True)
            sp.add_argument("--hosts", type=int, default=1)
            sp.add_argument("--timeout", type=float, default=300)
            sp.add_argument("--pid", type=int, help="give up when this process exits")
        elif name == "boots":
            sp.add_argument("--seq", type=int, default=100)
            sp.add_argument("--conc", type=int, default=100)
            sp.add_argument("--poll", type=float, default=0.05)
            sp.add_argument("--boot-timeout", type=float, default=120)
            sp.add_argument("--conc-timeout", type=float, default=300)
            sp.add_argument("--delete-window", type=int, default=5)
            sp.add_argument("--delete-timeout", type=float, default=300)
        else:
            sp.add_argument("--rps", type=int, default=1000)
            sp.add_argument("--requests", type=int, default=200)
            sp.add_argument("--warmup", type=int, default=5)
            sp.add_argument("--mv", default="1.39")
    args = p.parse_args(argv)
    try:
        return {"ready": cmd_ready, "boots": cmd_boots, "placement": cmd_placement}[args.cmd](args)
    except HTTPFailure as exc:
        log(f"FAILED: {exc}")
        print(f"{args.cmd} FAILED {exc}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
