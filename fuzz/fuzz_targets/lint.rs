//! Fuzzes the whole reading path: YAML/JSON parsing, decoding, every lint rule, and the
//! round trip of whatever model comes out. It must never panic, and a model serialized to
//! JSON must read back as the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshplane_spec::lint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let linted = lint::lint_text("fuzz", text);
    for loaded in &linted.documents {
        if let Some(document) = &loaded.document
            && !loaded.has_errors()
        {
            let json = serde_json::to_string(document).expect("serialize");
            let again = meshplane_spec::load(&json);
            let reread = again.documents.first().and_then(|d| d.document.as_ref());
            assert_eq!(Some(document), reread, "round trip changed the model");
        }
    }
});
