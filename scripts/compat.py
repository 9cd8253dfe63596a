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
    scripts/compat.py samples FILE...
        Compares the responses recorded in FILEs (`[api] record_responses`,
        one JSON line per response: method, path, status, microversion, key
        shape) with upstream's published API samples (docs/compat/samples.tsv,
        written by `upstream`): for every supported route with a response
        sample, the keys of the sample (two levels deep) must be in what we
        answered at that microversion. Writes docs/compat/samples.md; exit
        status 1 on a missing key that docs/compat/notes.tsv does not explain.
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
import json
import os
import posixpath
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_TSV = os.path.join(ROOT, "docs", "compat", "upstream.tsv")
SAMPLES_TSV = os.path.join(ROOT, "docs", "compat", "samples.tsv")
SAMPLES_MD = os.path.join(ROOT, "docs", "compat", "samples.md")
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


# Maps whose keys are data (names, ids, resource classes), not attributes:
# the same list as crates/api-server/src/recorder.rs DATA_MAPS.
DATA_MAPS = {"metadata", "meta", "extra_specs", "addresses", "volume_image_metadata",
             "image_metadata", "allocations", "inventories", "usages", "resources",
             "provider_summaries", "mappings", "properties", "capabilities"}


def shape(body):
    """Key paths two levels deep, as recorder.rs `shape` computes them."""
    out = set()

    def inner(prefix, v):
        if isinstance(v, dict):
            out.update(f"{prefix}.{k}" for k in v)
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, dict):
                    out.update(f"{prefix}[].{k}" for k in x)
    if isinstance(body, dict):
        for k, v in body.items():
            out.add(k)
            if k not in DATA_MAPS:
                inner(k, v)
    elif isinstance(body, list):
        inner("", body)
    return out


def parse_samples(text):
    """(method, path, title, include) per response sample of a `rest_method`
    section: a `literalinclude` after its `Response...` subheading (or, with
    no such heading, one whose file name says `resp`)."""
    lines = text.splitlines()
    title, level, route, mode = "", None, None, None
    for n, line in enumerate(lines):
        nxt = lines[n + 1] if n + 1 < len(lines) else ""
        under = nxt.strip()
        heading = line.strip() and under and len(set(under)) == 1 and under[0] in "=-~^*+#" \
            and len(under) >= 3 and not line.startswith("..")
        if heading:
            text_ = line.strip()
            if route and under[0] != level:
                # A subheading of the route's section.
                if text_.startswith("Request"):
                    mode = "request"
                elif text_.startswith("Response"):
                    mode = "response"
            else:
                title, level, route, mode = text_, under[0], None, None
        m = re.match(r"\.\.\s+rest_method::\s*(.*)$", line)
        if m:
            spec = (m.group(1).strip() or nxt.strip()).split()
            if len(spec) >= 2:
                route = (spec[0], spec[1] if spec[1].startswith("/") else "/" + spec[1])
                mode = None
        m = re.match(r"\.\.\s+literalinclude::\s*(\S+)", line)
        if m and route and m.group(1).endswith(".json"):
            name = posixpath.basename(m.group(1))
            if mode == "response" or (mode is None and "resp" in name):
                yield route[0], route[1], title, m.group(1)


def sample_version(path):
    m = re.search(r"/v(\d+\.\d+)/", path)
    return m.group(1) if m else ""


def cmd_upstream(args):
    mirrors = {}
    it = iter(args)
    for a in it:
        mirrors[a.lstrip("-")] = next(it)
    rows, samples = [], []
    def sample_tree(repo):
        """(directory without its vX.Y part, file name) -> the microversions
        of every sample of that name in the repository (including the ones
        the API reference does not show), for where each one stops holding."""
        files = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD"],
                               capture_output=True, text=True, check=True).stdout.split()
        tree = {}
        for f in files:
            if not f.endswith(".json") or "sample" not in f:
                continue
            parts = f.split("/")
            ver = ""
            if len(parts) > 2 and re.fullmatch(r"v\d+\.\d+", parts[-2]):
                ver = parts[-2][1:]
                parts = parts[:-2] + parts[-1:]
            tree.setdefault(("/".join(parts[:-1]), parts[-1]), set()).add(ver)
        return tree

    def until(tree, file):
        parts = file.split("/")
        ver = sample_version(file)
        if ver:
            parts = parts[:-2] + parts[-1:]
        have = tree.get(("/".join(parts[:-1]), parts[-1]), set())
        later = sorted((tuple(map(int, v.split("."))) for v in have
                        if v and (not ver or tuple(map(int, v.split("."))) >
                                  tuple(map(int, ver.split("."))))))
        return "%d.%d" % later[0] if later else ""

    for svc, (_, _, project, dirs, _) in SERVICES.items():
        repo = mirrors.get(project)
        if not repo:
            sys.exit(f"compat.py upstream: --{project} DIR is required")
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        seen = set()
        tree = sample_tree(repo)
        for path, text in git_files(repo, dirs):
            for method, route, title in parse_api_ref(text):
                if svc == "placement" and "%s" in route:
                    continue
                key = (method, route, title)
                if key in seen:
                    continue
                seen.add(key)
                rows.append((svc, method, route, title, f"{project}@{head[:10]}:{path}"))
            for method, route, title, inc in parse_samples(text):
                if svc == "placement" and "%s" in route:
                    continue
                # Sphinx: a leading / is the source directory's root.
                base = dirs[0] if inc.startswith("/") else posixpath.dirname(path)
                if inc.startswith("/") and project == "nova":
                    base = "api-ref/source"
                file = posixpath.normpath(posixpath.join(base, inc.lstrip("/")))
                body = subprocess.run(["git", "-C", repo, "show", f"HEAD:{file}"],
                                      capture_output=True, text=True).stdout
                try:
                    keys = shape(json.loads(body))
                except ValueError:
                    continue
                if keys:
                    samples.append((svc, method, route, title, file, sample_version(file),
                                    until(tree, file), " ".join(sorted(keys))))
    os.makedirs(os.path.dirname(UPSTREAM_TSV), exist_ok=True)
    with open(UPSTREAM_TSV, "w") as f:
        f.write("# service\tmethod\tpath\tsection\tsource (written by scripts/compat.py upstream)\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"{len(rows)} upstream routes written to {os.path.relpath(UPSTREAM_TSV, ROOT)}")
    with open(SAMPLES_TSV, "w") as f:
        f.write("# service\tmethod\tpath\tsection\tsample\tmicroversion\tuntil (the next sample "
                "of that name)\tkeys (two levels deep; written by scripts/compat.py upstream)\n")
        for r in samples:
            f.write("\t".join(r) + "\n")
    print(f"{len(samples)} response samples written to {os.path.relpath(SAMPLES_TSV, ROOT)}")


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


# ---------------------------------------------------------------- samples

SAMPLE_NOTES_TSV = os.path.join(ROOT, "docs", "compat", "sample-notes.tsv")
# The prefix each service's routes have on our listener, and what upstream's
# API reference writes in its place.
PREFIXES = [("/compute/v2.1", "compute", ""), ("/identity", "identity", ""),
            ("/image", "image", ""), ("/placement", "placement", ""),
            ("/networking", "network", ""), ("/volume", "volume", "")]


def parse_version(v):
    """`compute 2.100`, `2.1`, `volume 3.70` -> (2, 100); None when absent."""
    m = re.search(r"(\d+)\.(\d+)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_samples():
    rows = []
    with open(SAMPLES_TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            svc, method, path, title, sample, version, upto, keys = \
                line.rstrip("\n").split("\t")
            rows.append({"service": svc, "method": method, "path": path, "title": title,
                         "sample": sample, "version": parse_version(version),
                         "until": parse_version(upto), "keys": set(keys.split())})
    return rows


def read_sample_notes():
    """Rows: service, method, path glob, sample glob, key glob, why."""
    notes = []
    if not os.path.exists(SAMPLE_NOTES_TSV):
        return notes
    with open(SAMPLE_NOTES_TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                sys.exit(f"sample-notes.tsv: 6 tab-separated fields: {line!r}")
            notes.append(dict(zip(("service", "method", "path", "sample", "key", "why"), parts)))
    return notes


def sample_note(notes, row, key):
    for n in notes:
        if n["service"] == row["service"] and n["method"] in ("*", row["method"]) \
                and fnmatch.fnmatchcase(row["path"], n["path"]) \
                and fnmatch.fnmatchcase(posixpath.basename(row["sample"]), n["sample"]) \
                and fnmatch.fnmatchcase(key, n["key"]):
            return n["why"]
    return None


def route_of(svc, method, raw, templates):
    """The upstream template a recorded path is an instance of: the one
    with the most literal segments in common."""
    seg = segments(raw, svc)
    if svc == "volume" and len(seg) > 1 and re.fullmatch(r"[0-9a-f]{32}", seg[1]):
        seg = seg[:1] + seg[2:]
    best, score = None, -1
    for t in templates.get((svc, method), ()):
        tseg = segments(t, svc)
        if matches(seg, tseg):
            lit = sum(1 for x in tseg if not x.startswith("{"))
            if lit > score:
                best, score = t, lit
    return best


def cmd_samples(files):
    if not files:
        sys.exit("compat.py samples FILE...: the recorded responses")
    samples = read_samples()
    notes = read_sample_notes()
    tables, _ = table()
    status = {(svc, r[0], r[1]): r[3] for svc, rows in tables.items() for r in rows}
    templates = {}
    for u in read_upstream():
        templates.setdefault((u["service"], u["method"]), set()).add(u["path"])
    # (service, method, template) -> [(version, keys)] of 2xx answers
    seen = {}
    for file in files:
        with open(file) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if not 200 <= r.get("status", 0) < 400:
                    continue
                for prefix, svc, _ in PREFIXES:
                    if r["path"] == prefix or r["path"].startswith(prefix + "/"):
                        raw = r["path"][len(prefix):] or "/"
                        if svc == "compute" and raw == "/":
                            break  # /compute/v2.1/ is one version's document, not GET /
                        t = route_of(svc, r["method"], raw, templates)
                        if t:
                            seen.setdefault((svc, r["method"], t), []).append(
                                (parse_version(r.get("version")), set(r["keys"])))
                        break
    # A sample holds from its microversion to the next sample of the same name.
    nexts = {}
    for row in samples:
        k = (row["service"], row["method"], row["path"], posixpath.basename(row["sample"]))
        nexts.setdefault(k, []).append(row["version"])
    results = {svc: [] for svc in SERVICES}
    failed = 0
    for row in samples:
        svc = row["service"]
        st = status.get((svc, row["method"], row["path"]), "no")
        if st not in ("supported", "partial"):
            continue
        v = row["version"]
        later = [x for x in nexts[(svc, row["method"], row["path"],
                                   posixpath.basename(row["sample"]))]
                 if x and (v is None or x > v)]
        if row["until"]:
            later.append(row["until"])
        upto = min(later) if later else None
        got = [keys for ver, keys in seen.get((svc, row["method"], row["path"]), [])
               if (v is None or (ver is not None and ver >= v))
               and (upto is None or ver is None or ver < upto)]
        if not got:
            results[svc].append((row, "not exercised", []))
            continue
        ours = set().union(*got)
        top = {k for k in row["keys"] if "." not in k}
        if top and not top & ours:
            # Another form of the request (bulk create, a token of another
            # kind): none of the sample's top-level keys was ever answered.
            results[svc].append((row, "not exercised", []))
            continue
        # Keys of list items count only where we answered a non-empty list.
        def listed(k):
            return "[]." not in k or any(o.startswith(k.split("[].")[0] + "[].") for o in ours)
        missing = sorted(k for k in row["keys"] - ours if listed(k))
        if not missing and any(not listed(k) for k in row["keys"] - ours):
            results[svc].append((row, "not exercised", []))
            continue
        unexplained = [k for k in missing if not sample_note(notes, row, k)]
        variant = [k for k in missing if (sample_note(notes, row, k) or "").startswith("variant:")]
        if missing and len(variant) == len(missing):
            # Only keys of another form of the request, which the run did not make.
            results[svc].append((row, "not exercised", missing))
        elif unexplained and st == "supported":
            failed += 1
            results[svc].append((row, "missing", missing))
        elif missing:
            results[svc].append((row, "explained", missing))
        else:
            results[svc].append((row, "same", []))
    lines = ["# Responses beside upstream's API samples", "",
             "<!-- Written by scripts/compat.py samples from the responses a test run recorded",
             "     ([api] record_responses); do not edit. -->", "",
             "Each response sample of upstream's API reference (two levels of keys: `server`,",
             "`server.status`, `servers[].id`) beside the keys of what ferrostack answered on the",
             "same route at the same microversion during the run. *missing* names keys of the",
             "sample we did not send; *explained* ones have their reason in",
             "docs/compat/sample-notes.tsv; *not exercised* samples were not reached by the run",
             "(or only in another form: a `variant:` note says which).", "",
             "Recorded by: " + os.environ.get("COMPAT_SAMPLES_SOURCE",
                                              ", ".join(os.path.basename(f) for f in files)) + ".",
             "", "| Service | Samples | Same keys | Explained | Missing | Not exercised |",
             "|---|---|---|---|---|---|"]
    for svc, rs in results.items():
        c = {k: sum(1 for r in rs if r[1] == k) for k in
             ("same", "explained", "missing", "not exercised")}
        lines.append(f"| {SERVICES[svc][0]} | {len(rs)} | {c['same']} | {c['explained']} | "
                     f"{c['missing']} | {c['not exercised']} |")
    for svc, rs in results.items():
        lines += ["", f"## {SERVICES[svc][0]}", "", "| Method | Path | Sample | Result |",
                  "|---|---|---|---|"]
        for row, res, missing in rs:
            ver = f" ({row['version'][0]}.{row['version'][1]})" if row["version"] else ""
            detail = res
            if missing:
                detail += ": " + ", ".join(
                    f"`{k}`" + (f" ({sample_note(notes, row, k)})" if sample_note(notes, row, k)
                                else "") for k in missing)
            lines.append(f"| {row['method']} | `{row['path']}` | "
                         f"{posixpath.basename(row['sample'])}{ver} | {detail} |")
    out = os.environ.get("COMPAT_SAMPLES_OUT", SAMPLES_MD)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    for svc, rs in results.items():
        c = {k: sum(1 for r in rs if r[1] == k) for k in
             ("same", "explained", "missing", "not exercised")}
        print(f"samples {svc}: {len(rs)} samples, {c['same']} same keys, {c['explained']} "
              f"explained, {c['missing']} missing, {c['not exercised']} not exercised")
        for row, res, missing in rs:
            if res == "missing":
                print(f"  MISSING {row['method']} {row['path']} "
                      f"{posixpath.basename(row['sample'])} {row['version'] or ''}: "
                      f"{' '.join(missing)}")
    print(f"wrote {out}")
    every = [r for rs in results.values() for r in rs]
    print(f"api samples: {sum(1 for r in every if r[1] in ('same', 'explained'))} passed, "
          f"{failed} failed, {sum(1 for r in every if r[1] == 'not exercised')} skipped "
          "(not exercised by the run)")
    return 1 if failed else 0


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
    if len(sys.argv) < 2 or sys.argv[1] not in ("upstream", "routes", "render", "check",
                                                  "samples"):
        print(__doc__)
        return 2
    return {"upstream": cmd_upstream, "routes": cmd_routes, "render": cmd_render,
            "check": cmd_check, "samples": cmd_samples}[sys.argv[1]](sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
