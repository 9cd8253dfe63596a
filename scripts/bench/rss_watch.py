#!/usr/bin/env python3
"""Resident memory and CPU of one server process while a command runs (used by
scripts/bench-image.sh around the 2 GiB curl upload / download).

  rss_watch.py PID OUTFILE [INTERVAL_S] -- CMD...

Runs CMD (its stdout/stderr pass through), polls VmRSS of PID in
/proc/PID/status every INTERVAL_S seconds (default 0.1) from just before CMD
starts until just after it ends, and appends one line to OUTFILE:

    wall_s rss_before_KiB rss_peak_KiB rss_after_KiB samples srv_cores cmd_cores foreign_cores hwm_KiB

srv = CPU used by PID (all threads) during the run, cmd = CMD and its
children (curl), foreign = everything else the machine did meanwhile (kernel
writeback threads and softirq time count here); hwm = VmHWM of PID after the
run (its lifetime peak RSS, catches spikes shorter than the interval). Every sample ("t_s rss_KiB") goes to
OUTFILE.samples (appended, one block per run, preceded by '# CMD').
Exit status is CMD's.
"""
import os
import resource
import subprocess
import sys
import threading
import time

HZ = os.sysconf('SC_CLK_TCK')


def rss_kib(pid, key='VmRSS:'):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def proc_ticks(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            s = f.read()
        rest = s[s.rindex(')') + 2:].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, ValueError):
        return 0


def machine_busy_ticks():
    with open('/proc/stat') as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v[:8]) - (v[3] + v[4])


def main():
    pid, outfile = int(sys.argv[1]), sys.argv[2]
    sep = sys.argv.index('--')
    interval = float(sys.argv[3]) if sep > 3 else 0.1
    cmd = sys.argv[sep + 1:]
    samples = []
    stop = threading.Event()
    t0 = time.monotonic()

    def poll():
        while True:
            samples.append((time.monotonic() - t0, rss_kib(pid)))
            if stop.wait(interval):
                break

    before = rss_kib(pid)
    m0, p0 = machine_busy_ticks(), proc_ticks(pid)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    w0 = time.monotonic()
    rc = subprocess.call(cmd)
    wall = time.monotonic() - w0
    stop.set()
    th.join()
    after = rss_kib(pid)
    hwm = rss_kib(pid, 'VmHWM:')
    m1, p1 = machine_busy_ticks(), proc_ticks(pid)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd_cores = (ru.ru_utime + ru.ru_stime) / wall
    srv_cores = (p1 - p0) / HZ / wall
    foreign = max(0.0, (m1 - m0) / HZ / wall - srv_cores - cmd_cores)
    peak = max([before, after] + [r for _, r in samples])
    with open(outfile, 'a') as f:
        f.write(f'{wall:.2f} {before} {peak} {after} {len(samples)} '
                f'{srv_cores:.2f} {cmd_cores:.2f} {foreign:.2f} {hwm}\n')
    with open(outfile + '.samples', 'a') as f:
        f.write('# ' + ' '.join(cmd) + '\n')
        f.writelines(f'{t:.2f} {r}\n' for t, r in samples)
    return rc


if __name__ == '__main__':
    sys.exit(main())
