#!/usr/bin/env python3
"""Create N small images through the Glance v2 API (stdlib only), the same way
for ferrostack and for real Glance (scripts/bench-image.sh).

  TOKEN=... load_images.py BASE_URL N [ACTIVE_EVERY]

BASE_URL is the image endpoint without /v2 (http://127.0.0.1:PORT/image for
ferrostack, http://127.0.0.1:9292 for Glance). Image i is named
bench-list-NNNN, raw/bare, public; every ACTIVE_EVERY-th image (default 2, i.e.
half of them; 0 = none) gets 1 KiB of data and becomes active, the others stay
queued. Then the images visible to the token are counted by following the
'next' links (limit=1000) and one line is printed:

    created=N active=A queued=Q total_visible=T seconds=S errors=E

Exit status 1 when any request failed (the first failures go to stderr).
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request


def req(method, url, token, body=None, ctype=None):
    headers = {'X-Auth-Token': token}
    if ctype:
        headers['Content-Type'] = ctype
    r = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    base = sys.argv[1].rstrip('/')
    n = int(sys.argv[2])
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    token = os.environ['TOKEN']
    errors = 0
    active = queued = 0
    t0 = time.monotonic()

    def fail(what, code, body):
        nonlocal errors
        errors += 1
        if errors <= 5:
            print(f'load_images: {what}: HTTP {code}: {body[:300]!r}', file=sys.stderr)

    for i in range(n):
        doc = {'name': f'bench-list-{i:04d}', 'disk_format': 'raw',
               'container_format': 'bare', 'visibility': 'public'}
        code, body = req('POST', f'{base}/v2/images', token,
                         json.dumps(doc).encode(), 'application/json')
        if code != 201:
            fail(f'create {i}', code, body)
            continue
        iid = json.loads(body)['id']
        if every and i % every == 0:
            code, body = req('PUT', f'{base}/v2/images/{iid}/file', token,
                             b'x' * 1024, 'application/octet-stream')
            if code != 204:
                fail(f'upload {iid}', code, body)
                continue
            active += 1
        else:
            queued += 1
    secs = time.monotonic() - t0

    total = 0
    url = f'{base}/v2/images?limit=1000'
    while url:
        code, body = req('GET', url, token)
        if code != 200:
            fail('list', code, body)
            break
        doc = json.loads(body)
        total += len(doc.get('images', []))
        nxt = doc.get('next')
        url = f'{base}{nxt}' if nxt else None
    print(f'created={active + queued} active={active} queued={queued} '
          f'total_visible={total} seconds={secs:.1f} errors={errors}')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
