//! Runs a pattern over a column of texts as fast as its shape allows.
//!
//! A pattern rule is the costliest per-row check of a scan: every value of a column is run
//! through it. Three engines, tried in order when the pattern is compiled:
//!
//! - a **fixed shape**: a pattern anchored at both ends whose every piece is one ASCII byte
//!   class repeated a fixed number of times (`^ORD-\d{9}$`, `^[A-Z]{2}$`) is a length check
//!   plus one table lookup per byte, with no dependency between bytes;
//! - a fully built **DFA**: a table walk per byte. One walk is a chain of dependent loads, so
//!   several texts are walked side by side, each lane's load hiding the others' latency;
//! - the **regex crate**, for what the DFA cannot decide (Unicode word boundaries on
//!   non-ASCII text) or does not fit in a few megabytes.
//!
//! Every engine answers as the regex crate does (property-tested below).

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A compiled pattern.
pub struct Matcher {
    engine: Engine,
    regex: ::regex::Regex,
}

enum Engine {
    Fixed(Vec<ByteSet>),
    Dfa { dfa: Box<dense::DFA<Vec<u32>>>, start: StateID },
    Regex,
}

/// A set of bytes, as a 256-bit map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert_range(&mut self, from: u8, to: u8) {
        for b in from..=to {
            self.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] >> (b & 63) & 1 == 1
    }
}

/// Texts walked side by side through the DFA.
const LANES: usize = 4;

impl Matcher {
    /// Compiles a pattern in the regex crate's syntax.
    pub fn new(pattern: &str) -> Result<Matcher, String> {
        let regex = ::regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let engine = match regex_syntax::parse(pattern).ok().and_then(|hir| fixed_shape(&hir)) {
            Some(shape) => Engine::Fixed(shape),
            None => dfa(pattern).unwrap_or(Engine::Regex),
        };
        Ok(Matcher { engine, regex })
    }

    pub fn is_match(&self, text: &str) -> bool {
        match &self.engine {
            Engine::Fixed(shape) => fits(shape, text.as_bytes()),
            Engine::Dfa { dfa, start } => {
                walk(dfa, *start, text.as_bytes()).unwrap_or_else(|| self.regex.is_match(text))
            }
            Engine::Regex => self.regex.is_match(text),
        }
    }

    /// Clears `ok[i]` for every text that does not match.
    pub fn check_all(&self, texts: &[&str], ok: &mut [bool]) {
        let Engine::Dfa { dfa, start } = &self.engine else {
            for (text, ok) in texts.iter().zip(ok.iter_mut()) {
                *ok &= self.is_match(text);
            }
            return;
        };
        let mut lanes = texts.chunks_exact(LANES);
        let mut at = 0;
        for group in lanes.by_ref() {
            let bytes: [&[u8]; LANES] = std::array::from_fn(|k| group[k].as_bytes());
            for (k, found) in walk_lanes(dfa, *start, bytes).into_iter().enumerate() {
                ok[at + k] &= found.unwrap_or_else(|| self.regex.is_match(group[k]));
            }
            at += LANES;
        }
        for (text, ok) in lanes.remainder().iter().zip(&mut ok[at..]) {
            *ok &= self.is_match(text);
        }
    }
}

/// A DFA for the pattern with its start state for a search from the start of a text, when
/// one fits the size limits.
fn dfa(pattern: &str) -> Option<Engine> {
    let config =
        dense::Config::new().accelerate(false).dfa_size_limit(Some(4 << 20)).determinize_size_limit(Some(8 << 20));
    let dfa = dense::Builder::new().configure(config).build(pattern).ok()?;
    let start = dfa.start_state(&start::Config::new().look_behind(None)).ok()?;
    Some(Engine::Dfa { dfa: Box::new(dfa), start })
}

/// What one step of a walk found: nothing yet, or a verdict (`None`: the DFA gave up).
enum Step {
    Going(StateID),
    Done(Option<bool>),
}

fn step(dfa: &dense::DFA<Vec<u32>>, sid: StateID, byte: u8) -> Step {
    let next = dfa.next_state(sid, byte);
    if !dfa.is_special_state(next) || dfa.is_start_state(next) {
        return Step::Going(next);
    }
    if dfa.is_match_state(next) {
        Step::Done(Some(true))
    } else if dfa.is_dead_state(next) {
        Step::Done(Some(false))
    } else if dfa.is_quit_state(next) {
        Step::Done(None)
    } else {
        Step::Going(next)
    }
}

fn end(dfa: &dense::DFA<Vec<u32>>, sid: StateID) -> bool {
    dfa.is_match_state(dfa.next_eoi_state(sid))
}

/// Whether the DFA finds a match anywhere in `text` (`None` when it gives up).
fn walk(dfa: &dense::DFA<Vec<u32>>, start: StateID, text: &[u8]) -> Option<bool> {
    let mut sid = start;
    for &b in text {
        match step(dfa, sid, b) {
            Step::Going(next) => sid = next,
            Step::Done(verdict) => return verdict,
        }
    }
    Some(end(dfa, sid))
}

/// [`walk`] over several texts at once: the bytes they have in common are walked in
/// lockstep, the rest one text at a time.
fn walk_lanes(dfa: &dense::DFA<Vec<u32>>, start: StateID, texts: [&[u8]; LANES]) -> [Option<bool>; LANES] {
    let mut sid = [start; LANES];
    let mut verdict: [Option<Option<bool>>; LANES] = [None; LANES];
    let common = texts.iter().map(|t| t.len()).min().unwrap_or(0);
    for i in 0..common {
        for ((s, v), text) in sid.iter_mut().zip(verdict.iter_mut()).zip(&texts) {
            if v.is_none() {
                match step(dfa, *s, text[i]) {
                    Step::Going(next) => *s = next,
                    Step::Done(found) => *v = Some(found),
                }
            }
        }
    }
    std::array::from_fn(|k| match verdict[k] {
        Some(v) => v,
        None => {
            let mut s = sid[k];
            for &b in &texts[k][common..] {
                match step(dfa, s, b) {
                    Step::Going(next) => s = next,
                    Step::Done(v) => return v,
                }
            }
            Some(end(dfa, s))
        }
    })
}

fn fits(shape: &[ByteSet], text: &[u8]) -> bool {
    text.len() == shape.len() && text.iter().zip(shape).all(|(&b, set)| set.contains(b))
}

/// The byte set at each position, when the pattern matches texts of one length only, anchored
/// at both ends, each position drawn from an ASCII set.
fn fixed_shape(hir: &Hir) -> Option<Vec<ByteSet>> {
    let HirKind::Concat(parts) = hir.kind() else { return None };
    let (first, rest) = parts.split_first()?;
    let (last, middle) = rest.split_last()?;
    if *first.kind() != HirKind::Look(Look::Start) || *last.kind() != HirKind::Look(Look::End) {
        return None;
    }
    let mut shape = Vec::new();
    middle.iter().all(|part| push_fixed(part, &mut shape)).then_some(shape)
}

fn push_fixed(hir: &Hir, shape: &mut Vec<ByteSet>) -> bool {
    match hir.kind() {
        HirKind::Literal(literal) if literal.0.is_ascii() => {
            for &b in literal.0.iter() {
                let mut set = ByteSet::default();
                set.insert_range(b, b);
                shape.push(set);
            }
            true
        }
        HirKind::Class(class) => match ascii_set(class) {
            Some(set) => {
                shape.push(set);
                true
            }
            None => false,
        },
        HirKind::Repetition(rep) if rep.max == Some(rep.min) && rep.min <= 64 => {
            (0..rep.min).all(|_| push_fixed(&rep.sub, shape))
        }
        HirKind::Capture(capture) => push_fixed(&capture.sub, shape),
        HirKind::Concat(parts) => parts.iter().all(|p| push_fixed(p, shape)),
        _ => false,
    }
}

fn ascii_set(class: &Class) -> Option<ByteSet> {
    let mut set = ByteSet::default();
    match class {
        Class::Unicode(c) => {
            for r in c.ranges() {
                let (from, to) = (u8::try_from(u32::from(r.start())).ok()?, u8::try_from(u32::from(r.end())).ok()?);
                if !to.is_ascii() {
                    return None;
                }
                set.insert_range(from, to);
            }
        }
        Class::Bytes(c) => {
            for r in c.ranges() {
                if !r.end().is_ascii() {
                    return None;
                }
                set.insert_range(r.start(), r.end());
            }
        }
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regex::{Dialect, translate};
    use proptest::prelude::*;

    const PATTERNS: [&str; 9] = [
        r"^ORD-\d{9}$",
        r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
        r"\d{3}",
        r"^a|b$",
        r"^.{2,4}$",
        r"\bx",
        r"^(AB|CD)-\d{2}$",
        r"^[A-Z]{2}(-\d)?$",
        // Its DFA has millions of states: the regex crate runs it.
        r"^[ab]*a[ab]{20}$",
    ];

    fn engine_name(m: &Matcher) -> &'static str {
        match m.engine {
            Engine::Fixed(_) => "fixed",
            Engine::Dfa { .. } => "dfa",
            Engine::Regex => "regex",
        }
    }

    #[test]
    fn each_pattern_gets_the_fastest_engine_that_can_run_it() {
        let engines: Vec<&str> = COMPILED.iter().map(|(_, m, _)| engine_name(m)).collect();
        assert_eq!(engines, ["fixed", "dfa", "dfa", "dfa", "dfa", "dfa", "dfa", "dfa", "regex"]);
        let fixed = Matcher::new(&translate(r"^[A-Z]{2}-\d$", Dialect::Rust).unwrap()).unwrap();
        assert_eq!(engine_name(&fixed), "fixed");
    }

    /// Each pattern compiled once (building a DFA that does not fit takes a while).
    static COMPILED: std::sync::LazyLock<Vec<(&str, Matcher, ::regex::Regex)>> = std::sync::LazyLock::new(|| {
        PATTERNS
            .iter()
            .map(|ecma| {
                let rust = translate(ecma, Dialect::Rust).unwrap();
                (*ecma, Matcher::new(&rust).unwrap(), ::regex::Regex::new(&rust).unwrap())
            })
            .collect()
    });

    proptest! {
        /// Every engine, one text at a time and side by side, answers as the regex crate does,
        /// on texts made to nearly match.
        #[test]
        fn the_engines_agree_with_the_regex_crate(
            texts in prop::collection::vec("(ORD-|AB-|[A-Z]{2})?[0-9a-zA-Z@. \u{e9}\u{2028}-]{0,16}|[ab]{18,24}", 0..11),
        ) {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (ecma, matcher, regex) in COMPILED.iter() {
                let want: Vec<bool> = refs.iter().map(|t| regex.is_match(t)).collect();
                let one: Vec<bool> = refs.iter().map(|t| matcher.is_match(t)).collect();
                let mut all = vec![true; refs.len()];
                matcher.check_all(&refs, &mut all);
                prop_assert_eq!(&one, &want, "{} one at a time", ecma);
                prop_assert_eq!(&all, &want, "{} side by side", ecma);
            }
        }
    }
}
