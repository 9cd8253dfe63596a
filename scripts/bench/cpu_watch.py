#!/usr/bin/env python3
"""CPU accounting around one load run (adapted from shared/peers/bench/cpu_watch.py
so the ferrostack half of scripts/bench-identity.sh works without ../shared).

  cpu_watch.py --quiet-wait MAX_S [THRESH]
      wait until the whole machine is busy < THRESH cores (default 0.10) over a
      3 s window; gives up after MAX_S seconds (prints NOT QUIET, exit 0).

  cpu_watch.py --target 'P:1234 G:5678 ...' OUTFILE -- CMD...
      run CMD (its output passes through) and append one line to OUTFILE:
          wall_s target_cores cmd_cores foreign_cores served
      target = processes with pid P (all threads of that process) or in process
      group G (e.g. a uwsgi master + workers started with setsid);
      cmd = CMD and its children (wrk); foreign = everything else the machine
      did meanwhile (whole-machine busy time from /proc/stat minus target and
      cmd), i.e. load from other users that distorts the measurement.
      served = requests counted by the uwsgi stats sockets listed
      (colon-separated) in $UWSGI_STATS, -1 if none.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import time

HZ = os.sysconf('SC_CLK_TCK')


def machine_busy_ticks():
    with open('/proc/stat') as f:
        v = list(map(int, f.readline().split()[1:]))
    idle = v[3] + v[4]
    return sum(v[:8]) - idle


def busy_cores(window):
    b1 = machine_busy_ticks()
    time.sleep(window)
    return (machine_busy_ticks() - b1) / HZ / window


def target_ticks(pids, pgids):
    total = 0
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(')') + 2:].split()
        # rest[2]=pgrp  rest[11]=utime  rest[12]=stime (whole process, all threads)
        if int(d) in pids or int(rest[2]) in pgids:
            total += int(rest[11]) + int(rest[12])
    return total


def served():
    total, ok = 0, False
    for path in filter(None, os.environ.get('UWSGI_STATS', '').split(':')):
        try:
            c = socket.socket(socket.AF_UNIX)
            c.settimeout(5)
            c.connect(path)
            buf = b''
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
            c.close()
            total += sum(w.get('requests', 0) for w in json.loads(buf)['workers'])
            ok = True
        except (OSError, ValueError, KeyError):
            continue
    return total if ok else None


def main():
    if sys.argv[1] == '--quiet-wait':
        max_s = float(sys.argv[2])
        thresh = float(sys.argv[3]) if len(sys.argv) > 3 else 0.10
        t0 = time.time()
        while True:
            b = busy_cores(3)
            if b < thresh:
                print(f'quiet: {b:.2f} cores busy (waited {time.time() - t0:.0f}s)')
                return 0
            if time.time() - t0 > max_s:
                print(f'NOT QUIET after {max_s:.0f}s: {b:.2f} cores busy; proceeding')
                return 0

    assert sys.argv[1] == '--target'
    pids, pgids = set(), set()
    for item in sys.argv[2].split():
        kind, _, num = item.partition(':')
        (pids if kind == 'P' else pgids).add(int(num))
    outfile = sys.argv[3]
    cmd = sys.argv[sys.argv.index('--') + 1:]
    s0 = served()
    m0, t0 = machine_busy_ticks(), target_ticks(pids, pgids)
    w0 = time.time()
    rc = subprocess.call(cmd)
    wall = time.time() - w0
    m1, t1 = machine_busy_ticks(), target_ticks(pids, pgids)
    s1 = served()
    nserved = (s1 - s0) if (s0 is not None and s1 is not None) else -1
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd_cores = (ru.ru_utime + ru.ru_stime) / wall
    target_cores = (t1 - t0) / HZ / wall
    foreign_cores = max(0.0, (m1 - m0) / HZ / wall - target_cores - cmd_cores)
    with open(outfile, 'a') as f:
        f.write(f'{wall:.1f} {target_cores:.2f} {cmd_cores:.2f} {foreign_cores:.2f} {nserved}\n')
    return rc


if __name__ == '__main__':
    sys.exit(main())
