//! Running a stored contract's checks and keeping the report: on demand (the API) and on the
//! contract's schedules (the scheduler), the same way — and never inside the server.
//!
//! - **Where** the data is read comes from the block that holds the server, never from the
//!   contract: its endpoint and credentials, its paths confined to the port, and for
//!   PostgreSQL a login it makes for the run alone ([`Provisioner::test_target`]). A server no
//!   block of the platform holds is not tested.
//! - **How**: each run is a child process (`meshplane test-worker`, [`worker_main`]) given the
//!   job on its standard input, with a clean environment, an address-space limit
//!   (`RLIMIT_AS`) and a CPU-time limit (`RLIMIT_CPU`) set before it reads the job, killed at
//!   its deadline. meshplane's own kernels allocate outside DataFusion's memory pool, so the
//!   limit is the process's, not the pool's. A run that goes past a limit is stopped and
//!   reported as such; the server goes on. At most [`Sandbox::runs`] run at once.
//!
//! [`Provisioner::test_target`]: meshplane_core::block::Provisioner::test_target

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::block::{BlockError, Blocks, Call, Provisioner};
use meshplane_core::checking::TestTarget;
use meshplane_core::resource::Kind;
use meshplane_core::store::checks::Covered;
use meshplane_core::store::{Record, Store, TestRun};
use meshplane_core::{Error, ErrorCode};
use meshplane_quality::files::{Format, Location, S3Config};
use meshplane_quality::postgres::{Connection, Tls};
use meshplane_quality::run::Options;
use meshplane_quality::target::{Target, TestError, pick_server, plan_of, test_on};
use meshplane_spec::model::odcs::DataContract;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Any, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::reconciler::Settings;

/// How test runs are sandboxed.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The program that runs one test (`meshplane`), and its arguments (`test-worker`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The address space a run may use, in bytes.
    pub memory_bytes: u64,
    /// The CPU time a run may use, in seconds (all its threads together).
    pub cpu_seconds: u64,
    /// When a run is killed, however far it got.
    pub deadline: Duration,
    /// How many runs go at once (the others wait for a slot).
    pub runs: Arc<Semaphore>,
}

impl Default for Sandbox {
    /// This program as `test-worker`: 4 GiB, 20 CPU minutes, 10 minutes, 4 at once.
    fn default() -> Sandbox {
        Sandbox {
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("meshplane")),
            args: vec!["test-worker".into()],
            memory_bytes: 4 << 30,
            cpu_seconds: 1_200,
            deadline: Duration::from_secs(600),
            runs: Arc::new(Semaphore::new(4)),
        }
    }
}

/// What a run is to do: the job a worker reads on its standard input.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    /// The stored contract, as JSON.
    contract: Any,
    server: String,
    server_type: String,
    object: Option<String>,
    samples: usize,
    schedule: Option<String>,
    now_micros: i64,
    sql_timeout_ms: u64,
    target: TestTarget,
}

/// What a worker answers on its standard output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Answer {
    Report(Any),
    /// The data could not be reached.
    Unreachable(String),
    /// The run cannot happen as asked (an object the contract does not have, ...).
    Refused(String),
}

/// At most this many samples are kept per failed check.
pub const MAX_SAMPLES: usize = 100;

/// The stored contract `name` and its record.
pub async fn stored_contract(store: &Store, name: &str) -> Result<(DataContract, Record), Error> {
    let record = store.get(Kind::DataContract, name).await?;
    match record.contract().cloned() {
        Some(contract) => Ok((contract, record)),
        None => Err(Error::Store(format!("the stored document of {name} is not a contract"))),
    }
}

/// The contract a job's document (JSON) holds: decoded once in the worker process.
fn contract_of(spec: &Any) -> Option<DataContract> {
    match meshplane_spec::decode_json(spec)? {
        meshplane_spec::Document::Contract(contract) => Some(*contract),
        _ => None,
    }
}

fn untestable(message: String) -> Error {
    Error::invalid(ErrorCode::ServerNotTestable, message)
}

/// What a run asks for besides the contract.
pub struct Ask<'a> {
    pub server: Option<&'a str>,
    pub object: Option<&'a str>,
    pub samples: usize,
    /// Only the checks of this schedule (a scheduled run).
    pub schedule: Option<String>,
    /// What started the run, kept with its report.
    pub trigger: Any,
}

/// Runs the checks of contract `name` on one of its servers (the only one when none is
/// named), where the block holding it says, in a sandboxed child process; keeps the report,
/// marked with what started the run.
///
/// The run goes on in a task of its own to its end even when whoever asked goes away (a
/// client that disconnects): its slot is held, its test login ended and its report kept all
/// the same, so dropped requests cannot pile up logins or runs past [`Sandbox::runs`].
pub async fn run(
    store: &Store,
    blocks: &Blocks,
    settings: &Settings,
    name: &str,
    ask: Ask<'_>,
) -> Result<TestRun, Error> {
    let (contract, record) = stored_contract(store, name).await?;
    let server = pick_server(&contract, ask.server).map_err(refusal)?;
    let block = Arc::clone(blocks.holding(&record, &server.server).map_err(untestable)?);
    let to_end = Run {
        store: store.clone(),
        block,
        block_timeout: blocks.timeout,
        sandbox: (*settings.tests).clone(),
        metrics: Arc::clone(&settings.metrics),
        name: name.to_string(),
        record,
        server: server.server.clone(),
        server_type: server.kind.clone(),
        object: ask.object.map(str::to_string),
        samples: ask.samples.min(MAX_SAMPLES),
        schedule: ask.schedule,
        trigger: ask.trigger,
    };
    tokio::spawn(to_end.go()).await.map_err(|e| Error::Store(format!("the test run of {name} failed: {e}")))?
}

/// A run, owned by the task that takes it to its end.
struct Run {
    store: Store,
    block: Arc<dyn Provisioner>,
    block_timeout: Duration,
    sandbox: Sandbox,
    metrics: Arc<Metrics>,
    name: String,
    record: Record,
    server: String,
    server_type: String,
    object: Option<String>,
    samples: usize,
    schedule: Option<String>,
    trigger: Any,
}

impl Run {
    /// Takes the run to its end and counts it in the metrics.
    async fn go(self) -> Result<TestRun, Error> {
        let started = std::time::Instant::now();
        let ran = self.test().await;
        self.metrics.tested(ran.as_ref().ok().map(|run| &run.report), started.elapsed());
        ran
    }

    async fn test(&self) -> Result<TestRun, Error> {
        let Run { store, block, sandbox, name, record, .. } = &self;
        let call = Call::unfenced(store.installation().await?);
        let _slot = Arc::clone(&sandbox.runs).acquire_owned().await.map_err(|e| Error::Store(e.to_string()))?;
        // The deadline covers the whole run: the block's preparing it, then the child process.
        let deadline = tokio::time::Instant::now() + sandbox.deadline;
        let preparing = block.test_target(record, &self.server, sandbox.deadline, &call);
        let target = match tokio::time::timeout_at(deadline, preparing).await {
            Ok(target) => target.map_err(not_prepared)?,
            Err(_) => return Err(past_deadline(name, sandbox)),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let job = Job {
            contract: record.spec.clone(),
            server: self.server.clone(),
            server_type: self.server_type.clone(),
            object: self.object.clone(),
            samples: self.samples,
            schedule: self.schedule.clone(),
            now_micros: now.as_micros() as i64,
            sql_timeout_ms: 30_000.min(sandbox.deadline.as_millis() as u64),
            target,
        };
        let answer = sandboxed(sandbox, &job, name, deadline).await;
        // A login this cannot end is dropped by the block's sweep once its deadline passed.
        let _ = tokio::time::timeout(self.block_timeout, block.end_test(&job.target, &call)).await;
        let mut report = match answer? {
            Answer::Report(report) => report,
            Answer::Unreachable(why) => return Err(Error::invalid(ErrorCode::DataUnreachable, why)),
            Answer::Refused(why) => return Err(Error::invalid(ErrorCode::MalformedRequest, why)),
        };
        let failed =
            report["summary"]["fail"].as_u64().unwrap_or(0) > 0 || report["summary"]["error"].as_u64().unwrap_or(0) > 0;
        report["trigger"] = self.trigger.clone();
        let covered = match (&self.schedule, &self.object) {
            (Some(schedule), _) => Covered::Schedule(schedule),
            (None, Some(_)) => Covered::InRun,
            (None, None) => Covered::Every,
        };
        store.record_test(Kind::DataContract, name, record.generation, &self.server, failed, report, covered).await
    }
}

fn refusal(e: TestError) -> Error {
    match e {
        TestError::Connect(m) => Error::invalid(ErrorCode::DataUnreachable, m),
        other => Error::invalid(ErrorCode::MalformedRequest, other.to_string()),
    }
}

/// Why a block could not prepare a run: its store was unreachable (blocks say `cannot reach
/// ...`), or the server cannot be tested as it stands.
fn not_prepared(why: BlockError) -> Error {
    let why = why.to_string();
    if why.starts_with("cannot reach ") { Error::invalid(ErrorCode::DataUnreachable, why) } else { untestable(why) }
}

fn past_deadline(name: &str, sandbox: &Sandbox) -> Error {
    Error::invalid(
        ErrorCode::TestDeadline,
        format!(
            "the test run of {name} did not finish within its deadline of {} s and was stopped",
            sandbox.deadline.as_secs()
        ),
    )
}

/// The most a run may answer on its standard output; past it the run fails (its texts are
/// already cut short by the worker, so only a run with very many checks comes near it).
const MAX_ANSWER: u64 = 16 << 20;

/// How much of a run's standard error is kept, to say why it failed.
const MAX_STDERR: u64 = 64 << 10;

/// Runs `job` in a child process under the sandbox's limits, killed at
/// `deadline`, and reads its answer.
async fn sandboxed(sandbox: &Sandbox, job: &Job, name: &str, deadline: tokio::time::Instant) -> Result<Answer, Error> {
    let mut child = tokio::process::Command::new(&sandbox.program)
        .args(&sandbox.args)
        .env_clear()
        // The C allocator (which the C libraries in the run call) reserves 64 MiB of address
        // space for each thread that allocates: with one arena for all, the address space a
        // run holds stays close to the memory it uses, and the limit means what it says.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Store(format!("cannot start the test run ({}): {e}", sandbox.program.display())))?;
    limit(&child, sandbox)?;
    let body = serde_json::to_vec(job).map_err(|e| Error::Store(e.to_string()))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // Handing over the job and reading the answer are under the deadline too: a child that
    // reads nothing, or answers without end, is stopped like any other.
    let talk = async move {
        let (out, err, _) = tokio::join!(capped(stdout, MAX_ANSWER), capped(stderr, MAX_STDERR), async move {
            if let Some(mut stdin) = stdin {
                // A child that stops reading has failed; its exit says why.
                let _ = stdin.write_all(&body).await;
            }
        });
        let status = child.wait().await;
        (status, out, err)
    };
    let Ok((status, out, err)) = tokio::time::timeout_at(deadline, talk).await else {
        // Past the deadline the child is killed, as its handle is dropped.
        return Err(past_deadline(name, sandbox));
    };
    let status = status.map_err(|e| Error::Store(format!("the test run could not be followed: {e}")))?;
    let ((stdout, whole), (stderr, _)) = (out?, err?);
    if status.success() && !whole {
        let mib = MAX_ANSWER >> 20;
        let message = format!("the test run of {name} answered more than {mib} MiB and was stopped");
        return Err(Error::invalid(ErrorCode::TestLimit, message));
    }
    if status.success() {
        return serde_json::from_slice(&stdout)
            .map_err(|e| Error::Store(format!("the test run answered something that is not a report: {e}")));
    }
    Err(stopped(&status, &String::from_utf8_lossy(&stderr), name, sandbox))
}

/// Reads a child's stream to its end, keeping at most `cap` bytes (and whether that was all).
async fn capped<R: tokio::io::AsyncRead + Unpin>(stream: Option<R>, cap: u64) -> Result<(Vec<u8>, bool), Error> {
    let Some(mut stream) = stream else { return Ok((Vec::new(), true)) };
    let failed = |e: std::io::Error| Error::Store(format!("the test run could not be followed: {e}"));
    let mut kept = Vec::new();
    (&mut stream).take(cap).read_to_end(&mut kept).await.map_err(failed)?;
    let rest = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await.map_err(failed)?;
    Ok((kept, rest == 0))
}

/// The signals the kernel stops a process with at its soft and hard CPU limits (and the
/// out-of-memory killer with).
const SIGXCPU: i32 = 24;
const SIGKILL: i32 = 9;

/// Why a child that did not answer stopped: a limit it reached (a signal from the kernel, or
/// an allocation that failed), or a failure of the worker itself.
fn stopped(status: &std::process::ExitStatus, stderr: &str, name: &str, sandbox: &Sandbox) -> Error {
    use std::os::unix::process::ExitStatusExt;
    let (mib, cpu) = (sandbox.memory_bytes >> 20, sandbox.cpu_seconds);
    let limit = |message: String| Error::invalid(ErrorCode::TestLimit, message);
    let out_of_memory = stderr.contains("memory allocation of");
    match status.signal() {
        _ if out_of_memory => {
            limit(format!("the test run of {name} needed more than its {mib} MiB of memory and was stopped"))
        }
        Some(SIGXCPU) => limit(format!("the test run of {name} used its {cpu} s of CPU time and was stopped")),
        Some(SIGKILL) => limit(format!(
            "the test run of {name} was killed: it used its {cpu} s of CPU time, or the machine ran out of memory"
        )),
        _ => Error::Store(format!(
            "the test run of {name} failed ({status}): {}",
            last_said(stderr).unwrap_or("it said nothing")
        )),
    }
}

/// The last line a failed child wrote that says something: a panic's message, not the
/// hint about backtraces that follows it.
fn last_said(stderr: &str) -> Option<&str> {
    stderr.lines().rev().map(str::trim).find(|line| !line.is_empty() && !line.starts_with("note: run with"))
}

/// Sets the child's address-space and CPU limits (before it reads its job).
fn limit(child: &tokio::process::Child, sandbox: &Sandbox) -> Result<(), Error> {
    let pid = child.id().ok_or_else(|| Error::Store("the test run ended before it started".into()))?;
    let pid = i32::try_from(pid).map_err(|e| Error::Store(e.to_string()))?;
    let set = |resource, soft: u64, hard: u64| {
        rlimit::prlimit(pid, resource, Some((soft, hard)), None)
            .map_err(|e| Error::Store(format!("cannot limit the test run: {e}")))
    };
    set(rlimit::Resource::AS, sandbox.memory_bytes, sandbox.memory_bytes)?;
    set(rlimit::Resource::CPU, sandbox.cpu_seconds, sandbox.cpu_seconds + 1)?;
    // A run that aborts leaves no core file (it would hold the data it read).
    set(rlimit::Resource::CORE, 0, 0)?;
    Ok(())
}

/// Keeps a run that could not happen (the data was unreachable, the server not testable,
/// a limit reached), so the history shows it.
pub async fn record_failure(
    store: &Store,
    name: &str,
    server: &str,
    error: &Error,
    trigger: Any,
) -> Result<TestRun, Error> {
    let generation = store.get(Kind::DataContract, name).await?.generation;
    let report = json!({ "error": { "code": error.code(), "message": error.to_string() }, "trigger": trigger });
    store.record_test(Kind::DataContract, name, generation, server, true, report, Covered::InRun).await
}

/// The quality engine's view of a block's target.
fn engine_target(target: TestTarget) -> Result<Target, String> {
    Ok(match target {
        TestTarget::Files { files, delimiter, s3 } => {
            let locations = files
                .into_iter()
                .map(|f| {
                    let format =
                        Format::parse(&f.format).ok_or_else(|| format!("`{}` is not a file format", f.format))?;
                    Ok((f.table, Location { path: f.path, format }))
                })
                .collect::<Result<_, String>>()?;
            let s3 = s3.map(|s| S3Config {
                endpoint: s.endpoint,
                region: s.region,
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
            });
            Target::Files { locations, delimiter, s3: s3.unwrap_or_default() }
        }
        TestTarget::Postgres { host, port, database, schema, user, password, tls } => Target::Postgres(Connection {
            host,
            port,
            database,
            user,
            password: Some(password),
            schema,
            sandboxed: true,
            tls: match tls.mode.as_str() {
                "disable" | "" => Tls::Disable,
                "verify-full" => Tls::VerifyFull { root_cert: tls.root_cert.map(Into::into) },
                other => return Err(format!("TLS mode `{other}` is not one meshplane connects with")),
            },
        }),
    })
}

/// The test worker: reads one job on standard input, runs it, writes the answer on standard
/// output. What `meshplane test-worker` runs, in the child process [`run`] starts.
pub fn worker_main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(256 << 20).read_to_end(&mut input) {
        eprintln!("test-worker: cannot read the job: {e}");
        return ExitCode::from(2);
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("test-worker: the job is not one: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("test-worker: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let answer = runtime.block_on(work(job));
    let text = serde_json::to_string(&answer).unwrap_or_else(|e| format!("{{\"refused\":\"{e}\"}}"));
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

async fn work(job: Job) -> Answer {
    let Some(contract) = contract_of(&job.contract) else { return Answer::Refused("the job holds no contract".into()) };
    let options = Options {
        schedule: job.schedule,
        now_micros: job.now_micros,
        sql_timeout: Duration::from_millis(job.sql_timeout_ms),
        withhold_classified: true,
        // A test run reads nothing from its environment: the block gave it all it needs.
        env: Arc::new(|_| None),
        ..Options::now(job.samples)
    };
    let plan = match plan_of(&contract, job.object.as_deref(), &options) {
        Ok(plan) => plan,
        Err(e) => return Answer::Refused(e.to_string()),
    };
    let target = match engine_target(job.target) {
        Ok(target) => target,
        Err(e) => return Answer::Refused(e),
    };
    match test_on(&contract, (&job.server, &job.server_type), &plan, target, &options).await {
        Ok(report) => {
            let mut report = serde_json::to_value(&report).unwrap_or(Any::Null);
            cut_texts(&mut report);
            Answer::Report(report)
        }
        Err(TestError::Connect(why)) => Answer::Unreachable(cut(why)),
        Err(e) => Answer::Refused(cut(e.to_string())),
    }
}

/// The longest text a report keeps: an error can quote what the data holds (a value a cast
/// failed on, a result that is not a number), which can be as long as the data is.
const MAX_TEXT: usize = 2_000;

fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_TEXT) {
        let more = text[at..].chars().count();
        text.truncate(at);
        text.push_str(&format!("… ({more} more characters)"));
    }
    text
}

/// Cuts every text of a report to [`MAX_TEXT`] characters.
fn cut_texts(value: &mut Any) {
    match value {
        Any::String(text) => *text = cut(std::mem::take(text)),
        Any::Array(items) => items.iter_mut().for_each(cut_texts),
        Any::Object(fields) => fields.values_mut().for_each(cut_texts),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::last_said;

    #[test]
    fn a_panicking_runs_message_is_what_its_failure_says() {
        let stderr = "\nthread 'tokio-runtime-worker' (7) panicked at src/x.rs:1:2:\nOS can't spawn worker thread: Resource temporarily unavailable\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(last_said(stderr), Some("OS can't spawn worker thread: Resource temporarily unavailable"));
        assert_eq!(last_said("\n\n"), None);
    }
}
