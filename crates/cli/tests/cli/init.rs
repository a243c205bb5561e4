//! `meshplane init`: what it writes lints clean, alone and together, and it never writes over
//! a file or takes a value that would break the document.

use super::{meshplane, meshplane_in, stdout};

#[test]
fn init_writes_a_contract_and_a_product_of_it_that_lint_clean_together() {
    let dir = std::env::temp_dir().join(format!("mpcli-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let contract = dir.join("orders.odcs.yaml").display().to_string();
    let product = dir.join("orders.odps.yaml").display().to_string();
    let made =
        meshplane(&["init", "contract", "--id", "orders", "--domain", "sales", "--owner", "sam", "--out", &contract]);
    assert_eq!(made.status.code(), Some(0), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::fs::read_to_string(&contract).unwrap();
    assert!(text.contains("id: orders\n") && text.contains("domain: sales\n") && text.contains("# "), "{text}");
    let made = meshplane(&["init", "product", "--from", &contract, "--out", &product]);
    assert_eq!(made.status.code(), Some(0), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::fs::read_to_string(&product).unwrap();
    assert!(text.contains("contractId: orders\n") && text.contains("domain: sales\n"), "{text}");
    let linted = meshplane(&["lint", "--strict", &contract, &product]);
    assert_eq!(linted.status.code(), Some(0), "{}", stdout(&linted));
    assert!(stdout(&linted).contains("2 file(s) checked: 0 error(s), 0 warning(s)"), "{}", stdout(&linted));
    // Never over an existing file.
    let again = meshplane(&["init", "contract", "--out", &contract]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("an existing file is never overwritten"));
    assert!(std::fs::read_to_string(&contract).unwrap().contains("id: orders\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_on_standard_output_lints_clean_and_refuses_values_that_would_break_it() {
    let out = meshplane(&["init", "product"]);
    assert_eq!(out.status.code(), Some(0));
    let linted = meshplane_spec::lint::lint_text("product.odps.yaml", stdout(&out));
    assert!(!linted.diagnostics.iter().any(|d| d.is_error()), "{:?}", linted.diagnostics);
    for (args, message) in [
        (&["init", "contract", "--id", "a: b"][..], "--id `a: b`: use letters, digits"),
        (&["init", "contract", "--domain", "x\ny"][..], "--domain `x\ny`"),
        (
            &["init", "contract", "--from", "mesh/sales/orders.odcs.yaml"][..],
            "--from takes the contract a product provides",
        ),
    ] {
        let out = meshplane(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// `init data` for every contract of the example mesh: the rows go where each contract's
/// relative path says (from the working directory), and `meshplane test` passes on them.
#[test]
fn init_data_makes_rows_that_pass_every_example_contracts_tests() {
    let dir = std::env::temp_dir().join(format!("mpcli-init-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mesh = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    let mut contracts: Vec<_> = std::fs::read_dir(&mesh)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".odcs.yaml"))
        .collect();
    contracts.sort();
    assert_eq!(contracts.len(), 6);
    for contract in &contracts {
        let contract = contract.to_str().unwrap();
        let made = meshplane_in(&dir, &["init", "data", "--from", contract, "-o", "json"]);
        assert_eq!(made.status.code(), Some(0), "{contract}: {}", String::from_utf8_lossy(&made.stderr));
        let written: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
        let path = written[0]["path"].as_str().unwrap();
        assert!(path.starts_with("./data/") && path.ends_with("/sample.parquet"), "{written}");
        assert!(dir.join(path).is_file(), "{path} is under the working directory");
        let tested = meshplane_in(&dir, &["test", contract]);
        assert_eq!(tested.status.code(), Some(0), "{contract}: {}", stdout(&tested));
        let again = meshplane_in(&dir, &["init", "data", "--from", contract]);
        assert_eq!(again.status.code(), Some(2), "{contract}");
        assert!(String::from_utf8_lossy(&again.stderr).contains("is never overwritten"));
    }
    // The orders contract's SQL rule is named as not considered.
    let orders = mesh.join("sales/orders.odcs.yaml");
    let out = dir.join("orders.csv");
    let made =
        meshplane_in(&dir, &["init", "data", "--from", orders.to_str().unwrap(), "--out", "orders.csv", "--rows", "5"]);
    assert_eq!(stdout(&made), "wrote 5 rows of orders to orders.csv (csv)\n");
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("not made for orders.sql"),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 6, "a header and five rows");
    let _ = std::fs::remove_dir_all(&dir);
}
