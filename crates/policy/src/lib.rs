//! Rego policies, evaluated by regorus: a policy document's module is compiled once
//! ([`compile`]: every problem with its line in the document), then asked about a change
//! ([`Compiled::evaluate`]) within a time budget — in this process, or, as a server does it,
//! in limited worker processes ([`worker`]; the server itself only scans a module's text,
//! [`prescan`], and never parses it). A policy answers through the rule
//! `violations`: a set of messages, or of objects `{"msg": ..., "path": ..., "rule": ...}`
//! (`path` points into the document, `rule` names the rule for the report; it defaults to the
//! policy's id). A policy on access requests and decisions may also answer through
//! [`ACCESS_RULES`] ([`Compiled::decide`]): `approve` (true: approved without a human),
//! `approvers` (names that must approve as well) and `max_days` (the longest the grant may
//! last). An evaluation that fails or runs out of time is a verdict of its own,
//! [`Verdict::Failed`], which callers count as a denial: a policy never fails open.
//!
//! The module sees only what the caller puts in `input` and `data`, and calls only the
//! built-ins of [`BUILTINS`] (and its own functions): the time budget is checked between the
//! evaluation's steps, not inside one built-in, so a built-in that could make a value of any
//! size in one call (`numbers.range`, `replace`, `sprintf` with a width) or reach outside the
//! evaluation (`opa.runtime` reads the environment, `net.*`, `http.send`, `print`) is refused
//! when the policy is compiled. A `sprintf` format must be a literal without a width or
//! precision of three digits or more.

use std::num::NonZeroU32;
use std::time::Duration;

use meshplane_spec::model::policy::Policy;
use meshplane_spec::tree::Span;
use meshplane_spec::{Code, Diagnostic};
use serde::{Deserialize, Serialize};
use serde_json::Value as Any;

/// How long one evaluation of one policy may take unless the platform says otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);

/// The largest module a policy may hold: preparing a module takes time quadratic in its
/// statements, outside the evaluation's budget.
pub const MAX_MODULE_BYTES: usize = 16 * 1024;

/// The deepest nesting of brackets a module may have: regorus's parser takes time exponential
/// in it (twice as long per level: 20 levels take most of a second, 200 never end).
pub const MAX_NESTING: usize = 12;

/// The longest run of minus signs a module may have with nothing but space between them:
/// regorus parses a run of unary minus signs in time quadratic in its length.
pub const MAX_MINUS_RUN: usize = 4;

/// The deepest nesting of `(`, `[` and `{` in a Rego text, and its longest run of minus signs
/// with only space between them, outside strings and comments.
fn nesting(text: &str) -> (usize, usize) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut run, mut longest) = (0usize, 0usize);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '-' => {
                run += 1;
                longest = longest.max(run);
            }
            // A comment is space to regorus's lexer.
            c if c.is_whitespace() || c == '#' => {}
            _ => run = 0,
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '`' => {
                chars.by_ref().find(|&c| c == '`');
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (deepest, longest)
}

/// At most this many violations of one policy are reported, each message at most this long.
const MAX_VIOLATIONS: usize = 100;
const MAX_MESSAGE_CHARS: usize = 2_000;

/// The rule every policy answers through.
pub const RULE: &str = "violations";

/// What follows a module's package to make a path no rule can have (it is not a valid path):
/// asking for it prepares the module without running any of it.
const NO_RULE: &str = "..";

/// The rules a policy on access may answer through besides [`RULE`].
pub const ACCESS_RULES: &[&str] = &["approve", "approvers", "max_days"];

/// The actions whose policies may answer through [`ACCESS_RULES`].
pub const ACCESS_ACTIONS: &[&str] = &["access-request", "access-decision"];

/// The longest cap a policy may set on a grant (a hundred years).
const MAX_DAYS: f64 = 36_500.0;

/// At most this many extra approvers one policy may name, each name at most this long.
const MAX_APPROVERS: usize = 20;
const MAX_NAME_CHARS: usize = 128;

/// The name the module is compiled under; regorus's messages start with it.
const SOURCE: &str = "rego";

/// The built-ins a policy may call: those whose answer is no larger than their arguments
/// (or a small multiple of them).
pub const BUILTINS: &[&str] = &[
    // aggregates and collections
    "count",
    "sum",
    "product",
    "max",
    "min",
    "sort",
    "array.concat",
    "array.slice",
    "array.reverse",
    "intersection",
    "union",
    "object.get",
    "object.keys",
    "object.remove",
    "object.filter",
    "object.union",
    "object.union_n",
    "json.filter",
    "json.remove",
    // strings
    "concat",
    "contains",
    "endswith",
    "startswith",
    "format_int",
    "indexof",
    "indexof_n",
    "lower",
    "upper",
    "split",
    "sprintf",
    "substring",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_suffix",
    "trim_space",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "regex.match",
    "regex.is_valid",
    "regex.split",
    "regex.find_n",
    "regex.find_all_string_submatch_n",
    "glob.match",
    "glob.quote_meta",
    "semver.compare",
    "semver.is_valid",
    // types and conversions
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "type_name",
    "to_number",
    "abs",
    "ceil",
    "floor",
    "round",
    "units.parse",
    "units.parse_bytes",
    // encodings
    "base64.encode",
    "base64.decode",
    "base64.is_valid",
    "hex.encode",
    "hex.decode",
    "json.unmarshal",
    "json.is_valid",
    // time
    "time.now_ns",
    "time.parse_rfc3339_ns",
    "time.parse_ns",
    "time.parse_duration_ns",
    "time.date",
    "time.clock",
    "time.weekday",
    "time.add_date",
    "time.diff",
];

/// A policy's module, compiled and ready to be evaluated (cloning it is cheap).
#[derive(Clone)]
pub struct Compiled {
    /// The prepared engine; `None` for a module compiled only where it is evaluated (a
    /// server's policy workers: [`worker::Runner::check`]).
    engine: Option<regorus::Engine>,
    /// Unique in this process: what a policy worker keeps its own compilation under.
    serial: u64,
    /// What a worker compiles: the policy's id, actions and module.
    source: std::sync::Arc<(Vec<String>, String)>,
    /// The module's package, `data.<package>`.
    package: String,
    /// Which of [`RULE`] and [`ACCESS_RULES`] it declares.
    declared: Vec<&'static str>,
    /// The policy's id: the rule name of a violation that names none.
    pub id: String,
    /// Whose it is (`DOMAIN/ID`): what a cooldown is kept under, with the text.
    owner: String,
}

/// What a policy on access answered besides its violations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessAnswer {
    /// `approve`: the request is approved without a human (unless another policy objects).
    pub approve: bool,
    /// `approvers`: names (users or groups) one of whom must approve as well.
    pub approvers: Vec<String>,
    /// `max_days`: the longest the grant may last once active.
    pub max_days: Option<f64>,
}

/// The input of an evaluation, converted once for every policy that is asked about it (and
/// kept as JSON for the policy workers).
pub struct Input {
    value: regorus::Value,
    json: Any,
}

impl Input {
    pub fn new(json: &Any) -> Input {
        Input { value: regorus::Value::from(json.clone()), json: json.clone() }
    }

    /// An input that is evaluated here only (a worker's): its JSON is not kept.
    fn owned(json: Any) -> Input {
        Input { value: regorus::Value::from(json), json: Any::Null }
    }
}

/// One violation a policy found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What a policy said about one change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Pass,
    Violated(Vec<Violation>),
    /// The evaluation failed (an error, or past its budget): counted as a denial.
    Failed(String),
}

static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Compiles a policy document's module, or says what is wrong with it, each problem at its
/// line in the document.
pub fn compile(policy: &Policy) -> Result<Compiled, Vec<Diagnostic>> {
    deep_stack(|| compile_here(policy)).unwrap_or_else(|| {
        Err(vec![Diagnostic::new(Code::RegoInvalid, policy.at.field("rego"), "the policy engine could not start")])
    })
}

/// The stack a module is parsed, compiled and evaluated on: regorus's parser and interpreter
/// recurse without a depth limit (a chain of 5,000 unary minus signs is 10 KB of module), and
/// a stack overflow aborts the process. A module of at most [`MAX_MODULE_BYTES`] recurses at
/// most that deep, which this stack holds; it is only reserved, not used, until needed.
pub const DEEP_STACK_BYTES: usize = 128 << 20;

/// Runs `work` on a thread of its own with [`DEEP_STACK_BYTES`] of stack (`None` when no such
/// thread can be had, or the work panicked).
pub(crate) fn deep_stack<T: Send>(work: impl FnOnce() -> T + Send) -> Option<T> {
    thread_local!(static DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DEEP.with(std::cell::Cell::get) {
        // Already on such a thread (a worker's): one deep stack is enough.
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok();
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().stack_size(DEEP_STACK_BYTES).spawn_scoped(scope, || {
            DEEP.with(|deep| deep.set(true));
            work()
        });
        thread.ok()?.join().ok()
    })
}

/// What can be checked of a module without parsing it (its size, its nesting, its runs of
/// minus signs): regorus's parser can take time exponential in what these bound, so a server
/// parses a module only in a policy worker.
pub fn prescan(policy: &Policy) -> Result<(), Vec<Diagnostic>> {
    if policy.rego.len() > MAX_MODULE_BYTES {
        let message =
            format!("the module is {} bytes, more than the {MAX_MODULE_BYTES} a policy may hold", policy.rego.len());
        return Err(vec![Diagnostic::new(Code::RegoInvalid, policy.at.field("rego"), message)]);
    }
    let (deepest, minus_run) = nesting(&policy.rego);
    if deepest > MAX_NESTING {
        let message = format!("the module nests brackets more than {MAX_NESTING} deep");
        let hint = "name the inner parts (`inner := [...]`) instead of nesting them";
        return Err(vec![Diagnostic::new(Code::RegoInvalid, policy.at.field("rego"), message).hint(hint)]);
    }
    if minus_run > MAX_MINUS_RUN {
        let message = format!("the module has more than {MAX_MINUS_RUN} minus signs in a row");
        return Err(vec![Diagnostic::new(Code::RegoInvalid, policy.at.field("rego"), message)]);
    }
    Ok(())
}

fn owner_of(policy: &Policy) -> String {
    format!("{}/{}", policy.domain.as_deref().unwrap_or_default(), policy.id)
}

impl Compiled {
    /// A module to be compiled only where it is evaluated (its [`prescan`] passed).
    pub fn elsewhere(policy: &Policy) -> Compiled {
        let serial = SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let actions = policy.actions().iter().map(|a| a.to_string()).collect();
        let source = std::sync::Arc::new((actions, policy.rego.clone()));
        let (package, declared, id, owner) = (String::new(), Vec::new(), policy.id.clone(), owner_of(policy));
        Compiled { engine: None, serial, source, package, declared, id, owner }
    }
}

fn compile_here(policy: &Policy) -> Result<Compiled, Vec<Diagnostic>> {
    prescan(policy)?;
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    let package = engine
        .add_policy(SOURCE.to_string(), policy.rego.clone())
        .map_err(|e| vec![problem(policy, &e.to_string())])?;
    let Some(calls) = called_functions(&mut engine) else {
        // What cannot be checked is refused.
        let message = "the module nests too deeply to be checked";
        return Err(vec![Diagnostic::new(Code::RegoInvalid, policy.at.field("rego"), message)]);
    };
    let problems: Vec<Diagnostic> = calls.iter().filter_map(|call| refused_call(policy, call)).collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let declared = declared_rules(&engine, policy)?;
    // Preparing the module for evaluation finds what parsing does not (recursion, ...). It is
    // asked for a rule the module cannot have, so that nothing of the module runs here: a
    // hostile module can take any time in one step, and a server runs modules only in its
    // policy workers ([`Compiled::trial`] finds what only running finds). The engine kept is
    // the prepared one, so that evaluations (of its clones) do not prepare it again.
    engine.set_input(regorus::Value::new_object());
    set_budget(&mut engine, DEFAULT_BUDGET);
    let nowhere = format!("{package}{NO_RULE}");
    match guarded(|| engine.eval_rule(nowhere)) {
        // What regorus answers, once the module is prepared, for a rule it does not have.
        Err(e) if e.to_string() == "not a valid rule path" => {
            let serial = SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let actions = policy.actions().iter().map(|a| a.to_string()).collect();
            let source = std::sync::Arc::new((actions, policy.rego.clone()));
            let owner = owner_of(policy);
            Ok(Compiled { engine: Some(engine), serial, source, package, declared, id: policy.id.clone(), owner })
        }
        Err(e) => Err(vec![problem(policy, &bounded(e.to_string()))]),
        Ok(_) => Err(vec![problem(policy, "error: the module could not be prepared")]),
    }
}

/// The module compiled and tried ([`Compiled::trial`]) where `runner` evaluates — in a
/// server's policy workers, which are stopped past their time: every problem of the module,
/// what only running finds included.
pub fn check(policy: &Policy, runner: &worker::Runner) -> Result<Compiled, Vec<Diagnostic>> {
    let compiled = runner.prepare(policy)?;
    let empty = Input::new(&Any::Object(Default::default()));
    let answers = runner.run(&[worker::Job::trial(&compiled, &empty)]);
    match answers.into_iter().next() {
        Some((Verdict::Failed(message), _)) => Err(vec![problem(policy, &message)]),
        _ => Ok(compiled),
    }
}

/// The rules the module answers through: [`RULE`], and for a policy on access any of
/// [`ACCESS_RULES`]; at least one, and no access rule in a policy that is not on access.
fn declared_rules(engine: &regorus::Engine, policy: &Policy) -> Result<Vec<&'static str>, Vec<Diagnostic>> {
    let at = policy.at.field("rego");
    let on_access = policy.actions().iter().any(|a| ACCESS_ACTIONS.contains(a));
    let declares = |rule: &str| engine.has_declared_rule_rooted_at(SOURCE, rule).unwrap_or(false);
    let declared: Vec<&'static str> =
        std::iter::once(RULE).chain(ACCESS_RULES.iter().copied()).filter(|r| declares(r)).collect();
    if let Some(stray) = declared.iter().find(|r| **r != RULE && !on_access) {
        let message = format!("`{stray}` answers only policies on access, and the policy's actions name none");
        let hint = format!("add one of {} to `actions`, or remove the rule", ACCESS_ACTIONS.join(", "));
        return Err(vec![Diagnostic::new(Code::RegoInvalid, at, message).hint(hint)]);
    }
    if declared.is_empty() {
        let (message, hint) = if on_access {
            (
                format!(
                    "the module declares none of the rules a policy on access answers through: {RULE}, {}",
                    ACCESS_RULES.join(", ")
                ),
                "add e.g. `max_days := 90 if { input.request.access == \"write\" }`".to_string(),
            )
        } else {
            (
                format!("the module declares no `{RULE}` rule, which is how a policy answers"),
                format!("add e.g. `{RULE} contains msg if {{ not input.after.domain; msg := \"no domain\" }}`"),
            )
        };
        return Err(vec![Diagnostic::new(Code::RegoInvalid, at, message).hint(hint)]);
    }
    Ok(declared)
}

/// Runs an evaluation, a panic inside regorus (a built-in's bug) answered as an error.
fn guarded<T>(run: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("error: the evaluation failed inside the Rego engine")))
}

/// A call in the module (or a `with` that replaces something other than the input, named
/// `with NAME`): the function's dotted name, its first argument when that is a string
/// literal, and its line in the module.
struct Call {
    name: String,
    literal: Option<String>,
    line: u32,
}

/// Every call the module makes, and the functions it defines itself.
fn called_functions(engine: &mut regorus::Engine) -> Option<Vec<Call>> {
    // Written compactly: regorus's own AST text is indented, which grows with the square of
    // the tree's depth (gigabytes for a 16 KiB module).
    let ast: Any = serde_json::from_str(&serde_json::to_string(engine.get_modules()).ok()?).ok()?;
    let mut calls = Vec::new();
    let mut own = Vec::new();
    collect(&ast, &mut calls, &mut own);
    calls.retain(|c| !own.contains(&c.name) && !c.name.starts_with("data."));
    Some(calls)
}

fn dotted(expr: &Any) -> Option<String> {
    if let Some(var) = expr.get("Var") {
        return var.get("value").and_then(Any::as_str).map(str::to_string);
    }
    let dot = expr.get("RefDot")?;
    let field = dot.get("field")?.get(1)?.as_str()?;
    Some(format!("{}.{field}", dotted(dot.get("refr")?)?))
}

fn collect(node: &Any, calls: &mut Vec<Call>, own: &mut Vec<String>) {
    match node {
        Any::Object(map) => {
            if let Some(call) = map.get("Call") {
                let name = call.get("fcn").and_then(dotted).unwrap_or_else(|| "?".into());
                let first = call.get("params").and_then(|p| p.get(0));
                let literal = first.and_then(|p| p.get("String")).and_then(|s| s.get("value")).and_then(Any::as_str);
                let line = call.pointer("/span/line").and_then(Any::as_u64).unwrap_or(0) as u32;
                calls.push(Call { name, literal: literal.map(str::to_string), line });
            } // `with` may replace the input (or part of it): replacing a function or data could
            // swap in any built-in unseen.
            for modifier in map.get("with_mods").and_then(Any::as_array).into_iter().flatten() {
                let target = modifier.get("refr").and_then(dotted).unwrap_or_else(|| "?".into());
                if target != "input" && !target.starts_with("input.") {
                    let line = modifier.pointer("/span/line").and_then(Any::as_u64).unwrap_or(0) as u32;
                    calls.push(Call { name: format!("with {target}"), literal: None, line });
                }
            }
            if let Some(function) = map.get("Func")
                && let Some(name) = function.get("refr").and_then(dotted)
            {
                own.push(name);
            }
            map.values().for_each(|v| collect(v, calls, own));
        }
        Any::Array(items) => items.iter().for_each(|v| collect(v, calls, own)),
        _ => {}
    }
}

/// Why a call is refused, if it is.
fn refused_call(policy: &Policy, call: &Call) -> Option<Diagnostic> {
    let span = Span::at(policy.rego_line() + call.line.saturating_sub(1), policy.at.field("rego").start.col);
    let name = &call.name;
    if let Some(target) = name.strip_prefix("with ") {
        let message = format!("Rego line {}: `with` may replace only `input` in a policy, not `{target}`", call.line);
        return Some(
            Diagnostic::new(Code::RegoInvalid, span, message)
                .hint("tests (`meshplane policy test`) may replace anything"),
        );
    }
    if !BUILTINS.contains(&name.as_str()) {
        let message = format!("Rego line {}: `{name}` is not a built-in a policy may call", call.line);
        let hint = "a policy calls its own functions and the built-ins listed in docs/policies.md: \
                    none that reaches outside the evaluation or makes a value of any size in one step";
        return Some(Diagnostic::new(Code::RegoInvalid, span, message).hint(hint));
    }
    if name == "sprintf" {
        let wide = call.literal.as_deref().is_none_or(|format| {
            format.split('%').skip(1).any(|directive| {
                let spec: String = directive.chars().take_while(|c| !c.is_ascii_alphabetic()).collect();
                spec.split(|c: char| !c.is_ascii_digit()).any(|digits| digits.len() >= 3)
            })
        });
        if wide {
            let message = format!(
                "Rego line {}: `sprintf` needs a literal format without a width or precision of three digits or more",
                call.line
            );
            return Some(Diagnostic::new(Code::RegoInvalid, span, message));
        }
    }
    None
}

fn set_budget(engine: &mut regorus::Engine, budget: Duration) {
    // The clock is read at every step: a step that doubles a string must not go on for long.
    let check_interval = NonZeroU32::MIN;
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig { limit: budget, check_interval });
}

fn is_limit(message: &str) -> bool {
    message.contains("execution exceeded") || message.contains("time limit")
}

/// One evaluation: an engine with its input and data, and the budget all its rules share.
struct Run {
    engine: regorus::Engine,
    started: std::time::Instant,
    budget: Duration,
}

impl Run {
    /// The value of the module's rule `rule`, or why the evaluation failed.
    fn rule(&mut self, package: &str, rule: &str) -> Result<regorus::Value, String> {
        let left = self.budget.saturating_sub(self.started.elapsed());
        let past = || format!("it ran past its budget of {} ms", self.budget.as_millis());
        if left.is_zero() {
            return Err(past());
        }
        set_budget(&mut self.engine, left);
        match guarded(|| self.engine.eval_rule(format!("{package}.{rule}"))) {
            Ok(value) => Ok(value),
            Err(e) if is_limit(&e.to_string()) => Err(past()),
            Err(e) => Err(bounded(error_text(&e.to_string()))),
        }
    }
}

impl Compiled {
    fn run(&self, input: &Input, data: Option<&Any>, budget: Duration) -> Result<Run, String> {
        let started = std::time::Instant::now();
        let Some(mut engine) = self.engine.clone() else {
            return Err("the module is compiled only in a policy worker".into());
        };
        engine.set_input(input.value.clone());
        if let Some(data) = data
            && let Err(e) = engine.add_data(regorus::Value::from(data.clone()))
        {
            return Err(bounded(format!("its data could not be loaded: {e}")));
        }
        Ok(Run { engine, started, budget })
    }

    fn declares(&self, rule: &str) -> bool {
        self.declared.contains(&rule)
    }

    /// Runs every rule it answers through on an empty input, to find what only running finds
    /// (unsafe variables, unknown functions): regorus's message of the first problem (with
    /// its `--> rego:LINE:COL`, for [`problem`]). Running past the budget is no problem here.
    pub fn trial(&self) -> Result<(), String> {
        let mut run = self.run(&Input::new(&Any::Object(Default::default())), None, DEFAULT_BUDGET)?;
        for rule in &self.declared {
            set_budget(&mut run.engine, DEFAULT_BUDGET);
            match guarded(|| run.engine.eval_rule(format!("{}.{rule}", self.package))) {
                Err(e) if !is_limit(&e.to_string()) => return Err(bounded(e.to_string())),
                _ => {}
            }
        }
        Ok(())
    }

    /// Asks the policy about one change: `input` is what the caller says about it (the
    /// document before and after, who asks, ...), `data` what every evaluation may read.
    pub fn evaluate(&self, input: &Input, data: Option<&Any>, budget: Duration) -> Verdict {
        if self.engine.is_none() {
            return Verdict::Failed("the module is compiled only in a policy worker".into());
        }
        if !self.declares(RULE) {
            return Verdict::Pass;
        }
        match self.run(input, data, budget) {
            Ok(mut run) => self.violations(&mut run),
            Err(why) => Verdict::Failed(why),
        }
    }

    /// Asks a policy on access about a request or a decision: its violations, and what it
    /// answers through [`ACCESS_RULES`] (all of them within one budget). When the evaluation
    /// fails, the verdict says why and the answer is empty.
    pub fn decide(&self, input: &Input, data: Option<&Any>, budget: Duration) -> (Verdict, AccessAnswer) {
        let mut run = match self.run(input, data, budget) {
            Ok(run) => run,
            Err(why) => return (Verdict::Failed(why), AccessAnswer::default()),
        };
        let verdict = if self.declares(RULE) { self.violations(&mut run) } else { Verdict::Pass };
        if matches!(verdict, Verdict::Failed(_)) {
            return (verdict, AccessAnswer::default());
        }
        match self.access_answer(&mut run) {
            Ok(answer) => (verdict, answer),
            Err(why) => (Verdict::Failed(why), AccessAnswer::default()),
        }
    }

    fn access_answer(&self, run: &mut Run) -> Result<AccessAnswer, String> {
        let mut answer = AccessAnswer::default();
        if self.declares("approve") {
            answer.approve = match run.rule(&self.package, "approve")? {
                regorus::Value::Undefined => false,
                regorus::Value::Bool(b) => b,
                _ => return Err("`approve` must be true or false".into()),
            };
        }
        if self.declares("approvers") {
            let value = run.rule(&self.package, "approvers")?;
            let items: Vec<&regorus::Value> = match &value {
                regorus::Value::Undefined => Vec::new(),
                regorus::Value::Set(items) => items.iter().collect(),
                regorus::Value::Array(items) => items.iter().collect(),
                _ => return Err("`approvers` must be a set of names".into()),
            };
            if items.len() > MAX_APPROVERS {
                return Err(format!("`approvers` names {} approvers, more than {MAX_APPROVERS}", items.len()));
            }
            for item in items {
                match item {
                    regorus::Value::String(name) if name.chars().count() <= MAX_NAME_CHARS => {
                        answer.approvers.push(name.to_string())
                    }
                    _ => return Err(format!("`approvers` must hold names of at most {MAX_NAME_CHARS} characters")),
                }
            }
        }
        if self.declares("max_days") {
            answer.max_days = match run.rule(&self.package, "max_days")? {
                regorus::Value::Undefined => None,
                regorus::Value::Number(n) => match n.as_f64() {
                    Some(days) if days > 0.0 && days <= MAX_DAYS => Some(days),
                    _ => return Err(format!("`max_days` must be a number of days above 0 and at most {MAX_DAYS}")),
                },
                _ => return Err(format!("`max_days` must be a number of days above 0 and at most {MAX_DAYS}")),
            };
        }
        Ok(answer)
    }

    fn violations(&self, run: &mut Run) -> Verdict {
        let value = match run.rule(&self.package, RULE) {
            Ok(value) => value,
            Err(why) => return Verdict::Failed(why),
        };
        // Read without serializing the answer: a value built of shared parts can be far larger
        // written out than it is in memory.
        let items = match &value {
            regorus::Value::Undefined => return Verdict::Pass,
            regorus::Value::Set(items) => items,
            _ => return Verdict::Failed(format!("`{RULE}` must be a set")),
        };
        if items.is_empty() {
            return Verdict::Pass;
        }
        let mut found: Vec<Violation> = items.iter().take(MAX_VIOLATIONS).map(|item| self.violation(item)).collect();
        if items.len() > MAX_VIOLATIONS {
            let message = format!("and {} more violations", items.len() - MAX_VIOLATIONS);
            found.push(Violation { rule: self.id.clone(), message, path: None });
        }
        Verdict::Violated(found)
    }

    /// A violation from one item of the answer: a message, or an object with `msg` (or
    /// `message`), `rule` and `path`; only strings are read, each cut to a bounded length.
    fn violation(&self, item: &regorus::Value) -> Violation {
        let text = |value: &regorus::Value| match value {
            regorus::Value::String(s) => Some(s.chars().take(MAX_MESSAGE_CHARS).collect::<String>()),
            _ => None,
        };
        let field = |key: &str| match item {
            regorus::Value::Object(fields) => fields.get(&regorus::Value::from(key)).and_then(text),
            _ => None,
        };
        let unreadable = || "a violation that is neither a message nor an object with `msg`".to_string();
        Violation {
            rule: field("rule").unwrap_or_else(|| self.id.clone()),
            message: text(item).or_else(|| field("msg")).or_else(|| field("message")).unwrap_or_else(unreadable),
            path: field("path"),
        }
    }
}

/// A text cut to the length a message may have.
fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS { text } else { text.chars().take(MAX_MESSAGE_CHARS).collect() }
}

/// What went wrong, from a regorus error's text (its `error:` line, else its first line).
fn error_text(message: &str) -> String {
    message
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .map_or_else(|| first_line(message), |w| w.trim().to_string())
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// A regorus error as a problem of the document. Its text points at the module's own line
/// and column (`--> rego:LINE:COL`, the source line, then `error: ...`); the module's first
/// line is where the `rego` value starts in the document.
pub fn problem(policy: &Policy, message: &str) -> Diagnostic {
    let at = policy.at.field("rego");
    // A problem a worker found compiling the module, at the module's line.
    if let Some(rest) = message.strip_prefix("Rego line ")
        && let Some(line) = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|l| l.parse::<u32>().ok())
    {
        let span = Span::at(policy.rego_line() + line.saturating_sub(1), at.start.col);
        return Diagnostic::new(Code::RegoInvalid, span, message.to_string());
    }
    let position = message.lines().find_map(|l| l.trim().strip_prefix(&format!("--> {SOURCE}:"))).and_then(|place| {
        let (line, col) = place.split_once(':')?;
        Some((line.trim().parse::<u32>().ok()?, col.trim().parse::<u32>().ok()?))
    });
    let what = error_text(message);
    match position {
        Some((line, col)) => {
            let span = Span::at(policy.rego_line() + line.saturating_sub(1), at.start.col);
            Diagnostic::new(Code::RegoInvalid, span, format!("Rego line {line}, column {col}: {what}"))
        }
        None => Diagnostic::new(Code::RegoInvalid, at, what),
    }
}

/// The default policy pack, as shipped (each a policy document, `warn` as written), and its
/// unit tests: (file name, text). A platform opts in with `policies: { pack: warn | deny }`.
pub const PACK: &[(&str, &str)] = &[
    ("owner-present.yaml", include_str!("../pack/owner-present.yaml")),
    ("domain-set.yaml", include_str!("../pack/domain-set.yaml")),
    ("output-port-contract.yaml", include_str!("../pack/output-port-contract.yaml")),
    ("pii-classified.yaml", include_str!("../pack/pii-classified.yaml")),
    ("sla-latency.yaml", include_str!("../pack/sla-latency.yaml")),
    ("version-bump.yaml", include_str!("../pack/version-bump.yaml")),
    ("quality-on-active.yaml", include_str!("../pack/quality-on-active.yaml")),
    ("pack_test.rego", include_str!("../pack/pack_test.rego")),
];

/// The pack's policies, read, with `enforcement` set to what the platform chose.
pub fn pack(enforcement: &str) -> Vec<Policy> {
    let documents = PACK.iter().filter(|(name, _)| name.ends_with(".yaml"));
    let policies = documents.filter_map(|(_, text)| match meshplane_spec::load(text).documents.pop()?.document? {
        meshplane_spec::Document::Policy(policy) => Some(Policy { enforcement: enforcement.to_string(), ..*policy }),
        _ => None,
    });
    policies.collect()
}

/// A module for [`run_tests`]: a policy document's module (its first line at the document's
/// line `first_line`) or a `.rego` file of tests and fixtures (`first_line` 1).
pub struct Source {
    pub file: String,
    pub text: String,
    pub first_line: u32,
}

/// One Rego unit test (a rule named `test_...`, as `opa test` runs them) and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// The rule's full name, `data.<package>.test_...`.
    pub name: String,
    pub file: String,
    pub line: u32,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Runs every `test_` rule of `sources` (compiled together, so tests see the policies'
/// rules), each within `budget`: it passes when it is true. Modules that do not compile are
/// answered as `file:line:col: message`, every one.
pub fn run_tests(sources: &[Source], budget: Duration) -> Result<Vec<TestOutcome>, Vec<String>> {
    deep_stack(|| run_tests_here(sources, budget)).unwrap_or_else(|| Err(vec!["the policy engine failed".into()]))
}

fn run_tests_here(sources: &[Source], budget: Duration) -> Result<Vec<TestOutcome>, Vec<String>> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    // A module's key (`m<index>`) and line, as the file and line the user wrote.
    let place = |key: &str, line: u32| -> (String, u32) {
        let source = key.strip_prefix('m').and_then(|i| i.parse::<usize>().ok()).and_then(|i| sources.get(i));
        source.map_or_else(|| (key.to_string(), line), |s| (s.file.clone(), s.first_line + line.saturating_sub(1)))
    };
    let located = |message: &str| {
        let at = message.lines().find_map(|l| l.trim().strip_prefix("--> ")).and_then(|p| {
            let mut parts = p.rsplitn(3, ':');
            let col: u32 = parts.next()?.parse().ok()?;
            let line = parts.next()?.parse().ok()?;
            let (file, line) = place(parts.next()?, line);
            Some(format!("{file}:{line}:{col}"))
        });
        format!("{}: {}", at.unwrap_or_else(|| "?".into()), error_text(message))
    };
    let mut problems = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        // What regorus's parser would take too long over, or too deep a stack for, is refused
        // first, as for a policy applied.
        let stub = Policy { rego: source.text.clone(), ..Policy::default() };
        if let Err(refused) = prescan(&stub) {
            problems.extend(refused.iter().map(|p| format!("{}:{}: {}", source.file, source.first_line, p.message)));
            continue;
        }
        if let Err(e) = engine.add_policy(format!("m{index}"), source.text.clone()) {
            problems.push(located(&e.to_string()));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let ast: Any = engine.get_ast_as_json().ok().and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
    let mut tests = Vec::new();
    for module in ast.as_array().into_iter().flatten() {
        let key = module.pointer("/source/file").and_then(Any::as_str).unwrap_or_default();
        let Some(package) = module.pointer("/ast/package/refr").and_then(dotted) else { continue };
        for rule in module.pointer("/ast/rules").and_then(Any::as_array).into_iter().flatten() {
            let Some(head) = rule.pointer("/Spec/head").and_then(|h| h.get("Compr")) else { continue };
            let Some(name) = head.get("refr").and_then(dotted).filter(|n| n.starts_with("test_")) else { continue };
            let line = rule.pointer("/Spec/span/line").and_then(Any::as_u64).unwrap_or(0) as u32;
            let (file, line) = place(key, line);
            let full = format!("data.{package}.{name}");
            if !tests.iter().any(|t: &TestOutcome| t.name == full) {
                tests.push(TestOutcome { name: full, file, line, passed: false, failure: None });
            }
        }
    }
    for test in &mut tests {
        let mut run = engine.clone();
        run.set_input(regorus::Value::new_object());
        set_budget(&mut run, budget);
        match guarded(|| run.eval_rule(test.name.clone())) {
            Ok(regorus::Value::Bool(true)) => test.passed = true,
            Ok(regorus::Value::Undefined) => {
                test.failure = Some("undefined: a statement of its body did not hold".into())
            }
            Ok(other) => test.failure = Some(format!("it is {other}, not true")),
            Err(e) if is_limit(&e.to_string()) => {
                test.failure = Some(format!("it ran past its budget of {} ms", budget.as_millis()))
            }
            Err(e) => test.failure = Some(located(&e.to_string())),
        }
    }
    Ok(tests)
}

pub mod worker;

#[cfg(test)]
mod tests;
