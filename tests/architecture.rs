//! Architecture invariants that a test can check: domain crates depend on no runtime,
//! database, web or policy framework, and dependencies point inwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Crates the domain must never reach, directly or through another crate.
const FORBIDDEN_IN_DOMAIN: [&str; 8] = [
    "tokio",
    "sea-orm",
    "sqlx",
    "poem",
    "poem-openapi",
    "casbin",
    "async-trait",
    "hyper",
];

const DOMAIN: [&str; 7] = [
    "care-kernel",
    "care-person",
    "care-referral",
    "care-alert",
    "care-consent",
    "care-access-audit",
    "care-account",
];

fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host")
}

/// Normal (non-dev, non-build) dependencies of every package, by name, on this host.
fn dependency_graph() -> &'static BTreeMap<String, BTreeSet<String>> {
    static GRAPH: std::sync::OnceLock<BTreeMap<String, BTreeSet<String>>> =
        std::sync::OnceLock::new();
    GRAPH.get_or_init(load_graph)
}

fn load_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host_triple(),
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
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()].to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap()].to_owned());
        graph.entry(from).or_insert_with(BTreeSet::new).extend(deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(next) = stack.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn domain_crates_depend_on_no_runtime_database_web_or_policy_framework() {
    let graph = dependency_graph();
    for krate in DOMAIN {
        assert!(graph.contains_key(krate), "{krate} is in the workspace");
        let reached = closure(graph, krate);
        for forbidden in FORBIDDEN_IN_DOMAIN {
            assert!(
                !reached.contains(forbidden),
                "{krate} depends on {forbidden}"
            );
        }
        for other in reached.iter().filter(|d| d.starts_with("care-")) {
            assert!(
                DOMAIN.contains(&other.as_str()),
                "{krate} depends on {other}, outside the domain"
            );
        }
    }
}

#[test]
fn the_application_depends_on_the_domain_and_no_adapter() {
    let graph = dependency_graph();
    let reached = closure(graph, "care-application");
    for forbidden in ["tokio", "sea-orm", "sqlx", "poem", "casbin"] {
        assert!(
            !reached.contains(forbidden),
            "the application depends on {forbidden}"
        );
    }
    for other in reached.iter().filter(|d| d.starts_with("care-")) {
        assert!(
            DOMAIN.contains(&other.as_str()),
            "the application depends on {other}"
        );
    }
}

#[test]
fn the_portal_knows_nothing_of_the_record_but_its_public_api() {
    // The web portal is a client of `/api/v1`: it reaches no crate of ours, so it cannot
    // take a back door into the application.
    let reached = closure(dependency_graph(), "care-web");
    let ours: Vec<_> = reached.iter().filter(|d| d.starts_with("care-")).collect();
    assert!(ours.is_empty(), "the portal depends on {ours:?}");
}

#[test]
fn adapters_do_not_depend_on_each_other_or_on_the_binary() {
    let graph = dependency_graph();
    const ADAPTERS: [&str; 10] = [
        "care-in-memory",
        "care-policy",
        "care-persistence",
        "care-synthetic",
        "care-security",
        "care-http",
        "care-telemetry",
        "care-hl7",
        "care-feeds",
        "care-web",
    ];
    // The one exception: the HL7 v2 parser is the feeds adapter's own library (pure,
    // no I/O), split out so that it is tested and benchmarked on its own.
    const ALLOWED: [(&str, &str); 1] = [("care-feeds", "care-hl7")];
    for adapter in ADAPTERS {
        let reached = closure(graph, adapter);
        for other in ADAPTERS.into_iter().chain(["carerecord"]) {
            if other != adapter && !ALLOWED.contains(&(adapter, other)) {
                assert!(!reached.contains(other), "{adapter} depends on {other}");
            }
        }
    }
    assert!(
        closure(graph, "care-feeds").contains("care-hl7"),
        "the exception is still needed"
    );
}
