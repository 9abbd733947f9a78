//! The repository's copy of the shared sample data (`fixtures/shared-data`) is the
//! shared data, byte for byte: when the team's `shared/data` is beside the checkout,
//! every file of it must be in the copy, unchanged, and the copy must hold nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_fixture_copy_is_the_shared_data_unchanged() {
    let copy = care_contract::shared_data_copy();
    assert!(
        copy.join("MANIFEST.tsv").is_file(),
        "fixtures/shared-data is missing"
    );
    let shared = care_contract::shared_data();
    if shared.canonicalize().unwrap() == copy.canonicalize().unwrap() {
        eprintln!("no shared/data beside the checkout: the copy is what the tests use");
        return;
    }
    let live = files(&shared);
    let ours: BTreeMap<PathBuf, Vec<u8>> = files(&copy)
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with("hl7v2") || p.starts_with("fhir-r4") || p == Path::new("MANIFEST.tsv")
        })
        .collect();
    let wanted: BTreeMap<PathBuf, Vec<u8>> = live
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with("hl7v2") || p.starts_with("fhir-r4") || p == Path::new("MANIFEST.tsv")
        })
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (path, bytes) in &wanted {
        assert!(
            ours[path] == *bytes,
            "{} differs from the shared copy",
            path.display()
        );
    }
}
