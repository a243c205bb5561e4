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
