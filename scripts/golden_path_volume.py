"""The Block Storage golden path with the real `openstack` CLI (see golden-path-volume.sh)."""
import os
import sys
import time

from golden_common import Run, expect

OSC, WORK = sys.argv[1], sys.argv[2]
run = Run(OSC, timeout=300)
osc, step = run.osc, run.step
BACKEND = os.path.join(WORK, "data", "volumes")


def wait_status(kind, name, want, timeout=60):
    """Polls `openstack <kind> show` until status is `want`."""
    deadline = time.time() + timeout
    while True:
        cmd = ["volume", "snapshot"] if kind == "snapshot" else [kind]
        st = osc(*cmd, "show", name, "-f", "json")["status"]
        if st == want:
            return st
        if st.startswith("error") or time.time() > deadline:
            raise AssertionError(f"{kind} {name} is {st}, waited for {want}")
        time.sleep(0.5)


def consistent():
    """The backend holds one file per live volume and snapshot, nothing else."""
    vols = {v["ID"] for v in osc("volume", "list", "-f", "json")}
    snaps = {s["ID"] for s in osc("volume", "snapshot", "list", "-f", "json")}
    want = {f"volume-{v}" for v in vols} | {f"snapshot-{s}" for s in snaps}
    # The backend's own directories (.images: the agent's scratch space for
    # image data, .exports) hold no volume.
    have = {n for n in os.listdir(BACKEND) if not n.startswith(".")} if os.path.isdir(BACKEND) else set()
    expect(have == want, f"backend files {sorted(have)} != records {sorted(want)}")
    scratch = os.path.join(BACKEND, ".images")
    left = os.listdir(scratch) if os.path.isdir(scratch) else []
    expect(not left, f"image scratch files left: {left}")


def check(name):
    step(f"backend consistent after {name}", consistent)


raw = os.path.join(WORK, "cirros.raw")
with open(raw, "wb") as f:
    f.write(b"\0" * (1 << 20))
step("image create cirros", lambda: osc("image", "create", "--disk-format", "raw", "--container-format",
                                         "bare", "--file", raw, "--public", "cirros", "-f", "json"))
step("volume create --size 1 v1", lambda: osc("volume", "create", "--size", "1", "v1", "-f", "json"))
step("v1 available", lambda: wait_status("volume", "v1", "available"))
check("volume create")
step("volume create --image cirros --size 1 bootable",
     lambda: osc("volume", "create", "--image", "cirros", "--size", "1", "bootable", "-f", "json"))
step("bootable available", lambda: wait_status("volume", "bootable", "available"))
step("bootable is bootable", lambda: expect(
    str(osc("volume", "show", "bootable", "-f", "json")["bootable"]).lower() == "true", "not bootable"))
check("volume create --image")
step("volume snapshot create --volume v1 snap1",
     lambda: osc("volume", "snapshot", "create", "--volume", "v1", "snap1", "-f", "json"))
step("snap1 available", lambda: wait_status("snapshot", "snap1", "available"))
check("snapshot create")
step("volume create --snapshot snap1 v2",
     lambda: osc("volume", "create", "--snapshot", "snap1", "v2", "-f", "json"))
step("v2 available", lambda: wait_status("volume", "v2", "available"))
check("volume create --snapshot")
step("server create s1 --wait", lambda: osc("server", "create", "--flavor", "m1.tiny", "--image", "cirros",
                                            "--nic", "none", "--wait", "s1", "-f", "json"))
step("server add volume s1 v1", lambda: osc("server", "add", "volume", "s1", "v1", "-f", "json"))
step("v1 in-use", lambda: wait_status("volume", "v1", "in-use"))
step("server show lists v1", lambda: expect(
    any(a["id"] == osc("volume", "show", "v1", "-f", "json")["id"]
        for a in osc("server", "show", "s1", "-f", "json")["volumes_attached"]), "v1 not attached"))
step("server volume update --delete-on-termination s1 v1 (compute 2.85)", lambda: osc(
    "--os-compute-api-version", "2.85", "server", "volume", "update", "--delete-on-termination", "s1", "v1"))


def attachment_row():
    """`server volume list` at 2.89: v1 deleted with s1, its Block Storage attachment and mapping ids."""
    v1 = osc("volume", "show", "v1", "-f", "json")
    rows = osc("--os-compute-api-version", "2.89", "server", "volume", "list", "s1", "-f", "json")
    row = next(r for r in rows if r["Volume ID"] == v1["id"])
    expect(row["Delete On Termination?"] is True, f"delete_on_termination not set: {row}")
    expect(row["Attachment ID"] == v1["attachments"][0]["attachment_id"], f"attachment id: {row}")
    expect(len(row["BlockDeviceMapping UUID"] or "") == 36, f"no bdm_uuid: {row}")


step("server volume list s1 (compute 2.89): delete on termination, attachment id, bdm uuid", attachment_row)
step("server remove volume s1 v1", lambda: osc("server", "remove", "volume", "s1", "v1"))
step("v1 available again", lambda: wait_status("volume", "v1", "available"))
step("volume set --size 2 v1", lambda: osc("volume", "set", "--size", "2", "v1"))
step("v1 extended", lambda: (wait_status("volume", "v1", "available"), expect(
    osc("volume", "show", "v1", "-f", "json")["size"] == 2, "size is not 2")))
check("extend")
step("server create --volume bootable s2 --wait (boot from volume)",
     lambda: osc("server", "create", "--flavor", "m1.tiny", "--volume", "bootable", "--nic", "none",
                 "--wait", "s2", "-f", "json"))
step("bootable in-use by s2", lambda: wait_status("volume", "bootable", "in-use"))
step("server delete s2 --wait", lambda: osc("server", "delete", "--wait", "s2"))
step("bootable available after s2", lambda: wait_status("volume", "bootable", "available"))
step("server delete s1 --wait", lambda: osc("server", "delete", "--wait", "s1"))
step("volume delete v2", lambda: osc("volume", "delete", "v2"))
step("volume snapshot delete snap1", lambda: osc("volume", "snapshot", "delete", "snap1"))
step("volume delete v1 bootable", lambda: osc("volume", "delete", "v1", "bootable"))


def all_gone():
    deadline = time.time() + 30
    while osc("volume", "list", "-f", "json") or osc("volume", "snapshot", "list", "-f", "json"):
        if time.time() > deadline:
            raise AssertionError("volumes or snapshots left")
        time.sleep(0.5)


step("no volumes or snapshots left", all_gone)
check("deletes")
run.finish("golden-path-volume")
