//! Fuzzes the YAML reader with anchors and aliases. The input is read as a program that
//! writes a document full of anchors, aliases of them (also nested, also of earlier
//! aliases), long scalars and collections, so the fuzzer explores expansions rather than
//! syntax. Whatever the document, the reader must not panic, and what it accepts must fit the
//! budget of the text it read: an anchor bomb is refused, never expanded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplane_spec::tree::{Budget, Node, Value, parse};

/// Writes the document the bytes describe.
fn document(data: &[u8]) -> String {
    let mut out = String::from("root:\n  - ");
    let mut anchors = 0usize;
    let mut open = 0usize;
    for pair in data.chunks(2) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0) as usize);
        match op % 6 {
            0 => {
                out.push_str(&format!("&a{anchors} ["));
                anchors += 1;
                open += 1;
            }
            1 if anchors > 0 => out.push_str(&format!("*a{}, ", arg % anchors)),
            2 => out.push_str(&format!("\"{}\", ", "x".repeat(arg * 8))),
            3 if open > 0 => {
                out.push_str("], ");
                open -= 1;
            }
            4 => out.push_str(&format!("{{ k{arg}: &a{anchors} v, }}, ")),
            _ => out.push_str("1, "),
        }
        if op % 6 == 4 {
            anchors += 1;
        }
    }
    out.push_str(&"]".repeat(open));
    out.push('\n');
    out
}

fn size(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Str(s) => (1, s.len()),
        Value::Seq(items) => items.iter().map(size).fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        Value::Map(entries) => entries
            .iter()
            .map(|e| {
                let (n, b) = size(&e.value);
                (n + 1, b + e.key.len())
            })
            .fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        _ => (1, 0),
    }
}

fuzz_target!(|data: &[u8]| {
    for text in [document(data), String::from_utf8_lossy(data).into_owned()] {
        if let Ok(parsed) = parse(&text) {
            let budget = Budget::of(text.len());
            let (nodes, bytes) = parsed.documents.iter().map(size).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            assert!(nodes <= budget.nodes && bytes <= budget.bytes, "{nodes} nodes, {bytes} bytes past {budget:?}");
        }
    }
});
