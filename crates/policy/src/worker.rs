//! Where evaluations run ([`Runner`]): in this process, or in a pool of limited child
//! processes ([`Pool`]), as a server runs them.
//!
//! A policy is code its author wrote, and the time budget is checked only between the steps
//! of an evaluation: one step over a value built of shared parts (doubled at each cheap step)
//! can run for hours, or allocate without end, and regorus has no memory limit. So a server
//! evaluates in child processes (`meshplane policy-worker`, [`serve`]) with an address-space
//! limit, and waits for each answer no longer than the policy's budget and a second: a worker
//! past that is killed, the evaluation counts as a denial, and the evaluations after it go to
//! a new worker. Workers live across evaluations: each compiles a module the first time it is
//! asked about it and keeps it, so an evaluation costs a round trip over a pipe.
//!
//! The protocol is one JSON line per batch on the worker's standard input (the inputs and
//! data once, then each evaluation asked), and one JSON line per answer on its standard
//! output, in the order asked: answers wait at most 10 ms in the worker, so when the parent
//! waits too long for one, the evaluation it waits for is the one that did not end.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError, mpsc};
use std::time::Duration;

use meshplane_spec::model::policy::Policy;
use serde::{Deserialize, Serialize};
use serde_json::Value as Any;

use crate::{AccessAnswer, Compiled, Input, Verdict, compile};

/// One evaluation asked of a [`Runner`].
pub struct Job<'a> {
    pub compiled: &'a Compiled,
    pub input: &'a Input,
    pub data: Option<&'a Any>,
    pub budget: Duration,
    /// A policy on access: its access rules are read too ([`Compiled::decide`]).
    pub access: bool,
    /// Only [`Compiled::trial`] (the input and data are not read).
    pub trial: bool,
}

/// What one evaluation answered.
pub type Answer = (Verdict, AccessAnswer);

impl<'a> Job<'a> {
    /// A trial of `compiled`, whose failure is regorus's message.
    pub fn trial(compiled: &'a Compiled, empty: &'a Input) -> Job<'a> {
        Job { compiled, input: empty, data: None, budget: crate::DEFAULT_BUDGET, access: false, trial: true }
    }

    fn here(&self) -> Answer {
        if self.trial {
            let verdict = self.compiled.trial().map_or_else(Verdict::Failed, |_| Verdict::Pass);
            return (verdict, AccessAnswer::default());
        }
        if self.access {
            self.compiled.decide(self.input, self.data, self.budget)
        } else {
            (self.compiled.evaluate(self.input, self.data, self.budget), AccessAnswer::default())
        }
    }
}

/// Where evaluations run.
pub enum Runner {
    /// In this process: the CLI's evaluations of its user's own policies, and tests.
    InProcess,
    /// In limited child processes: a server's.
    Workers(Box<Pool>),
}

impl Runner {
    /// A policy's module, ready to be asked about: compiled here, or (workers) only checked
    /// without parsing it here ([`crate::prescan`]) and compiled by the worker that runs it.
    pub fn prepare(&self, policy: &Policy) -> Result<Compiled, Vec<meshplane_spec::Diagnostic>> {
        match self {
            Runner::InProcess => compile(policy),
            Runner::Workers(_) => crate::prescan(policy).map(|_| Compiled::elsewhere(policy)),
        }
    }

    /// Every job's answer, in order.
    pub fn run(&self, jobs: &[Job<'_>]) -> Vec<Answer> {
        match self {
            Runner::InProcess => {
                let failed = || jobs.iter().map(|_| failed("the policy engine failed".into())).collect();
                crate::deep_stack(|| jobs.iter().map(Job::here).collect()).unwrap_or_else(failed)
            }
            Runner::Workers(pool) => pool.run(jobs),
        }
    }
}

/// One evaluation as a worker is asked it: the module's source only the first time.
#[derive(Serialize, Deserialize)]
struct Ask {
    serial: u64,
    id: String,
    source: Option<(Vec<String>, String)>,
    input: usize,
    data: Option<usize>,
    budget_ms: u64,
    access: bool,
    /// Only [`Compiled::trial`]: the answer is a pass, or the failure with its message.
    #[serde(default)]
    trial: bool,
}

/// A batch: written with the parent's values borrowed (`J = &Any`), read as owned ones.
#[derive(Serialize, Deserialize)]
struct Batch<J> {
    inputs: Vec<J>,
    datas: Vec<J>,
    asks: Vec<Ask>,
}

/// How long past its budget an answer may come (the worker compiles a module it has not seen
/// yet, and the answer crosses a pipe).
const SLACK: Duration = Duration::from_secs(1);

/// How long answers may wait in a worker before they are sent.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// The longest line an answer can be: 100 violations of three strings of 2,000 characters.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// The deepest input a worker reads (its JSON reader's limit is 128 levels).
const MAX_INPUT_DEPTH: usize = 120;

/// How long a policy whose evaluation outlived its time counts as a denial without being run
/// again: a hostile policy holds a worker for its budget and a second at most once in this.
const COOLDOWN: Duration = Duration::from_secs(60);

/// A worker that has compiled this many modules is replaced (policies change rarely; this
/// bounds what a long-lived worker keeps).
const MAX_MODULES: usize = 2_000;

/// Child processes that evaluate policies, each with an address-space limit.
pub struct Pool {
    program: PathBuf,
    args: Vec<String>,
    memory_bytes: u64,
    slots: Vec<Mutex<Option<Worker>>>,
    /// The worker that tries modules as they are applied: a loop of trials does not hold the
    /// ones that evaluate.
    trials: Mutex<Option<Worker>>,
    next: AtomicUsize,
    /// The modules (by whose they are and their text) whose evaluation outlived its time,
    /// when, and how.
    tripped: Mutex<HashMap<(String, String), (std::time::Instant, String)>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// What was read of its answers and not yet taken.
    read: Vec<u8>,
    /// The modules it was given.
    known: HashSet<u64>,
}

/// Why no answer came.
enum Silence {
    /// None within its time.
    Late,
    /// The worker's output ended, or was no answer (a line past MAX_ANSWER_BYTES).
    Ended,
}

impl Worker {
    /// Its next line of output, waiting at most `wait` (read on this thread: a wait costs one
    /// wake-up).
    fn line(&mut self, wait: Duration) -> Result<String, Silence> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.read.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.read.drain(..=end).collect();
                return String::from_utf8(line).map_err(|_| Silence::Ended);
            }
            if self.read.len() as u64 > MAX_ANSWER_BYTES {
                return Err(Silence::Ended);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let timeout = rustix::event::Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut ready = [rustix::event::PollFd::new(&self.stdout, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut ready, Some(&timeout)) {
                Ok(0) => return Err(Silence::Late),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Err(Silence::Ended),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stdout.read(&mut chunk) {
                Ok(0) | Err(_) => return Err(Silence::Ended),
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pool {
    /// `workers` processes at most (started when first needed), each `program args` (which
    /// runs [`serve`]) limited to `memory_bytes` of address space.
    pub fn new(program: PathBuf, args: Vec<String>, workers: usize, memory_bytes: u64) -> Pool {
        let slots = (0..workers.max(1)).map(|_| Mutex::new(None)).collect();
        let (trials, tripped, next) = (Mutex::new(None), Mutex::default(), AtomicUsize::new(0));
        Pool { program, args, memory_bytes, slots, trials, next, tripped }
    }

    /// A free worker's slot, or the next one's when every one is busy.
    fn slot(&self) -> MutexGuard<'_, Option<Worker>> {
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("the policy worker could not start: {e}"))?;
        // The limits hold before the worker is given anything.
        let limited = i32::try_from(child.id()).map_err(|e| e.to_string()).and_then(|pid| {
            let set = |resource, limit| rlimit::prlimit(pid, resource, Some((limit, limit)), None);
            // Its memory, and the deep stack it evaluates on.
            set(rlimit::Resource::AS, self.memory_bytes + crate::DEEP_STACK_BYTES as u64)
                .and_then(|_| set(rlimit::Resource::CORE, 0))
                .map_err(|e| format!("the policy worker could not be limited: {e}"))
        });
        if let Err(why) = limited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the policy worker has no pipes".into());
        };
        Ok(Worker { child, stdin, stdout, read: Vec::new(), known: HashSet::new() })
    }

    fn run<'a>(&self, jobs: &[Job<'a>]) -> Vec<Answer> {
        let mut depths: Vec<(&'a Input, usize)> = Vec::new();
        let mut too_deep = |input: &'a Input| match depths.iter().find(|(i, _)| std::ptr::eq(*i, input)) {
            Some((_, d)) => *d > MAX_INPUT_DEPTH,
            None => {
                let d = depth(&input.json);
                depths.push((input, d));
                d > MAX_INPUT_DEPTH
            }
        };
        let mut answers: Vec<Option<Answer>> = jobs.iter().map(|job| self.refused(job, too_deep(job.input))).collect();
        let asked: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_none()).collect();
        let to_ask: Vec<&Job<'_>> = asked.iter().map(|&i| &jobs[i]).collect();
        let mut got = Vec::with_capacity(to_ask.len());
        let mut alone = false;
        while got.len() < to_ask.len() {
            let rest = &to_ask[got.len()..];
            let mut slot = if rest.iter().all(|j| j.trial) {
                self.trials.lock().unwrap_or_else(PoisonError::into_inner)
            } else {
                self.slot()
            };
            alone = self.run_on(&mut slot, if alone { &rest[..1] } else { rest }, &mut got);
        }
        for (i, answer) in asked.into_iter().zip(got) {
            answers[i] = Some(answer);
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| failed("no answer".into()))).collect()
    }

    /// The answer for a job that is not to be asked: its module outlived its time a moment
    /// ago, or its input is deeper than a worker reads.
    fn refused(&self, job: &Job<'_>, too_deep: bool) -> Option<Answer> {
        if too_deep {
            return Some(failed(format!("its input nests deeper than {MAX_INPUT_DEPTH} levels")));
        }
        let mut tripped = self.tripped.lock().unwrap_or_else(PoisonError::into_inner);
        tripped.retain(|_, (at, _)| at.elapsed() < COOLDOWN);
        let (_, why) = tripped.get(&(job.compiled.owner.clone(), job.compiled.source.1.clone()))?;
        Some(failed(format!("{why} a moment ago; it is not run again for {} s", COOLDOWN.as_secs())))
    }

    fn trip(&self, job: &Job<'_>, why: &str) {
        let mut tripped = self.tripped.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (job.compiled.owner.clone(), job.compiled.source.1.clone());
        tripped.insert(key, (std::time::Instant::now(), why.to_string()));
    }

    /// Asks the slot's worker (started when there is none) about `jobs`, pushing each answer;
    /// stops at the first evaluation that outlives its time or ends the worker, which is
    /// then dropped (the rest go to a new one).
    /// Whether the next attempt must ask about the first job left alone: the worker ended
    /// while a later answer was awaited, which an earlier one, still in the worker's buffer,
    /// may have caused.
    fn run_on(&self, slot: &mut Option<Worker>, jobs: &[&Job<'_>], answers: &mut Vec<Answer>) -> bool {
        if slot.as_ref().is_some_and(|w| w.known.len() > MAX_MODULES) {
            *slot = None;
        }
        if slot.is_none() {
            match self.spawn() {
                Ok(worker) => *slot = Some(worker),
                Err(why) => {
                    answers.extend(jobs.iter().map(|_| failed(why.clone())));
                    return false;
                }
            }
        }
        let Some(worker) = slot.as_mut() else { return false };
        let batch = batch(jobs, &worker.known);
        // The modules compiled in this batch: their first answer's time includes compiling.
        let compiled_now: HashSet<u64> = batch.asks.iter().filter(|a| a.source.is_some()).map(|a| a.serial).collect();
        let sent = serde_json::to_string(&batch).map_err(|e| e.to_string()).and_then(|line| {
            writeln!(worker.stdin, "{line}").and_then(|_| worker.stdin.flush()).map_err(|e| e.to_string())
        });
        if let Err(why) = sent {
            *slot = None;
            answers.extend(jobs.iter().map(|_| failed(format!("the policy worker stopped: {why}"))));
            return false;
        }
        worker.known.extend(jobs.iter().map(|j| j.compiled.serial));
        for job in jobs {
            let waiting = std::time::Instant::now();
            let answer = match worker.line(job.budget + SLACK) {
                Ok(line) => {
                    serde_json::from_str::<Answer>(&line).map_err(|_| "its worker answered what is no answer".into())
                }
                // Every answer before it came (a worker's answers wait at most FLUSH_EVERY):
                // the silence is this evaluation's.
                Err(Silence::Late) => {
                    Err(format!("it ran past its budget of {} ms, and its worker was stopped", job.budget.as_millis()))
                }
                // Answers may still have been in the worker's buffer: only a job asked alone
                // is blamed for the worker's end; otherwise the next batch holds the job alone.
                Err(Silence::Ended) if jobs.len() > 1 => {
                    *slot = None;
                    return true;
                }
                Err(Silence::Ended) => Err(format!(
                    "it ended its worker (past its memory limit of {} MiB, or a crash)",
                    self.memory_bytes >> 20
                )),
            };
            match answer {
                Ok(answer) => {
                    // One step of an evaluation can outlast the budget and still end within
                    // the wait: such a policy holds a worker all the same.
                    let spent = waiting.elapsed();
                    if spent > job.budget * 2 + FLUSH_EVERY * 10 && !compiled_now.contains(&job.compiled.serial) {
                        let ms = spent.as_millis();
                        self.trip(job, &format!("its evaluation took {ms} ms, past twice its budget"));
                    }
                    answers.push(answer);
                }
                Err(why) => {
                    self.trip(job, &why);
                    answers.push(failed(why));
                    *slot = None;
                    return false;
                }
            }
        }
        false
    }
}

fn failed(why: String) -> Answer {
    (Verdict::Failed(why), AccessAnswer::default())
}

/// How deep a JSON value nests.
fn depth(value: &Any) -> usize {
    match value {
        Any::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Any::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The batch that asks a worker about `jobs`: each input and data once, each module's source
/// when the worker does not know it.
fn batch<'a>(jobs: &[&Job<'a>], known: &HashSet<u64>) -> Batch<&'a Any> {
    let mut inputs: Vec<&Input> = Vec::new();
    let mut datas: Vec<&Any> = Vec::new();
    let mut asks = Vec::with_capacity(jobs.len());
    for job in jobs {
        let input = inputs.iter().position(|i| std::ptr::eq(*i, job.input)).unwrap_or_else(|| {
            inputs.push(job.input);
            inputs.len() - 1
        });
        let data = job.data.map(|d| {
            datas.iter().position(|x| std::ptr::eq(*x, d)).unwrap_or_else(|| {
                datas.push(d);
                datas.len() - 1
            })
        });
        let serial = job.compiled.serial;
        let source = (!known.contains(&serial)).then(|| (*job.compiled.source).clone());
        let budget_ms = u64::try_from(job.budget.as_millis()).unwrap_or(u64::MAX);
        let (id, access, trial) = (job.compiled.id.clone(), job.access, job.trial);
        asks.push(Ask { serial, id, source, input, data, budget_ms, access, trial });
    }
    Batch { inputs: inputs.into_iter().map(|i| &i.json).collect(), datas, asks }
}

/// A worker's life (`meshplane policy-worker`): answers each batch read from standard input
/// until it ends. Its parent sets its limits before it is given anything.
pub fn serve() -> ExitCode {
    crate::deep_stack(serve_here).unwrap_or(ExitCode::FAILURE)
}

fn serve_here() -> ExitCode {
    let mut modules: HashMap<u64, Result<Compiled, String>> = HashMap::new();
    let out = Outbox::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(mut batch) = serde_json::from_str::<Batch<Any>>(&line) else { return ExitCode::from(2) };
        let inputs: Vec<Input> = batch.inputs.drain(..).map(Input::owned).collect();
        out.begin();
        for ask in batch.asks {
            if let Some((actions, rego)) = ask.source {
                modules.entry(ask.serial).or_insert_with(|| {
                    let policy = Policy { id: ask.id.clone(), actions: Some(actions), rego, ..Policy::default() };
                    compile(&policy).map_err(|problems| {
                        problems.first().map_or("the module does not compile".into(), |p| p.message.clone())
                    })
                });
            }
            let answer = match (modules.get(&ask.serial), inputs.get(ask.input)) {
                (Some(Ok(compiled)), Some(input)) => Job {
                    compiled,
                    input,
                    data: ask.data.and_then(|d| batch.datas.get(d)),
                    budget: Duration::from_millis(ask.budget_ms),
                    access: ask.access,
                    trial: ask.trial,
                }
                .here(),
                (Some(Err(why)), _) => (Verdict::Failed(why.clone()), AccessAnswer::default()),
                _ => (Verdict::Failed("the worker was not given the module".into()), AccessAnswer::default()),
            };
            out.push(&answer);
            if ask.trial {
                // A trial's module is compiled for this answer only.
                modules.remove(&ask.serial);
            }
        }
        if out.end().is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// A worker's answers on their way out: written by the evaluating thread and sent at the end
/// of each batch — and, while a batch is evaluated, by a thread of their own whenever they are
/// FLUSH_EVERY old, so that the answers before an evaluation that never ends still reach the
/// parent, and only that one is blamed.
struct Outbox {
    pending: std::sync::Arc<Mutex<Vec<u8>>>,
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    wake: mpsc::Sender<()>,
}

impl Outbox {
    fn new() -> Outbox {
        let pending = std::sync::Arc::new(Mutex::new(Vec::new()));
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (wake, woken) = mpsc::channel::<()>();
        let (shared, working) = (std::sync::Arc::clone(&pending), std::sync::Arc::clone(&busy));
        std::thread::spawn(move || {
            while woken.recv().is_ok() {
                while working.load(Ordering::Acquire) {
                    std::thread::sleep(FLUSH_EVERY);
                    if send(&shared).is_err() {
                        std::process::exit(1);
                    }
                }
            }
        });
        Outbox { pending, busy, wake }
    }

    /// A batch begins: its answers are sent as they age.
    fn begin(&self) {
        self.busy.store(true, Ordering::Release);
        let _ = self.wake.send(());
    }

    fn push(&self, answer: &Answer) {
        let line = serde_json::to_string(answer).unwrap_or_else(|_| "null".into());
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(line.as_bytes());
        pending.push(b'\n');
    }

    /// The batch is answered: everything goes out now.
    fn end(&self) -> std::io::Result<()> {
        self.busy.store(false, Ordering::Release);
        send(&self.pending)
    }
}

fn send(pending: &Mutex<Vec<u8>>) -> std::io::Result<()> {
    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
    if pending.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&pending)?;
    out.flush()?;
    pending.clear();
    Ok(())
}
