#!/usr/bin/env python3
"""Cold start: time from exec of CMD to the first HTTP 200 on URL, then the
resident memory of the started process group after IDLE seconds without
requests, then stop it (SIGTERM to the process group it was started in, SIGKILL
after 20 s). Used for both ferrostack and Keystone (uwsgi) so both get exactly
the same method.

  coldstart.py URL IDLE_S LOGFILE -- CMD...

Prints one line:  ms_to_first_200 rss_MiB pss_MiB nprocs
(or 'FAILED <reason>' and exit 1). CMD runs in its own session (setsid), so
the process group id is CMD's pid and only that group is signalled.
"""
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit


def group_mem(pgid):
    rss = pss = n = 0
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                s = f.read()
            if int(s[s.rindex(')') + 2:].split()[2]) != pgid:
                continue
            with open(f'/proc/{d}/status') as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        rss += int(line.split()[1])
            try:
                with open(f'/proc/{d}/smaps_rollup') as f:
                    for line in f:
                        if line.startswith('Pss:'):
                            pss += int(line.split()[1])
            except OSError:
                pass
            n += 1
        except (OSError, ValueError):
            continue
    return rss / 1024, pss / 1024, n


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + 20
    while time.time() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def main():
    url, idle, logfile = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    cmd = sys.argv[sys.argv.index('--') + 1:]
    u = urlsplit(url)
    path = u.path or '/'
    try:  # someone else answering on the port would fake the measurement
        socket.create_connection((u.hostname, u.port), timeout=1).close()
        print(f'FAILED port {u.port} is already in use by another process')
        return 1
    except OSError:
        pass
    with open(logfile, 'ab') as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = None
        while True:
            if proc.poll() is not None:
                print(f'FAILED exited with {proc.returncode} before answering; see {logfile}')
                return 1
            if time.monotonic() - t0 > 120:
                print('FAILED no HTTP 200 within 120 s')
                return 1
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                c.request('GET', path)
                r = c.getresponse()
                r.read()
                c.close()
                status = r.status
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        ms = (time.monotonic() - t0) * 1000
        time.sleep(idle)
        rss, pss, n = group_mem(proc.pid)
        print(f'{ms:.0f} {rss:.1f} {pss:.1f} {n}')
        return 0
    finally:
        stop(proc)


if __name__ == '__main__':
    sys.exit(main())
