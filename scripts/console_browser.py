#!/usr/bin/env python3
"""Drives a guest's VNC console as a user would, for golden-path-qemu.sh.

  console_browser.py type URL WORD SCREENSHOT
      Opens URL (from `openstack console url show`) in headless Chromium
      (Debian's chromium and chromedriver, through Selenium), waits for
      noVNC to say it is connected, and types on the guest's screen a
      command that copies the next line to the serial port, then WORD.
      The caller then looks for WORD in `openstack console log show`.
      Only unshifted keys are typed, so no keyboard layout is assumed.

  console_browser.py refused URL ORIGIN
      Opens the websocket of URL as noVNC would, with `Origin: ORIGIN`,
      and exits 0 when the proxy refuses it (no 101 Switching Protocols).

  console_browser.py rfb URL
      Opens the websocket of URL without an Origin (as Tempest does) and
      exits 0 when the guest's VNC server greets with `RFB 003.00x`.

Prints one line saying what it saw; exit status 1 otherwise.
"""
import base64
import os
import socket
import sys
import time
import urllib.parse


def websocket_request(url, origin=None):
    """The websocket noVNC opens for URL: GET /<path> on the page's host."""
    u = urllib.parse.urlparse(url)
    path = urllib.parse.parse_qs(u.query).get("path", ["websockify"])[0]
    port = u.port or (443 if u.scheme == "https" else 80)
    sock = socket.create_connection((u.hostname, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET /{path.lstrip('/')} HTTP/1.1",
        f"Host: {u.hostname}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: binary",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
    return sock, status, rest


def read_frame(sock, pending):
    """The payload of the next (unmasked, server) websocket frame."""
    buf = pending
    while len(buf) < 2:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    n = buf[1] & 127
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += sock.recv(4096)
        n = int.from_bytes(buf[2:4], "big")
        off = 4
    while len(buf) < off + n:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    return buf[off:off + n]


def refused(url, origin):
    sock, status, _ = websocket_request(url, origin)
    sock.close()
    if " 101 " in status + " ":
        print(f"NOT refused: {status} (Origin: {origin})")
        return 1
    print(f"refused: {status} (Origin: {origin or 'none'})")
    return 0


def rfb(url):
    sock, status, rest = websocket_request(url)
    if " 101 " not in status + " ":
        print(f"no websocket: {status}")
        return 1
    data = read_frame(sock, rest)
    sock.close()
    if not data or not data.startswith(b"RFB 003.00"):
        print(f"no RFB greeting: {data!r}")
        return 1
    print(f"greeted: {data.decode().strip()}")
    return 0


def type_on_screen(url, word, screenshot):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1100,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(url)
        status = ""
        deadline = time.time() + 60
        while time.time() < deadline:
            status = driver.find_element(By.ID, "status").text
            if status.startswith("Connected") or "Disconnected" in status or "wrong" in status:
                break
            time.sleep(0.2)
        if not status.startswith("Connected"):
            print(f"noVNC did not connect: {status!r}")
            return 1
        canvas = driver.find_element(By.CSS_SELECTOR, "#screen canvas")
        canvas.click()
        time.sleep(0.5)

        def keys(text):
            # One key at a time: a TCG guest reads its keyboard slowly.
            for ch in text:
                canvas.send_keys(ch)
                time.sleep(0.05)

        keys(Keys.ENTER)
        time.sleep(1)
        keys(f"dd of=/dev/ttyS0 bs=1 count={len(word) + 1}" + Keys.ENTER)
        time.sleep(1)
        keys(word + Keys.ENTER)
        time.sleep(2)
        driver.save_screenshot(screenshot)
        print(f"typed on the screen of: {status}")
        return 0
    finally:
        driver.quit()


def main(argv):
    if len(argv) == 5 and argv[1] == "type":
        return type_on_screen(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == "refused":
        return refused(argv[2], argv[3] or None)
    if len(argv) == 3 and argv[1] == "rfb":
        return rfb(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
