#!/usr/bin/env python3
"""ferrostack's API coverage beside upstream's API reference.

    scripts/compat.py upstream --nova DIR --neutron-lib DIR --cinder DIR \\
        --keystone DIR --glance DIR --placement DIR
        Reads each project's api-ref sources (`.. rest_method:: METHOD PATH`
        lines of api-ref/source) from git checkouts or bare mirrors (HEAD) and
        writes docs/compat/upstream.tsv: one row per documented route.
    scripts/compat.py routes
        Prints the routes of our own routers, read from the Rust sources
        (every `.route("PATH", get(..).post(..))` of crates/<service>/src).
    scripts/compat.py render
        Writes docs/compatibility.md from upstream.tsv, our routes and the
        statuses and reasons of docs/compat/notes.tsv.
    scripts/compat.py check
        Exit status 1 when docs/compatibility.md is not what `render` writes
        (a route added or removed without its row, a note changed), or when an
        upstream route we lack has no reason. Run by `cargo test` (tests/compat.rs).

A route is matched to an upstream one segment by segment: a `{param}` on
either side matches anything (our `/v2.0/{res}/{id}/tags` serves every
resource's tags). Block Storage's `/v3/{project_id}/...` are matched without
the project id, as our router serves them both ways.
"""
import fnmatch
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_TSV = os.path.join(ROOT, "docs", "compat", "upstream.tsv")
NOTES_TSV = os.path.join(ROOT, "docs", "compat", "notes.tsv")
DOC = os.path.join(ROOT, "docs", "compatibility.md")

# service: (title, crate, upstream project, api-ref directories, path prefix
# the project documents that our router does not repeat)
SERVICES = {
    "identity": ("Identity v3 (Keystone)", "identity", "keystone",
                 ["api-ref/source/v3", "api-ref/source/v3-ext"], ""),
    "image": ("Image v2 (Glance)", "image", "glance", ["api-ref/source/v2"], ""),
    "compute": ("Compute v2.1 (Nova)", "compute", "nova", ["api-ref/source"], ""),
    "placement": ("Placement (Placement)", "placement", "placement", ["api-ref/source"], ""),
    "network": ("Networking v2.0 (Neutron)", "network", "neutron-lib", ["api-ref/source/v2"], ""),
    "volume": ("Block Storage v3 (Cinder)", "volume", "cinder", ["api-ref/source/v3"], ""),
}
METHODS = ("get", "post", "put", "patch", "delete", "head")


# ---------------------------------------------------------------- upstream

def git_files(repo, dirs):
    """(path, text) of the .inc/.rst files under dirs at HEAD of repo."""
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", "--", *dirs],
                         capture_output=True, text=True, check=True).stdout.split()
    for path in sorted(out):
        if path.endswith((".inc", ".rst")):
            text = subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"],
                                  capture_output=True, text=True, check=True).stdout
            yield path, text


def parse_api_ref(text):
    """(method, path, title) per `.. rest_method::`, title the section it is in."""
    lines = text.splitlines()
    title = ""
    for n, line in enumerate(lines):
        nxt = lines[n + 1] if n + 1 < len(lines) else ""
        if line.strip() and nxt and set(nxt.strip()) <= set("=-~^*+#") and len(nxt.strip()) >= 3 \
                and not line.startswith(".."):
            title = line.strip()
        m = re.match(r"\.\.\s+rest_method::\s*(.*)$", line)
        if m:
            spec = m.group(1).strip() or nxt.strip()  # the method may be on the next line
            parts = spec.split()
            if len(parts) >= 2:
                path = parts[1] if parts[1].startswith("/") else "/" + parts[1]
                yield parts[0], path, title


def cmd_upstream(args):
    mirrors = {}
    it = iter(args)
    for a in it:
        mirrors[a.lstrip("-")] = next(it)
    rows = []
    for svc, (_, _, project, dirs, _) in SERVICES.items():
        repo = mirrors.get(project)
        if not repo:
            sys.exit(f"compat.py upstream: --{project} DIR is required")
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        seen = set()
        for path, text in git_files(repo, dirs):
            for method, route, title in parse_api_ref(text):
                if svc == "placement" and "%s" in route:
                    continue
                key = (method, route, title)
                if key in seen:
                    continue
                seen.add(key)
                rows.append((svc, method, route, title, f"{project}@{head[:10]}:{path}"))
    os.makedirs(os.path.dirname(UPSTREAM_TSV), exist_ok=True)
    with open(UPSTREAM_TSV, "w") as f:
        f.write("# service\tmethod\tpath\tsection\tsource (written by scripts/compat.py upstream)\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"{len(rows)} upstream routes written to {os.path.relpath(UPSTREAM_TSV, ROOT)}")


def read_upstream():
    rows = []
    with open(UPSTREAM_TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            svc, method, path, title, src = line.rstrip("\n").split("\t")
            rows.append({"service": svc, "method": method, "path": path, "title": title,
                         "source": src})
    return rows


# ---------------------------------------------------------------- our routes

def string_end(src, n):
    """Index of the `"` closing the string literal that opens at src[n]."""
    n += 1
    while src[n] != '"':
        n += 2 if src[n] == "\\" else 1
    return n


def matching_paren(src, i):
    """Index of the `)` closing the `(` at src[i] (strings and chars skipped)."""
    depth, n = 0, i
    while n < len(src):
        c = src[n]
        if c == '"':
            n = string_end(src, n)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return n
        n += 1
    raise ValueError("unbalanced parentheses")


def top_level_calls(expr):
    """The method-router calls of `get(a).post(b)`: names at paren depth 0."""
    names, depth, n = [], 0, 0
    while n < len(expr):
        c = expr[n]
        if c == '"':
            n = string_end(expr, n)
        elif c == "(":
            if depth == 0:
                m = re.search(r"([a-z_]+)\s*$", expr[:n])
                if m:
                    names.append(m.group(1))
            depth += 1
        elif c == ")":
            depth -= 1
        n += 1
    return [x for x in names if x in METHODS or x == "any"]


def expand_format(path, src):
    """Identity's grant routes are built with format!: expand them from the loop table."""
    m = re.search(r"for \(t, a\) in \[(.*?)\]", src, re.S)
    pairs = re.findall(r'\("(\w+)",\s*"(\w+)"\)', m.group(1)) if m else []
    out = []
    for t, a in pairs:
        out.append(path.replace("{t}", t).replace("{a}", a).replace("{{", "{").replace("}}", "}"))
    return out


def our_routes():
    """{(service, METHOD, path): file} of every route our routers declare."""
    routes = {}
    for svc, (_, crate, _, _, _) in SERVICES.items():
        base = os.path.join(ROOT, "crates", crate, "src")
        for dirpath, _, files in os.walk(base):
            for fn in sorted(files):
                if not fn.endswith(".rs"):
                    continue
                full = os.path.join(dirpath, fn)
                src = open(full).read()
                src = src.split("\n#[cfg(test)]")[0]
                for m in re.finditer(r"\.route\(", src):
                    open_at = m.end() - 1
                    close = matching_paren(src, open_at)
                    inner = src[open_at + 1:close]
                    lit = re.match(r'\s*"([^"]*)"\s*,', inner)
                    fmt = re.match(r'\s*&format!\(\s*"([^"]*)"\s*\)\s*,', inner)
                    if lit:
                        paths, rest = [lit.group(1)], inner[lit.end():]
                    elif fmt:
                        paths, rest = expand_format(fmt.group(1), src), inner[fmt.end():]
                    else:
                        continue
                    for method in top_level_calls(rest):
                        for p in paths:
                            for meth in (METHODS if method == "any" else [method]):
                                routes[(svc, meth.upper(), p)] = os.path.relpath(full, ROOT)
    return routes


def cmd_routes(_args):
    for (svc, method, path), src in sorted(our_routes().items()):
        print(f"{svc}\t{method}\t{path}\t{src}")


# ---------------------------------------------------------------- matching

def segments(path, svc):
    path = path.split("?")[0].rstrip("/") or "/"
    path = re.sub(r"\.json$", "", path)
    if svc == "volume":
        path = re.sub(r"^/v3/\{[^}]+\}(?=/|$)", "/v3", path)
    return [s for s in path.split("/") if s]


def matches(ours, theirs):
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        if a.startswith("{") or b.startswith("{"):
            continue
        if a != b:
            return False
    return True


def read_notes():
    """Rows of notes.tsv: service, method, path glob, section glob, status, note."""
    notes = []
    with open(NOTES_TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                sys.exit(f"{os.path.relpath(NOTES_TSV, ROOT)}: 6 tab-separated fields: {line!r}")
            svc, method, path, title, status, note = parts
            if status not in ("supported", "partial", "no", "extra"):
                sys.exit(f"notes.tsv: unknown status {status!r}")
            notes.append({"service": svc, "method": method, "path": path, "title": title,
                          "status": status, "note": note})
    return notes


def note_for(notes, svc, method, path, title):
    for n in notes:
        if n["service"] != svc:
            continue
        if n["method"] != "*" and n["method"] != method:
            continue
        if not fnmatch.fnmatchcase(path, n["path"]):
            continue
        if n["title"] != "*" and not fnmatch.fnmatchcase(title, n["title"]):
            continue
        return n
    return None


def table():
    """Per service: rows (method, path, section, status, note) and problems."""
    upstream = read_upstream()
    ours = our_routes()
    notes = read_notes()
    out, problems = {}, []
    for svc in SERVICES:
        rows = []
        used = set()
        for u in (x for x in upstream if x["service"] == svc):
            useg = segments(u["path"], svc)
            # axum answers HEAD with a route's GET handler (headers, no body).
            methods = (u["method"], "GET") if u["method"] == "HEAD" else (u["method"],)
            hit = [k for k in ours if k[0] == svc and k[1] in methods
                   and matches(segments(k[2], svc), useg)]
            used.update(hit)
            n = note_for(notes, svc, u["method"], u["path"], u["title"])
            if hit:
                status = n["status"] if n and n["status"] in ("partial", "no") else "supported"
                note = n["note"] if n else ""
            elif n and n["status"] == "supported":
                # Upstream's reference misspells a path we serve (the note says which).
                status, note = "supported", n["note"]
            else:
                status, note = "no", (n["note"] if n else "")
                if not note:
                    problems.append(f"{svc} {u['method']} {u['path']} ({u['title']}): "
                                    "not served and no reason in docs/compat/notes.tsv")
            rows.append((u["method"], u["path"], u["title"], status, note))
        for k in sorted(ours):
            if k[0] != svc or k in used:
                continue
            n = note_for(notes, svc, k[1], k[2], "")
            if not n:
                problems.append(f"{svc} {k[1]} {k[2]} ({ours[k]}): a route of ours that upstream's "
                                "API reference does not list, without a row in docs/compat/notes.tsv")
                note = ""
            else:
                note = n["note"]
            rows.append((k[1], k[2], "(not in upstream's API reference)", "extra", note))
        out[svc] = rows
    return out, problems


LABEL = {"supported": "supported", "partial": "partial", "no": "**not supported**",
         "extra": "ferrostack only"}


def render():
    tables, problems = table()
    lines = [
        "# API compatibility",
        "",
        "<!-- Written by scripts/compat.py render; do not edit. The statuses and reasons are in",
        "     docs/compat/notes.tsv, upstream's routes in docs/compat/upstream.tsv. -->",
        "",
        "Every route of upstream's API reference (the `rest_method` lines of each project's",
        "`api-ref/source`) beside ferrostack's own routers, read from the sources. A route is",
        "*supported* when we serve it with upstream's behaviour (Tempest and the CLI golden",
        "paths are the judges), *partial* when we serve it with the limits its note says, and",
        "*not supported* (with the reason) when we do not serve it. *ferrostack only* rows are",
        "routes we serve that the API reference does not list (aliases, legacy forms).",
        "`cargo test` fails when a route is added without its row here (`tests/compat.rs`).",
        "",
        "| Service | Supported | Partial | Not supported | ferrostack only |",
        "|---|---|---|---|---|",
    ]
    for svc, rows in tables.items():
        c = {s: sum(1 for r in rows if r[3] == s) for s in LABEL}
        lines.append(f"| {SERVICES[svc][0]} | {c['supported']} | {c['partial']} | {c['no']} | "
                     f"{c['extra']} |")
    lines.append("")
    for svc, rows in tables.items():
        lines += ["", f"## {SERVICES[svc][0]}", "", "| Method | Path | Section | Status | Notes |",
                  "|---|---|---|---|---|"]
        for method, path, title, status, note in rows:
            esc = lambda s: s.replace("|", "\\|")
            lines.append(f"| {method} | `{path}` | {esc(title)} | {LABEL[status]} | {esc(note)} |")
    return "\n".join(lines) + "\n", problems


def cmd_render(_args):
    text, problems = render()
    with open(DOC, "w") as f:
        f.write(text)
    for p in problems:
        print("problem: " + p, file=sys.stderr)
    print(f"wrote {os.path.relpath(DOC, ROOT)}")
    return 1 if problems else 0


def cmd_check(_args):
    text, problems = render()
    have = open(DOC).read() if os.path.exists(DOC) else ""
    ok = True
    for p in problems:
        print("compat: " + p)
        ok = False
    if have != text:
        print("compat: docs/compatibility.md is out of date: run scripts/compat.py render")
        ok = False
    return 0 if ok else 1


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("upstream", "routes", "render", "check"):
        print(__doc__)
        return 2
    return {"upstream": cmd_upstream, "routes": cmd_routes, "render": cmd_render,
            "check": cmd_check}[sys.argv[1]](sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
