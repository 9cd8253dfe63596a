//! The crate graph keeps the architecture (DESIGN.md §3, §7): services never
//! depend on agents or drivers, agents never open the database, the
//! protocol crate depends on no service, agent or driver. Read from `cargo
//! metadata`, so a forbidden edge added to any Cargo.toml fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    /// Shared libraries every layer may use.
    Shared,
    /// The typed protocol between controller and agents.
    Protocol,
    /// The database layer: controllers only.
    Db,
    /// An API service (or a library only services use).
    Service,
    /// A host agent, reached over the bus.
    Agent,
    /// A data-plane driver family.
    Driver,
    /// The wiring of the binary: may use everything.
    Wiring,
}

/// Every workspace crate, placed in its layer. A new crate must be added
/// here, so its place in the architecture is a decision, not an accident.
fn layer(name: &str) -> Option<Layer> {
    use Layer::*;
    Some(match name {
        "ferro-common" | "ferro-config" | "ferro-bus" | "ferro-auth" | "ferro-image-client" => {
            Shared
        }
        "ferro-rpc" => Protocol,
        "ferro-db" | "ferro-saga" => Db,
        "ferro-identity" | "ferro-image" | "ferro-compute" | "ferro-network" | "ferro-volume"
        | "ferro-placement" | "ferro-scheduler" => Service,
        "ferro-compute-agent" | "ferro-network-agent" | "ferro-volume-agent" => Agent,
        "ferro-virt" | "ferro-privsep" | "ferro-netdriver" | "ferro-voldriver" => Driver,
        "ferro-api-server" | "ferro-test-utils" | "ferrostack" => Wiring,
        _ => return None,
    })
}

/// Why an edge `from -> to` is forbidden, if it is.
fn forbidden(from: Layer, to: Layer) -> Option<&'static str> {
    use Layer::*;
    match (from, to) {
        (Wiring, _) => None,
        (_, Wiring) => Some("nothing but the wiring depends on the wiring"),
        (Service, Agent | Driver) => Some("services never depend on agents or drivers"),
        (Agent, Db) => Some("agents never open the database"),
        (Agent, Service) => Some("agents reach services only over the bus"),
        (Driver, Db | Service | Agent) => Some("drivers know only the protocol"),
        (Protocol, Db | Service | Agent | Driver) => {
            Some("the protocol crate depends on no service, agent or driver")
        }
        (Shared, Protocol | Db | Service | Agent | Driver) => {
            Some("shared crates depend on nothing above them")
        }
        (Db, Protocol | Service | Agent | Driver) => Some("the database layer knows no service"),
        _ => None,
    }
}

/// Workspace crate -> its normal (non-dev) workspace dependencies.
fn graph() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&Value> = meta["packages"].as_array().unwrap().iter().collect();
    let names: Vec<String> = members
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    members
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.iter().any(|n| n == d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

fn violations(g: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, deps) in g {
        let Some(lf) = layer(from) else {
            bad.push(format!(
                "{from} is in no layer: place it in tests/architecture.rs"
            ));
            continue;
        };
        for to in deps {
            let Some(lt) = layer(to) else { continue };
            if let Some(why) = forbidden(lf, lt) {
                bad.push(format!("{from} -> {to}: {why}"));
            }
        }
    }
    bad
}

#[test]
fn crate_graph_keeps_the_layers() {
    let g = graph();
    assert!(g.contains_key("ferro-compute") && g.contains_key("ferro-rpc"));
    let bad = violations(&g);
    assert!(
        bad.is_empty(),
        "forbidden dependencies:\n{}",
        bad.join("\n")
    );
    // The seam the data plane plugs into: Compute talks to hosts through
    // the protocol crate only.
    let compute = &g["ferro-compute"];
    assert!(compute.contains(&"ferro-rpc".to_string()));
    for d in ["ferro-virt", "ferro-compute-agent", "ferro-placement"] {
        assert!(!compute.contains(&d.to_string()), "ferro-compute -> {d}");
    }
    assert!(!g["ferro-compute-agent"].contains(&"ferro-db".to_string()));
}

#[test]
fn the_check_catches_a_forbidden_edge() {
    // The same check on a graph with the edges this test exists to forbid.
    let mut g = graph();
    g.get_mut("ferro-compute")
        .unwrap()
        .push("ferro-virt".into());
    g.get_mut("ferro-compute-agent")
        .unwrap()
        .push("ferro-db".into());
    let bad = violations(&g);
    assert!(
        bad.iter()
            .any(|b| b.starts_with("ferro-compute -> ferro-virt: services never depend")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|b| b.starts_with("ferro-compute-agent -> ferro-db: agents never open")),
        "{bad:?}"
    );
}

/// The modules of one crate (`src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`)
/// and the modules each one names through `crate::` and `super::` paths.
fn module_graph(src: &std::path::Path) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(src, &mut all);
    let module = |p: &std::path::Path| -> String {
        let rel = p.strip_prefix(src).unwrap().with_extension("");
        let mut segs: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        if segs
            .last()
            .is_some_and(|s| s == "mod" || s == "lib" || s == "main")
        {
            segs.pop();
        }
        segs.join("::")
    };
    let modules: std::collections::BTreeSet<String> = all.iter().map(|p| module(p)).collect();
    // The longest known module that prefixes `segs` (root items are "").
    let resolve = |segs: &[String]| -> String {
        (0..=segs.len())
            .rev()
            .map(|n| segs[..n].join("::"))
            .find(|m| modules.contains(m))
            .unwrap_or_default()
    };
    let mut graph = BTreeMap::new();
    for p in &all {
        let me = module(p);
        // `super` of `a::b` (a::b.rs or a/b/mod.rs alike) is `a`.
        let parent: Vec<String> = {
            let mut s: Vec<String> = me
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            s.pop();
            s
        };
        let text: String = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut targets = std::collections::BTreeSet::new();
        for (kw, base) in [
            ("crate::", Vec::<String>::new()),
            ("super::", parent.clone()),
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(kw) {
                let before = rest[..i].chars().last();
                rest = &rest[i + kw.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let after = &rest[path.len()..];
                let prefix: Vec<String> = base
                    .iter()
                    .cloned()
                    .chain(path.split("::").filter(|s| !s.is_empty()).map(String::from))
                    .collect();
                if (path.ends_with("::") || path.is_empty())
                    && let Some(group) = after.strip_prefix('{')
                {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        let mut segs = prefix.clone();
                        segs.extend(
                            item.trim()
                                .split("::")
                                .filter(|s| !s.is_empty() && *s != "self")
                                .map(|s| s.split_whitespace().next().unwrap_or("").to_string()),
                        );
                        targets.insert(resolve(&segs));
                    }
                    continue;
                }
                targets.insert(resolve(&prefix));
            }
        }
        targets.remove(&me);
        targets.remove("");
        graph.insert(me, targets);
    }
    graph
}

/// A circle in `graph`, if there is one (as the modules along it).
fn find_circle(
    graph: &BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, std::collections::BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn compute_src() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/compute/src")
}

/// Compute is layered: handlers (`http/`) on a service layer on the
/// conductor and the store. No module imports in a circle, nothing outside
/// `http/` imports from it, no file is named `misc`, and no file is over
/// 1,000 lines without saying why at its top.
#[test]
fn compute_modules_are_layered() {
    let g = module_graph(&compute_src());
    assert!(
        g.contains_key("build") && g.contains_key("http::servers"),
        "{g:?}"
    );
    if let Some(c) = find_circle(&g) {
        panic!("compute modules import in a circle: {}", c.join(" -> "));
    }
    for (m, targets) in &g {
        if m == "http" || m.starts_with("http::") {
            continue;
        }
        for t in targets {
            assert!(
                !(t == "http" || t.starts_with("http::")),
                "{m} imports {t}: only handlers live in http/, and nothing below them uses them"
            );
        }
    }
    fn check_files(dir: &std::path::Path) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                check_files(&p);
                continue;
            }
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            assert!(
                name != "misc",
                "{}: name the file after what it holds",
                p.display()
            );
            let text = std::fs::read_to_string(&p).unwrap();
            let n = text.lines().count();
            let head: String = text.lines().take(15).collect::<Vec<_>>().join("\n");
            assert!(
                n <= 1000 || head.contains("Over 1,000 lines because"),
                "{}: {n} lines and no reason at its top",
                p.display()
            );
        }
    }
    check_files(&compute_src());
}

/// Server actions are decided in the service layer: the handler parses a
/// body into a typed command and renders the outcome; it never writes the
/// store, calls an agent or starts background work itself.
#[test]
fn server_action_handlers_only_parse_and_render() {
    let src = compute_src();
    let handler = std::fs::read_to_string(src.join("http/actions.rs")).unwrap();
    for marker in [
        "ops::",
        "update_instance",
        "state.write",
        "call_agent",
        "tokio::spawn",
        "ComputeRequest",
    ] {
        assert!(
            !handler.contains(marker),
            "http/actions.rs uses {marker}: decide in crate::actions, not in the handler"
        );
    }
    assert!(
        handler.contains("actions::run("),
        "the handler runs a typed command"
    );
    let service = std::fs::read_to_string(src.join("actions/mod.rs")).unwrap();
    assert!(service.contains("pub enum ServerCommand"));
    for f in [
        "mod", "admin", "console", "guard", "power", "rebuild", "resize", "shelve", "snapshot",
    ] {
        let text = std::fs::read_to_string(src.join(format!("actions/{f}.rs"))).unwrap();
        assert!(
            !text.contains("axum"),
            "actions/{f}.rs knows about HTTP; render in http/actions.rs"
        );
    }
}

#[test]
fn the_module_check_sees_a_circle() {
    let mut g = module_graph(&compute_src());
    g.entry("ops".into())
        .or_default()
        .insert("http::servers".into());
    // http::servers reaches ops, so ops -> http::servers closes a circle.
    assert!(find_circle(&g).is_some());
}

/// docs/compatibility.md is generated from our routers' routes beside
/// upstream's API reference: a route added or removed without its row
/// there, or an upstream route we lack without a reason, fails here.
#[test]
fn the_compatibility_table_covers_every_route() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/compat.py"))
        .arg("check")
        .current_dir(&root)
        .output()
        .expect("python3 runs scripts/compat.py");
    assert!(
        out.status.success(),
        "scripts/compat.py check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The check itself fails on a route nobody described.
#[test]
fn the_compatibility_check_catches_an_undescribed_route() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    for d in ["scripts", "docs/compat", "crates/compute/src/http"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    for f in [
        "scripts/compat.py",
        "docs/compat/upstream.tsv",
        "docs/compat/notes.tsv",
        "docs/compatibility.md",
    ] {
        std::fs::copy(root.join(f), tmp.path().join(f)).unwrap();
    }
    // One compute route only: every other upstream compute route turns
    // "not supported" without a reason, and this one is unknown upstream.
    std::fs::write(
        tmp.path().join("crates/compute/src/http/new.rs"),
        "pub fn routes() -> Router { Router::new().route(\"/os-brand-new\", get(x).post(y)) }\n",
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .arg(tmp.path().join("scripts/compat.py"))
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("POST /os-brand-new") && text.contains("out of date"),
        "{text}"
    );
}
