//! Running a stored contract's checks and keeping the report: on demand (the API) and on the
//! contract's schedules (the scheduler), the same way.

use meshplane_core::resource::Kind;
use meshplane_core::store::{Store, TestRun};
use meshplane_core::{Error, ErrorCode};
use meshplane_quality::run::Options;
use meshplane_quality::target::{TestError, pick_server, test};
use meshplane_spec::model::odcs::DataContract;
use serde_json::{Value as Any, json};

/// The stored contract `name` and its generation.
pub async fn stored_contract(store: &Store, name: &str) -> Result<(DataContract, i64), Error> {
    let record = store.get(Kind::DataContract, name).await?;
    match meshplane_spec::load(&record.spec.to_string()).documents.pop().and_then(|d| d.document) {
        Some(meshplane_spec::Document::Contract(contract)) => Ok((*contract, record.generation)),
        _ => Err(Error::Store(format!("the stored document of {name} is not a contract"))),
    }
}

fn refusal(e: TestError) -> Error {
    match e {
        TestError::Connect(m) => Error::invalid(ErrorCode::DataUnreachable, m),
        other => Error::invalid(ErrorCode::MalformedRequest, other.to_string()),
    }
}

/// Runs the checks of contract `name` on one of its servers (the only one when `server` is
/// not given) and keeps the report, marked with what started the run. Local paths are read
/// relative to the server's working directory, with its permissions.
pub async fn run(
    store: &Store,
    name: &str,
    server: Option<&str>,
    object: Option<&str>,
    options: &Options,
    trigger: Any,
) -> Result<TestRun, Error> {
    let (contract, generation) = stored_contract(store, name).await?;
    let server = pick_server(&contract, server).map_err(refusal)?;
    let report = test(&contract, server, object, std::path::Path::new("."), options).await.map_err(refusal)?;
    let mut json = serde_json::to_value(&report).map_err(|e| Error::Store(e.to_string()))?;
    json["trigger"] = trigger;
    store.record_test(Kind::DataContract, name, generation, &report.server, report.failed(), json).await
}

/// Keeps a run that could not happen (the data was unreachable, the server unsupported), so
/// the history shows it.
pub async fn record_failure(
    store: &Store,
    name: &str,
    server: &str,
    error: &Error,
    trigger: Any,
) -> Result<TestRun, Error> {
    let generation = store.get(Kind::DataContract, name).await?.generation;
    let report = json!({ "error": { "code": error.code(), "message": error.to_string() }, "trigger": trigger });
    store.record_test(Kind::DataContract, name, generation, server, true, report).await
}
