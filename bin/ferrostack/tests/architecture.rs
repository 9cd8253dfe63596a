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
        "ferro-common" | "ferro-config" | "ferro-bus" | "ferro-auth" => Shared,
        "ferro-rpc" => Protocol,
        "ferro-db" | "ferro-saga" => Db,
        "ferro-identity" | "ferro-image" | "ferro-compute" | "ferro-network" | "ferro-volume"
        | "ferro-placement" | "ferro-scheduler" => Service,
        "ferro-compute-agent" => Agent,
        "ferro-virt" => Driver,
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
    for d in ["ferro-virt", "ferro-compute-agent"] {
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
