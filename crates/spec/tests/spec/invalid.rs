//! Each invalid fixture marks its offending lines with `# <- code[, code...]`; linting the
//! file must report exactly those codes on exactly those lines (a marker alone on a line
//! means "somewhere in the file", for problems whose position the parser decides).

use meshplane_spec::lint;

use crate::{files, fixtures};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Expect {
    code: String,
    line: Option<u32>,
}

fn expectations(text: &str) -> Vec<Expect> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some((before, codes)) = line.split_once("# <- ") else {
            continue;
        };
        let at = (!before.trim().is_empty()).then_some(index as u32 + 1);
        for code in codes.split(',') {
            out.push(Expect { code: code.trim().to_string(), line: at });
        }
    }
    out.sort();
    out
}

#[test]
fn every_invalid_fixture_reports_its_codes_at_its_lines() {
    let paths = files(&fixtures("invalid"), &[".yaml"]);
    assert!(paths.len() >= 40, "only {} invalid fixtures", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{} has no `# <- code` marker", path.display());
        let linted = lint::lint_text(path.display().to_string(), &text);
        let mut actual: Vec<Expect> = linted
            .diagnostics
            .iter()
            .map(|d| Expect { code: d.code.as_str().to_string(), line: Some(d.span.start.line) })
            .collect();
        actual.sort();
        let mut unmatched = actual.clone();
        let mut missing = Vec::new();
        for e in &expected {
            match unmatched.iter().position(|a| a.code == e.code && (e.line.is_none() || a.line == e.line)) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => missing.push(e.clone()),
            }
        }
        if !missing.is_empty() || !unmatched.is_empty() {
            failures.push(format!("{}:\n  missing {missing:?}\n  unexpected {unmatched:?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_misspelt_field_is_answered_with_the_field_it_stands_for() {
    let text = "apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: active\n\
                descripton: { purpose: x }\nschema:\n  - name: t\n    properties:\n\
                \x20     - name: a\n        logicaltype: integer\n        quality:\n\
                \x20         - metric: nullValues\n            mustBeGreaterThen: 0\n\
                \x20     - name: b\n        wholly_custom: 1\n";
    let linted = lint::lint_text("c.odcs.yaml".to_string(), text);
    let hints: Vec<(u32, &str)> = linted
        .diagnostics
        .iter()
        .filter(|d| d.code.as_str() == "unknown-field")
        .map(|d| (d.span.start.line, d.hint.as_deref().unwrap_or("")))
        .collect();
    let meant = |line: u32, field: &str| {
        hints.iter().any(|(l, h)| *l == line && h.starts_with(&format!("did you mean `{field}`?")))
    };
    assert!(meant(6, "description"), "{hints:?}");
    assert!(meant(11, "logicalType"), "{hints:?}");
    assert!(meant(14, "mustBeGreaterThan"), "{hints:?}");
    let custom = hints.iter().find(|(l, _)| *l == 16).expect("the custom field is reported");
    assert!(custom.1.starts_with("custom fields go in `customProperties`"), "{hints:?}");
}

#[test]
fn a_json_file_is_strict_json_and_the_same_text_elsewhere_is_yaml() {
    // A YAML flow mapping: valid YAML, not JSON (unquoted keys).
    let text = "{apiVersion: v3.1.0, kind: DataContract, id: c, version: 1.0.0, status: active}";
    let as_json = lint::lint_text("c.odcs.json".to_string(), text);
    assert!(as_json.documents.is_empty());
    assert_eq!(as_json.diagnostics.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["syntax"]);
    let as_yaml = lint::lint_text("c.odcs.yaml".to_string(), text);
    assert!(as_yaml.documents.iter().any(|d| d.document.is_some()), "{:?}", as_yaml.diagnostics);
    assert!(!as_yaml.diagnostics.iter().any(|d| d.code.as_str() == "syntax"));
}
