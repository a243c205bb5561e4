//! Sample rows (`meshplane init data`): written in each file format, they pass every check of
//! the contract they were made for when the real engine tests them; the same call makes the
//! same rows; rules that cannot all be met are an error naming the column.

use std::path::PathBuf;

use meshplane_quality::files::Format;
use meshplane_quality::plan::compile;
use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::samples::{self, generate};
use meshplane_quality::target;
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::{Document, load};

/// A contract with a rule of every kind rows can be made for, on a local server at `path`.
fn contract(path: &str, format: &str) -> DataContract {
    let text = format!(
        r#"apiVersion: v3.2.0
kind: DataContract
id: everything
version: 1.0.0
status: active
servers:
  - {{ server: local, type: local, path: "{path}", format: {format} }}
schema:
  - name: things
    properties:
      - {{ name: id, logicalType: string, primaryKey: true, required: true, logicalTypeOptions: {{ pattern: '^T[0-9]{{6}}-[a-z]{{2,4}}$' }} }}
      - {{ name: email, logicalType: string, required: true, logicalTypeOptions: {{ format: email }} }}
      - {{ name: ref, logicalType: string, logicalTypeOptions: {{ format: uuid }}, unique: true }}
      - {{ name: code, logicalType: string, logicalTypeOptions: {{ minLength: 3, maxLength: 5 }} }}
      - name: status
        logicalType: string
        enum: [{{ value: open }}, {{ value: shut }}]
      - name: tier
        logicalType: string
        quality: [{{ metric: invalidValues, arguments: {{ validValues: [gold, silver] }}, mustBe: 0 }}]
      - {{ name: count, logicalType: integer, required: true, logicalTypeOptions: {{ minimum: 10, maximum: 20 }} }}
      - {{ name: ratio, logicalType: number, logicalTypeOptions: {{ exclusiveMinimum: 0, exclusiveMaximum: 1 }} }}
      - {{ name: amount, logicalType: number, quality: [{{ metric: nullValues, mustBe: 0 }}] }}
      - {{ name: active, logicalType: boolean, required: true }}
      - {{ name: day, logicalType: date, required: true }}
      - {{ name: at, logicalType: timestamp, required: true }}
    quality:
      - {{ metric: rowCount, mustBe: 7 }}
      - {{ metric: duplicateValues, arguments: {{ properties: [day, status] }}, mustBe: 0 }}
slaProperties:
  - {{ property: latency, value: 1, unit: h, element: things.at }}
  - {{ property: retention, value: 1, unit: d, element: things.at }}
"#
    );
    let loaded = load(&text);
    let Some(Document::Contract(c)) = loaded.documents.into_iter().next().and_then(|d| d.document) else {
        panic!("not a contract")
    };
    *c
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn rows_made_for_a_contract_pass_its_checks_in_every_format() {
    let dir = std::env::temp_dir().join(format!("mpq-samples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for format in [Format::Parquet, Format::Csv, Format::NdJson] {
        let file = dir.join(format!("things.{}", format.name()));
        let c = contract(&file.display().to_string(), format.name());
        let plan = compile(&c, None);
        let sample = generate(&plan.objects[0], None, now_ms()).unwrap();
        assert_eq!(sample.batch.num_rows(), 7, "the fewest rows the row count rule accepts");
        assert!(sample.not_considered.is_empty());
        samples::write(&sample.batch, format, &file, b',').unwrap();
        let server = target::pick_server(&c, None).unwrap();
        let report = target::test(&c, server, None, &PathBuf::new(), &Options::now(3)).await.unwrap();
        let failing: Vec<_> = report.results.iter().filter(|r| r.outcome != Outcome::Pass).collect();
        assert!(failing.is_empty(), "{}: {failing:#?}", format.name());
        assert!(report.results.len() > 30, "every kind of check ran: {}", report.results.len());
        let again = samples::write(&sample.batch, format, &file, b',').unwrap_err();
        assert!(again.contains("cannot create"), "never over an existing file: {again}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_same_call_makes_the_same_rows_and_impossible_rules_are_named() {
    let c = contract("unused.parquet", "parquet");
    let plan = compile(&c, None);
    let (one, two) =
        (generate(&plan.objects[0], None, 1_000_000).unwrap(), generate(&plan.objects[0], None, 1_000_000).unwrap());
    assert_eq!(one.batch, two.batch);
    let wrong = generate(&plan.objects[0], Some(8), 1_000_000).unwrap_err();
    assert!(wrong.contains("8 rows break the row count rule of `things`"), "{wrong}");

    // Eleven unique values between 10 and 20, no more.
    let text = "apiVersion: v3.1.0\nkind: DataContract\nid: small\nversion: 1.0.0\nstatus: active\nschema:\n  - name: t\n    \
                properties:\n      - { name: n, logicalType: integer, unique: true, logicalTypeOptions: { minimum: 10, maximum: 20 } }\n";
    let Some(Document::Contract(small)) = load(text).documents.remove(0).document else { panic!() };
    let plan = compile(&small, None);
    assert_eq!(generate(&plan.objects[0], Some(11), 0).unwrap().batch.num_rows(), 11);
    let error = generate(&plan.objects[0], Some(12), 0).unwrap_err();
    assert!(error.contains("column `n`: no unique values that meet its rules could be made for row 12"), "{error}");
}
