//! Rendering diagnostics for people: the code, the place, the offending line with a caret
//! under the problem, and the hint.
//!
//! ```text
//! error[duplicate-property]: property `id` is declared twice in object `orders`
//!   --> orders.odcs.yaml:14:15
//!    |
//! 14 |       - name: id
//!    |               ^^
//!    = hint: rename one of them or remove the duplicate
//! ```

use std::fmt::Write;

use crate::diag::{Diagnostic, Severity};

/// Renders one diagnostic against the text it was found in.
pub fn human(path: &str, text: &str, d: &Diagnostic) -> String {
    let mut out = String::new();
    let label = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let start = d.span.start;
    let _ = writeln!(out, "{label}[{}]: {}", d.code.as_str(), d.message);
    let _ = writeln!(out, "  --> {path}:{}:{}", start.line.max(1), start.col.max(1));
    if let Some(line) = start.line.checked_sub(1).and_then(|i| text.lines().nth(i as usize)) {
        let number = start.line.to_string();
        let pad = " ".repeat(number.len());
        let line = line.replace('\t', " ");
        let col = (start.col.max(1) - 1) as usize;
        let width = if d.span.end.line == start.line && d.span.end.col > start.col {
            (d.span.end.col - start.col) as usize
        } else {
            line.chars().count().saturating_sub(col).max(1)
        };
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{number} | {line}");
        let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(width.max(1)));
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "{pad} = hint: {hint}");
        }
    } else if let Some(hint) = &d.hint {
        let _ = writeln!(out, "   = hint: {hint}");
    }
    out
}
