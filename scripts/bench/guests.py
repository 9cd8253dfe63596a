#!/usr/bin/env python3
"""Real-guest boot benchmark against a running ferrostack (QEMU driver).

usage: guests.py URL ADMIN_PASSWORD INSTANCES_PATH FERRO_PID KERNEL RAMDISK ROOT N

Uploads the guest as Glance's AKI/ARI/AMI trio (kernel_id/ramdisk_id image
properties, booted with -kernel as the data-plane prototype boots it), then:
  * first boot (the host downloads and caches the images) and second boot
    (overlay only) of one guest;
  * N guests created at once;
for each guest: create -> ACTIVE (API), create -> QEMU exec (the pid file
QEMU writes at start: the host-side overhead of the API call), create -> the
`INSTANCE-UUID <uuid>` line on the serial console (read from the guest's
console.log; the guest reads its identity from the config drive).
Prints one `key value` line per figure; stdlib only.
"""
import base64
import json
import os
import sys
import threading
import time
import urllib.request

url, password, inst, ferro_pid = sys.argv[1:5]
kernel, ramdisk, root = sys.argv[5:8]
n = int(sys.argv[8])


def call(method, path, token=None, body=None, raw=None, headers=None):
    h = {"Content-Type": "application/json"}
    if raw is not None:
        h["Content-Type"] = "application/octet-stream"
    if token:
        h["X-Auth-Token"] = token
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=120) as r:
        text = r.read()
        return r.status, r.headers, (json.loads(text) if text else None)


_, hdrs, _ = call("POST", "/identity/v3/auth/tokens", body={"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
tok = hdrs["X-Subject-Token"]
NOVA = {"OpenStack-API-Version": "compute 2.79"}


def image(name, path, fmt, cfmt, props=None):
    body = {"name": name, "disk_format": fmt, "container_format": cfmt, "visibility": "public"}
    body.update(props or {})
    _, _, img = call("POST", "/image/v2/images", tok, body)
    with open(path, "rb") as f:
        call("PUT", f"/image/v2/images/{img['id']}/file", tok, raw=f.read())
    return img["id"]


k = image("bench-kernel", kernel, "aki", "aki")
r = image("bench-ramdisk", ramdisk, "ari", "ari")
ami = image("bench-root", root, "qcow2", "bare",
            {"kernel_id": k, "ramdisk_id": r, "os_command_line": "root=/dev/vda console=ttyS0"})


def wait_console(uuid, t0, out, key):
    log = os.path.join(inst, uuid, "console.log")
    want = f"INSTANCE-UUID {uuid}".encode()
    while time.monotonic() - t0 < 300:
        try:
            with open(log, "rb") as f:
                if want in f.read():
                    out[key] = time.monotonic() - t0
                    return
        except OSError:
            pass
        time.sleep(0.02)


def boot(name, res):
    t0 = time.monotonic()
    wall0 = time.time()
    _, _, b = call("POST", "/compute/v2.1/servers", tok, {"server": {
        "name": name, "imageRef": ami, "flavorRef": "1", "networks": "none",
        "config_drive": True}}, headers=NOVA)
    uuid = b["server"]["id"]
    res["uuid"] = uuid
    watcher = threading.Thread(target=wait_console, args=(uuid, t0, res, "uuid_line"))
    watcher.start()
    while time.monotonic() - t0 < 300:
        _, _, s = call("GET", f"/compute/v2.1/servers/{uuid}", tok, headers=NOVA)
        st = s["server"]["status"]
        if st == "ACTIVE":
            res["active"] = time.monotonic() - t0
            break
        if st == "ERROR":
            res["error"] = s["server"].get("fault")
            break
        time.sleep(0.02)
    pidfile = os.path.join(inst, uuid, "qemu.pid")
    if os.path.exists(pidfile):
        res["qemu_exec"] = os.stat(pidfile).st_mtime - wall0
    watcher.join()


def delete(uuid):
    call("DELETE", f"/compute/v2.1/servers/{uuid}", tok, headers=NOVA)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        try:
            call("GET", f"/compute/v2.1/servers/{uuid}", tok, headers=NOVA)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return
        time.sleep(0.1)


def fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


for label in ("first_boot", "second_boot"):
    res = {}
    boot(f"bench-{label}", res)
    for k2 in ("active", "qemu_exec", "uuid_line", "error"):
        if k2 in res:
            print(f"{label}.{k2}_s {fmt(res[k2])}" if k2 != "error" else f"{label}.error {res[k2]}")
    delete(res["uuid"])

results = [{} for _ in range(n)]
threads = [threading.Thread(target=boot, args=(f"bench-c{i}", results[i])) for i in range(n)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
for key in ("active", "qemu_exec", "uuid_line"):
    vals = sorted(r[key] for r in results if key in r)
    if vals:
        print(f"concurrent{n}.{key}_s min {vals[0]:.3f} max {vals[-1]:.3f} ({len(vals)} of {n})")
errors = [r["error"] for r in results if "error" in r]
if errors:
    print(f"concurrent{n}.errors {errors}")
with open(f"/proc/{ferro_pid}/status") as f:
    rss = [line.split()[1] for line in f if line.startswith("VmRSS")][0]
print(f"ferrostack.rss_mib_with_{n}_guests {int(rss) / 1024:.1f}")
qemu_rss = []
for r in results:
    try:
        pid = open(os.path.join(inst, r["uuid"], "qemu.pid")).read().strip()
        with open(f"/proc/{pid}/status") as f:
            qemu_rss.append(int([l.split()[1] for l in f if l.startswith("VmRSS")][0]) / 1024)
    except (OSError, KeyError, IndexError):
        pass
if qemu_rss:
    print(f"qemu.rss_mib_per_guest min {min(qemu_rss):.0f} max {max(qemu_rss):.0f}")
for r in results:
    if "uuid" in r:
        delete(r["uuid"])
