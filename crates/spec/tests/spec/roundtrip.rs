//! Lossless round trips: a model serialized and read again is the same model, for the
//! official examples, our own fixtures, and generated contracts.

use meshplane_spec::lint::{self, Linted};
use meshplane_spec::{Document, load};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{files, fixtures};

/// Serializes every document of `linted` to JSON, reads it back, and compares the models.
pub fn assert_round_trip(name: &str, linted: &Linted) {
    for loaded in &linted.documents {
        let Some(document) = &loaded.document else {
            continue;
        };
        let json = serde_json::to_string_pretty(document).unwrap();
        let again = load(&json);
        assert!(again.diagnostics.is_empty(), "{name}: {:?}", again.diagnostics);
        let reread =
            again.documents[0].document.as_ref().unwrap_or_else(|| panic!("{name}: not recognised after round trip"));
        assert_eq!(document, reread, "{name}: the model changed in a round trip");
        assert_eq!(json, serde_json::to_string_pretty(reread).unwrap(), "{name}: serialization is not stable");
    }
}

#[test]
fn own_valid_fixtures_lint_clean_and_round_trip() {
    let paths = files(&fixtures("valid"), &[".yaml", ".json"]);
    assert!(!paths.is_empty());
    for path in paths {
        let name = path.display().to_string();
        let linted = lint::lint_text(&name, std::fs::read_to_string(&path).unwrap());
        let problems: Vec<_> = linted
            .diagnostics
            .iter()
            .map(|d| format!("{}:{} {}", d.span.start.line, d.code.as_str(), d.message))
            .collect();
        assert!(problems.is_empty(), "{name}: {problems:?}");
        assert_round_trip(&name, &linted);
    }
}

#[test]
fn every_declared_field_survives() {
    let path = fixtures("valid").join("everything.odcs.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let linted = lint::lint_text("everything", &text);
    let Some(Document::Contract(contract)) = &linted.documents[0].document else { panic!("not a contract") };
    let serialized = serde_json::to_value(contract).unwrap();
    // The source, as JSON, must equal the serialized model: nothing dropped, nothing added.
    let source = linted.documents[0].node.to_json();
    assert_eq!(source, serialized);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,12}",
        any::<String>(),
        Just("2024-05-01".to_string()),
        Just("true".to_string()),
        Just("12".to_string()),
        Just("null".to_string()),
        Just("a: b".to_string()),
        Just("- x".to_string()),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1.0e12f64..1.0e12).prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z][a-zA-Z0-9]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn property() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9_]{0,10}",
        prop::sample::select(vec!["string", "integer", "number", "date", "boolean"]),
        any::<bool>(),
        proptest::option::of(text()),
        prop::collection::vec(any_value(), 0..3),
        0u32..200,
    )
        .prop_map(|(name, logical_type, required, description, values, threshold)| {
            let mut p = json!({
                "name": name,
                "logicalType": logical_type,
                "required": required,
                "customProperties": values.into_iter().enumerate().map(|(i, v)| json!({"property": format!("p{i}"), "value": v})).collect::<Vec<_>>(),
                "quality": [{"metric": "nullValues", "mustBeLessThan": threshold, "unit": "rows"}],
            });
            if let Some(d) = description {
                p["description"] = json!(d);
            }
            if logical_type == "string" {
                p["logicalTypeOptions"] = json!({"minLength": 0, "maxLength": threshold + 1});
            }
            p
        })
}

fn contract() -> impl Strategy<Value = Value> {
    (text(), prop::collection::vec(property(), 0..5), prop::collection::vec(text(), 0..3)).prop_map(
        |(name, properties, tags)| {
            let mut seen = std::collections::HashSet::new();
            let properties: Vec<Value> =
                properties.into_iter().filter(|p| seen.insert(p["name"].as_str().unwrap().to_string())).collect();
            json!({
                "apiVersion": "v3.2.0",
                "kind": "DataContract",
                "id": "generated",
                "version": "1.0.0",
                "name": name,
                "tags": tags,
                "schema": [{"name": "t", "properties": properties}],
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn generated_contracts_round_trip(source in contract()) {
        let text = serde_json::to_string_pretty(&source).unwrap();
        let linted = lint::lint_text("generated", &text);
        let errors: Vec<_> = linted.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, text);
        assert_round_trip("generated", &linted);
        let Some(Document::Contract(c)) = &linted.documents[0].document else { panic!("not a contract") };
        prop_assert_eq!(serde_json::to_value(c).unwrap(), source);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = lint::lint_text("fuzz", text);
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in "([a-zA-Z]{1,5}: (\\[|\\{|-|&a |\\*a|'|\"|[0-9.]{1,4}|\n  )*\n){0,8}") {
        let _ = lint::lint_text("fuzz", text);
    }
}
