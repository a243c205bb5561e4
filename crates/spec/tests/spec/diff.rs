//! `diff` on pairs that cover every class of change.

use meshplane_spec::diff::{self, Bump, Report};
use meshplane_spec::{Document, lint};

const BASE: &str = r#"apiVersion: v3.2.0
kind: DataContract
id: orders
version: 1.0.0
status: active
description:
  purpose: Orders
servers:
  - server: prod
    type: postgres
    host: db
    port: 5432
    database: shop
    schema: sales
roles:
  - role: analyst
    access: read
schema:
  - name: orders
    physicalName: orders_tbl
    properties:
      - name: id
        logicalType: string
        required: true
        unique: true
      - name: amount
        logicalType: number
        physicalType: numeric(10,2)
        quality:
          - metric: nullValues
            mustBeLessThan: 10
      - name: status
        logicalType: string
        logicalTypeOptions:
          maxLength: 20
        enum:
          - value: open
          - value: closed
    quality:
      - id: volume
        metric: rowCount
        mustBeBetween: [10, 1000]
  - name: customers
    properties:
      - name: id
        logicalType: string
slaProperties:
  - property: latency
    value: 4
    unit: d
  - property: retention
    value: 3
    unit: y
  - property: timeOfAvailability
    value: 09:00-08:00
"#;

fn contract(text: &str) -> meshplane_spec::model::odcs::DataContract {
    let linted = lint::lint_text("x", text);
    let errors: Vec<_> = linted.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{text}");
    match linted.documents.into_iter().next().and_then(|d| d.document) {
        Some(Document::Contract(c)) => *c,
        _ => panic!("not a contract"),
    }
}

fn compare(from: &str, to: &str, version: &str) -> Report {
    assert!(BASE.contains(from), "base does not contain {from:?}");
    let new = BASE.replacen(from, to, 1).replacen("version: 1.0.0", &format!("version: {version}"), 1);
    diff::diff(&contract(BASE), &contract(&new))
}

/// (what, replace this, with this, expected code, breaking?)
const CASES: &[(&str, &str, &str, &str, bool)] = &[
    (
        "object removed",
        "  - name: customers\n    properties:\n      - name: id\n        logicalType: string\n",
        "",
        "object-removed",
        true,
    ),
    ("object added", "slaProperties:", "  - name: refunds\nslaProperties:", "object-added", false),
    (
        "property removed",
        "      - name: amount\n        logicalType: number\n        physicalType: numeric(10,2)\n        quality:\n          - metric: nullValues\n            mustBeLessThan: 10\n",
        "",
        "property-removed",
        true,
    ),
    (
        "optional property added",
        "    quality:\n      - id: volume",
        "      - name: note\n        logicalType: string\n    quality:\n      - id: volume",
        "property-added",
        false,
    ),
    (
        "required property added",
        "    quality:\n      - id: volume",
        "      - name: note\n        required: true\n    quality:\n      - id: volume",
        "required-property-added",
        true,
    ),
    (
        "logical type changed",
        "      - name: id\n        logicalType: string",
        "      - name: id\n        logicalType: integer",
        "type-changed",
        true,
    ),
    ("physical type changed", "physicalType: numeric(10,2)", "physicalType: numeric(8,2)", "type-changed", true),
    ("max length narrowed", "maxLength: 20", "maxLength: 10", "type-narrowed", true),
    ("max length widened", "maxLength: 20", "maxLength: 40", "type-widened", false),
    (
        "made required",
        "      - name: amount\n        logicalType: number\n",
        "      - name: amount\n        logicalType: number\n        required: true\n",
        "made-required",
        true,
    ),
    ("made optional", "        required: true\n        unique: true", "        unique: true", "made-optional", true),
    (
        "unique removed",
        "        required: true\n        unique: true",
        "        required: true",
        "constraint-removed",
        true,
    ),
    (
        "primary key added",
        "        unique: true",
        "        unique: true\n        primaryKey: true",
        "constraint-added",
        true,
    ),
    ("enum value removed", "          - value: closed\n", "", "enum-value-removed", true),
    (
        "enum value added",
        "          - value: closed\n",
        "          - value: closed\n          - value: void\n",
        "enum-value-added",
        false,
    ),
    ("physical name changed", "physicalName: orders_tbl", "physicalName: orders_v2", "renamed", true),
    (
        "server removed",
        "servers:\n  - server: prod\n    type: postgres\n    host: db\n    port: 5432\n    database: shop\n    schema: sales\n",
        "",
        "server-removed",
        true,
    ),
    (
        "server added",
        "roles:\n",
        "  - server: lake\n    type: s3\n    location: s3://b/\nroles:\n",
        "server-added",
        false,
    ),
    ("server moved", "host: db", "host: db2", "server-changed", true),
    ("role removed", "roles:\n  - role: analyst\n    access: read\n", "", "role-removed", true),
    ("role access changed", "access: read", "access: write", "role-changed", true),
    ("quality stricter", "mustBeLessThan: 10", "mustBeLessThan: 5", "quality-stricter", true),
    ("quality looser", "mustBeLessThan: 10", "mustBeLessThan: 20", "quality-looser", false),
    ("between narrowed", "mustBeBetween: [10, 1000]", "mustBeBetween: [20, 1000]", "quality-stricter", true),
    ("between widened", "mustBeBetween: [10, 1000]", "mustBeBetween: [5, 2000]", "quality-looser", false),
    ("operator change that is stricter", "mustBeLessThan: 10", "mustBe: 0", "quality-stricter", true),
    (
        "threshold that neither contains",
        "mustBeBetween: [10, 1000]",
        "mustBeBetween: [500, 5000]",
        "quality-rule-changed",
        true,
    ),
    (
        "quality rule added",
        "            mustBeLessThan: 10\n",
        "            mustBeLessThan: 10\n          - metric: invalidValues\n            arguments:\n              validValues: [1]\n            mustBe: 0\n",
        "quality-rule-added",
        true,
    ),
    (
        "quality rule removed",
        "    quality:\n      - id: volume\n        metric: rowCount\n        mustBeBetween: [10, 1000]\n",
        "",
        "quality-rule-removed",
        false,
    ),
    (
        "quality rule checks something else",
        "        metric: rowCount\n        mustBeBetween",
        "        metric: duplicateValues\n        arguments:\n          properties: [id]\n        mustBeBetween",
        "quality-rule-changed",
        true,
    ),
    ("sla weaker", "    value: 4\n    unit: d", "    value: 5\n    unit: days", "sla-weaker", true),
    ("sla stronger in other units", "    value: 4\n    unit: d", "    value: 48\n    unit: h", "sla-stronger", false),
    ("retention weaker", "    value: 3\n    unit: y", "    value: 1\n    unit: y", "sla-weaker", true),
    ("sla removed", "  - property: retention\n    value: 3\n    unit: y\n", "", "sla-removed", true),
    (
        "sla added",
        "  - property: latency\n",
        "  - property: frequency\n    value: 1\n    unit: d\n  - property: latency\n",
        "sla-added",
        false,
    ),
    ("sla unordered change", "value: 09:00-08:00", "value: 10:00-08:00", "sla-changed", true),
    ("description changed", "purpose: Orders", "purpose: All orders", "metadata-changed", false),
    ("id changed", "id: orders\n", "id: orders2\n", "id-changed", true),
];

#[test]
fn every_change_class_is_classified() {
    for (what, from, to, code, breaking) in CASES {
        let report = compare(from, to, "2.0.0");
        let found = report.changes.iter().find(|c| c.code == *code);
        let Some(change) = found else { panic!("{what}: no {code} in {:#?}", report.changes) };
        assert_eq!(change.breaking, *breaking, "{what}: {change:?}");
    }
}

#[test]
fn reordering_is_not_a_change() {
    let reordered = BASE.replacen(
        "      - name: id\n        logicalType: string\n        required: true\n        unique: true\n",
        "",
        1,
    ).replacen("    quality:\n      - id: volume", "      - name: id\n        logicalType: string\n        required: true\n        unique: true\n    quality:\n      - id: volume", 1);
    let report = diff::diff(&contract(BASE), &contract(&reordered));
    assert!(report.changes.is_empty(), "{:#?}", report.changes);
}

#[test]
fn breaking_changes_need_a_major_bump() {
    let minor = compare("maxLength: 20", "maxLength: 10", "1.1.0");
    assert_eq!(minor.bump, Bump::Minor);
    assert!(minor.problem.as_deref().is_some_and(|p| p.contains("major")), "{:?}", minor.problem);
    let major = compare("maxLength: 20", "maxLength: 10", "v2.0.0");
    assert_eq!(major.bump, Bump::Major);
    assert_eq!(major.problem, None);
    let compatible = compare("maxLength: 20", "maxLength: 40", "1.0.1");
    assert_eq!(compatible.bump, Bump::Patch);
    assert_eq!(compatible.problem, None);
}

#[test]
fn versions_that_are_not_semver_cannot_be_compared() {
    let report = compare("maxLength: 20", "maxLength: 10", "next");
    assert_eq!(report.bump, Bump::Unknown);
    assert!(report.problem.as_deref().is_some_and(|p| p.contains("cannot be compared")));
    let same_major = compare("maxLength: 20", "maxLength: 10", "v1.0.0");
    assert_eq!(same_major.bump, Bump::Same);
    assert!(same_major.problem.is_some());
}

#[test]
fn a_downgrade_is_refused() {
    let report = compare("purpose: Orders", "purpose: Older", "0.9.0");
    assert_eq!(report.bump, Bump::Downgrade);
    assert!(report.problem.is_some());
}
