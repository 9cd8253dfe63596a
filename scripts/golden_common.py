"""What the golden-path scripts share: run the real `openstack` CLI, count
steps as `ok - ...` / `not ok - ...`, and print the summary line."""
import json
import subprocess
import sys
import time


class Run:
    def __init__(self, osc_path, timeout=300):
        self.osc_path = osc_path
        self.timeout = timeout
        self.passed = 0
        self.failed = 0

    def osc(self, *args, check=True):
        """`openstack <args>`; parsed JSON when it prints JSON."""
        print("$ openstack " + " ".join(args), flush=True)
        p = subprocess.run([self.osc_path, *args], capture_output=True, text=True,
                           timeout=self.timeout)
        out = p.stdout.strip()
        if out:
            print(out)
        if p.stderr.strip():
            print(p.stderr.strip())
        if check and p.returncode != 0:
            raise RuntimeError(f"exit status {p.returncode}")
        return json.loads(out) if out.startswith(("{", "[")) else out

    def step(self, name, fn):
        t0 = time.monotonic()
        took = lambda: f"({time.monotonic() - t0:.0f} s)"  # noqa: E731
        try:
            r = fn()
            print(f"ok - {name} {took()}", flush=True)
            self.passed += 1
            return r
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            print(f"not ok - {name} {took()}: {e}", flush=True)
            self.failed += 1
            return None

    def finish(self, label):
        print(f"{label}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
