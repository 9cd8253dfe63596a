#!/usr/bin/env python3
"""Summarize a Tempest (stestr) subunit v2 stream.

    stestr last --subunit > run.subunit
    $VENV/bin/python scripts/tempest_summary.py run.subunit --group identity [--expect LIST [--only]]

Prints one line per failed test (name and the last line of its traceback), one per
skipped test (with tempest's reason), then the
summary line `tempest <group>: N passed, N failed, N skipped`. With --expect (a file of
test ids, one per line), a listed test that produced no result counts as failed, unless
its class already failed in setUpClass (then that one failure stands for the class).

Exit status: 0 when nothing failed, 1 when something failed, 2 when no test ran at all.
"""

import argparse
import re
import sys

import subunit
import testtools

PASSED = {"success", "xfail"}
SKIPPED = {"skip"}
IGNORED = {"exists", "inprogress", None}  # listing / progress events, not results


def strip_attrs(test_id):
    """'a.b.C.test_x[id-...,smoke]' -> 'a.b.C.test_x'"""
    return re.sub(r"\[.*\]$", "", test_id)


def class_of(test_id):
    """The test class of a test id or of a 'setUpClass (a.b.C)' fixture id."""
    m = re.match(r"^\w+ \((.+)\)$", test_id)
    return m.group(1) if m else strip_attrs(test_id).rsplit(".", 1)[0]


def reason(test):
    """Last non-empty line of the traceback (or the skip reason)."""
    for name in ("traceback", "reason"):
        detail = test["details"].get(name)
        if detail is None:
            continue
        text = b"".join(bytes(chunk) for chunk in detail.iter_bytes()).decode("utf-8", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1][:300]
    return ""


def read_results(path):
    results = {}

    def on_test(test):
        if test["status"] not in IGNORED:
            results[test["id"]] = test

    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        sink = testtools.StreamToDict(on_test)
        sink.startTestRun()
        try:
            case.run(sink)
        finally:
            sink.stopTestRun()
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("subunit")
    p.add_argument("--group", required=True)
    p.add_argument("--expect", help="file of test ids that must all have run")
    p.add_argument("--exclude", help="the run's exclude list (regexes): expected tests it "
                                     "names are reported as EXCLUDED, not as failed")
    p.add_argument("--only", action="store_true",
                   help="with --expect: count only the expected tests (and their classes' "
                        "setUpClass results), e.g. an interop list checked within a full run")
    args = p.parse_args(argv)

    results = read_results(args.subunit)
    if args.only and args.expect:
        with open(args.expect, encoding="utf-8") as fh:
            wanted = {ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")}
        classes = {class_of(n) for n in wanted}
        results = {
            k: t for k, t in results.items()
            if strip_attrs(k) in wanted
            or (re.match(r"^\w+ \(", k) and class_of(k) in classes)
        }
    passed = [t for t in results.values() if t["status"] in PASSED]
    skipped = [t for t in results.values() if t["status"] in SKIPPED]
    failed = [t for t in results.values() if t["status"] not in PASSED | SKIPPED]

    missing = []
    excluded = []
    patterns = []
    if args.exclude:
        with open(args.exclude, encoding="utf-8") as fh:
            patterns = [re.compile(ln.strip()) for ln in fh if ln.strip() and not ln.startswith("#")]
    if args.expect:
        with open(args.expect, encoding="utf-8") as fh:
            expected = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        ran = {strip_attrs(i) for i in results}
        class_failed = {class_of(t["id"]) for t in failed}
        class_skipped = {class_of(t["id"]) for t in skipped}
        for name in expected:
            if name in ran or class_of(name) in class_failed | class_skipped:
                continue
            if any(pat.search(name) for pat in patterns):
                excluded.append(name)
                continue
            missing.append(name)

    for test in sorted(failed, key=lambda t: t["id"]):
        print(f"FAILED {strip_attrs(test['id'])} ({test['status']}): {reason(test)}")
    for name in missing:
        print(f"FAILED {name} (not run: no such test, or not selected)")
    for name in excluded:
        print(f"EXCLUDED {name} (scripts/tempest-exclude.txt says why)")
    for test in sorted(skipped, key=lambda t: t["id"]):
        print(f"SKIPPED {strip_attrs(test['id'])}: {reason(test)}")
    n_failed = len(failed) + len(missing)
    tail = f", {len(excluded)} excluded" if excluded else ""
    print(f"tempest {args.group}: {len(passed)} passed, {n_failed} failed, "
          f"{len(skipped)} skipped{tail}")
    if not results:
        print(f"tempest {args.group}: no test results at all", file=sys.stderr)
        return 2
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
