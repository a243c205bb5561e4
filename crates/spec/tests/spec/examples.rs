//! The standards' official examples: each lints with no error on its own, and round-trips.

use meshplane_spec::lint;

use crate::{files, shared_specs};

/// Official examples with a real defect that meshplane reports on purpose.
const KNOWN_DEFECTS: &[(&str, &str)] = &[
    // Its composite relationship names `addresses.address_street`, but the property of
    // `addresses` is named `street` (`address_street_prop` is its id).
    ("references/relationships.odcs.yaml", "relationship-unknown-property"),
];

#[test]
fn official_examples_lint_without_errors() {
    let Some(specs) = shared_specs() else { return };
    let paths = files(&specs, &[".odcs.yaml", ".odps.yaml"]);
    assert!(paths.len() >= 30, "found only {} examples", paths.len());
    for path in paths {
        let name = path.to_string_lossy();
        let linted = lint::lint_text(name.to_string(), std::fs::read_to_string(&path).unwrap());
        let errors: Vec<_> = linted
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .filter(|d| !KNOWN_DEFECTS.iter().any(|(file, code)| name.ends_with(file) && d.code.as_str() == *code))
            .map(|d| format!("{}:{} {} {}", d.span.start.line, d.span.start.col, d.code.as_str(), d.message))
            .collect();
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
        assert!(linted.documents.iter().all(|d| d.document.is_some()), "{name} was not recognised");
        crate::roundtrip::assert_round_trip(&name, &linted);
    }
}

#[test]
fn known_defects_are_still_reported() {
    let Some(specs) = shared_specs() else { return };
    for (file, code) in KNOWN_DEFECTS {
        let path = specs.join("odcs/examples").join(file);
        let linted = lint::lint_text(file.to_string(), std::fs::read_to_string(path).unwrap());
        assert!(linted.diagnostics.iter().any(|d| d.code.as_str() == *code), "{file} no longer reports {code}");
    }
}
