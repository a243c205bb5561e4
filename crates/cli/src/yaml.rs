//! A small YAML emitter for JSON values (`-o yaml`): block mappings and sequences, scalars
//! quoted whenever plain YAML could read them as something else.

use serde_json::Value as Any;

/// The value as a YAML document.
pub fn to_yaml(value: &Any) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn scalar(value: &Any) -> String {
    match value {
        Any::Null => "null".into(),
        Any::Bool(b) => b.to_string(),
        Any::Number(n) => n.to_string(),
        Any::String(s) => string(s),
        Any::Array(_) => "[]".into(),
        Any::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML 1.2 reads it back as the same string, double-quoted otherwise.
fn string(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.ends_with(char::is_whitespace)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t', '\r'])
        && !matches!(s, "true" | "false" | "null" | "~" | "True" | "False" | "Null" | "TRUE" | "FALSE" | "NULL")
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o")
        && !s.starts_with('.');
    if plain { s.to_string() } else { serde_json::to_string(s).unwrap_or_default() }
}

fn is_block(value: &Any) -> bool {
    matches!(value, Any::Array(a) if !a.is_empty()) || matches!(value, Any::Object(o) if !o.is_empty())
}

fn emit(value: &Any, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Any::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{}:", string(key)));
                if is_block(v) {
                    out.push('\n');
                    emit(v, indent + 2, out);
                } else {
                    out.push_str(&format!(" {}\n", scalar(v)));
                }
            }
        }
        Any::Array(items) if !items.is_empty() => {
            for item in items {
                if is_block(item) {
                    out.push_str(&format!("{pad}-\n"));
                    emit(item, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_spec::document::read;
    use serde_json::json;

    #[test]
    fn what_is_emitted_reads_back_as_the_same_value() {
        let value = json!({
            "name": "orders", "version": "1.0", "count": 3, "ratio": 0.5, "on": true, "none": null,
            "tricky": ["true", "1.5", "", " lead", "a: b", "#x", "- y", "multi\nline", "null", "ok"],
            "nested": { "list": [{ "a": 1 }, [], {}], "empty": [] },
        });
        let text = to_yaml(&value);
        let parsed = read(&text).unwrap();
        assert_eq!(parsed.documents[0].to_json(), value, "{text}");
    }
}
