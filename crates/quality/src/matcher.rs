//! Runs a pattern over a column of texts as fast as its shape allows.
//!
//! A pattern rule is the costliest per-row check of a scan: every value of a column is run
//! through it. The engines, tried in order when the pattern is compiled:
//!
//! - a **fixed shape**: a pattern anchored at both ends whose every piece is one ASCII byte
//!   class repeated a fixed number of times (`^ORD-\d{9}$`, `^[A-Z]{2}$`) is a length check
//!   plus one table lookup per byte, with no dependency between bytes;
//! - a **byte table**: the pattern's DFA (built by regex-automata) copied into a table of at
//!   most 256 states by 256 bytes, one load per byte with no bounds to check. One walk is a
//!   chain of dependent loads, so eight texts are walked side by side, each lane's load hiding
//!   the others' latency;
//! - the **DFA** itself, when it has more states than the table holds;
//! - the **regex crate**, for what a DFA cannot decide (Unicode word boundaries on non-ASCII
//!   text) or does not fit in a few megabytes.
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
    /// Per position, which bytes may stand there.
    Fixed(Vec<[bool; 256]>),
    Table(Box<ByteTable>),
    Dfa {
        dfa: Box<dense::DFA<Vec<u32>>>,
        start: StateID,
    },
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

    /// The set as one flag per byte: a lookup is a single load.
    fn table(&self) -> [bool; 256] {
        std::array::from_fn(|b| self.contains(b as u8))
    }
}

/// Texts walked side by side through the byte table: enough that the table loads of the
/// other lanes hide each one's latency.
const LANES: usize = 8;

impl Matcher {
    /// Compiles a pattern in the regex crate's syntax.
    pub fn new(pattern: &str) -> Result<Matcher, String> {
        let regex = ::regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let engine = match regex_syntax::parse(pattern).ok().and_then(|hir| fixed_shape(&hir)) {
            Some(shape) => Engine::Fixed(shape.iter().map(ByteSet::table).collect()),
            None => dfa(pattern).unwrap_or(Engine::Regex),
        };
        Ok(Matcher { engine, regex })
    }

    #[inline]
    pub fn is_match(&self, text: &str) -> bool {
        let found = match &self.engine {
            Engine::Fixed(shape) => Some(fits(shape, text.as_bytes())),
            Engine::Table(table) => table.walk(table.start, text.as_bytes()),
            Engine::Dfa { dfa, start } => walk_dfa(dfa, *start, text.as_bytes()),
            Engine::Regex => None,
        };
        found.unwrap_or_else(|| self.regex.is_match(text))
    }

    /// Clears `ok[i]` for every row still ok whose text does not match; `text(i)` reads a row.
    pub fn keep_matching<'t>(&self, ok: &mut [bool], text: impl Fn(usize) -> &'t str) {
        let Engine::Table(table) = &self.engine else {
            for (i, ok) in ok.iter_mut().enumerate() {
                if *ok {
                    *ok = self.is_match(text(i));
                }
            }
            return;
        };
        let mut lanes: [(usize, &str); LANES] = [(0, ""); LANES];
        let mut filled = 0;
        for i in 0..ok.len() {
            if !ok[i] {
                continue;
            }
            lanes[filled] = (i, text(i));
            filled += 1;
            if filled == LANES {
                let found = table.walk_lanes(lanes.map(|(_, t)| t.as_bytes()));
                for ((i, t), found) in lanes.iter().zip(found) {
                    ok[*i] = found.unwrap_or_else(|| self.regex.is_match(t));
                }
                filled = 0;
            }
        }
        for (i, t) in &lanes[..filled] {
            ok[*i] = self.is_match(t);
        }
    }
}

/// The engine for a pattern's DFA, with its start state for a search from the start of a
/// text, when one fits the size limits: the byte table when the DFA has few enough states.
fn dfa(pattern: &str) -> Option<Engine> {
    let config =
        dense::Config::new().accelerate(false).dfa_size_limit(Some(4 << 20)).determinize_size_limit(Some(8 << 20));
    let dfa = dense::Builder::new().configure(config).build(pattern).ok()?;
    let start = dfa.start_state(&start::Config::new().look_behind(None)).ok()?;
    Some(match ByteTable::of(&dfa, start) {
        Some(table) => Engine::Table(Box::new(table)),
        None => Engine::Dfa { dfa: Box::new(dfa), start },
    })
}

/// A DFA of at most 256 states as a table of 256 rows (state) by 256 columns (byte). The
/// states that end a walk (a match, a dead end, giving up) are numbered last, from `ending`.
struct ByteTable {
    next: Box<[[u8; 256]; 256]>,
    start: u8,
    ending: u8,
    /// Per state: the verdict a walk ending there gives (for ending states, at once; for the
    /// others, at the end of the text).
    verdict: [Option<bool>; 256],
}

impl ByteTable {
    fn of(dfa: &dense::DFA<Vec<u32>>, start: StateID) -> Option<ByteTable> {
        // Every state reachable from the start, then renumbered: going states first.
        let mut seen = vec![start];
        let mut at = 0;
        while at < seen.len() {
            let sid = seen[at];
            at += 1;
            if dfa.is_special_state(sid) && !dfa.is_start_state(sid) {
                continue;
            }
            for byte in 0..=255u8 {
                let next = dfa.next_state(sid, byte);
                if !seen.contains(&next) {
                    seen.push(next);
                }
            }
            if seen.len() > 256 {
                return None;
            }
        }
        let ends = |sid: StateID| dfa.is_special_state(sid) && !dfa.is_start_state(sid);
        let mut order: Vec<StateID> = seen.iter().copied().filter(|&s| !ends(s)).collect();
        let ending = u8::try_from(order.len()).ok()?;
        order.extend(seen.iter().copied().filter(|&s| ends(s)));
        let id = |sid: StateID| order.iter().position(|&s| s == sid).and_then(|i| u8::try_from(i).ok());
        let mut table = ByteTable { next: Box::new([[0; 256]; 256]), start: id(start)?, ending, verdict: [None; 256] };
        for (i, &sid) in order.iter().enumerate() {
            if ends(sid) {
                // Ending states stay where they are; a walk stops there anyway.
                table.next[i] = [i as u8; 256];
                table.verdict[i] = if dfa.is_match_state(sid) {
                    Some(true)
                } else if dfa.is_dead_state(sid) {
                    Some(false)
                } else {
                    None
                };
                continue;
            }
            for byte in 0..=255u8 {
                table.next[i][usize::from(byte)] = id(dfa.next_state(sid, byte))?;
            }
            table.verdict[i] = Some(dfa.is_match_state(dfa.next_eoi_state(sid)));
        }
        Some(table)
    }

    /// Whether a walk from `state` finds a match in `text` (`None`: the DFA gave up).
    fn walk(&self, mut state: u8, text: &[u8]) -> Option<bool> {
        for &b in text {
            state = self.next[usize::from(state)][usize::from(b)];
            if state >= self.ending {
                break;
            }
        }
        self.verdict[usize::from(state)]
    }

    /// [`ByteTable::walk`] over eight texts at once. The bytes they have in common are walked
    /// in lockstep with no branch: a lane that reached an ending state stays there. The others
    /// go on alone past the common length.
    fn walk_lanes(&self, texts: [&[u8]; LANES]) -> [Option<bool>; LANES] {
        let common = texts.iter().map(|t| t.len()).min().unwrap_or(0);
        let mut state = [self.start; LANES];
        for at in 0..common {
            for (s, text) in state.iter_mut().zip(&texts) {
                *s = self.next[usize::from(*s)][usize::from(text[at])];
            }
        }
        std::array::from_fn(|k| {
            if state[k] >= self.ending {
                self.verdict[usize::from(state[k])]
            } else {
                self.walk(state[k], &texts[k][common..])
            }
        })
    }
}

/// Whether the DFA finds a match anywhere in `text` (`None` when it gives up).
fn walk_dfa(dfa: &dense::DFA<Vec<u32>>, mut sid: StateID, text: &[u8]) -> Option<bool> {
    for &b in text {
        sid = dfa.next_state(sid, b);
        if dfa.is_special_state(sid) {
            if dfa.is_match_state(sid) {
                return Some(true);
            } else if dfa.is_dead_state(sid) {
                return Some(false);
            } else if dfa.is_quit_state(sid) {
                return None;
            }
        }
    }
    Some(dfa.is_match_state(dfa.next_eoi_state(sid)))
}

/// Whether every byte is one its position allows; every byte is looked at (no early exit),
/// so the loop has no branch to mispredict.
fn fits(shape: &[[bool; 256]], text: &[u8]) -> bool {
    text.len() == shape.len() && text.iter().zip(shape).fold(true, |fits, (&b, allowed)| fits & allowed[usize::from(b)])
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

    const PATTERNS: [&str; 10] = [
        r"^ORD-\d{9}$",
        r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
        r"\d{3}",
        r"^a|b$",
        r"^.{2,4}$",
        r"\bx",
        r"^(AB|CD)-\d{2}$",
        r"^[A-Z]{2}(-\d)?$",
        // More states than the byte table holds: the DFA runs it.
        r"^[a-c]{2,300}$",
        // Its DFA has millions of states: the regex crate runs it.
        r"^[ab]*a[ab]{20}$",
    ];

    fn engine_name(m: &Matcher) -> &'static str {
        match m.engine {
            Engine::Fixed(_) => "fixed",
            Engine::Table(_) => "table",
            Engine::Dfa { .. } => "dfa",
            Engine::Regex => "regex",
        }
    }

    #[test]
    fn each_pattern_gets_the_fastest_engine_that_can_run_it() {
        let engines: Vec<&str> = COMPILED.iter().map(|(_, m, _)| engine_name(m)).collect();
        assert_eq!(engines, ["fixed", "table", "table", "table", "table", "table", "table", "table", "dfa", "regex"]);
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

    /// Random patterns over a small alphabet: pieces, optional anchors.
    fn patterns() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec!["a", "b", "-", "[ab]", "[^a]", r"\d", ".", "(a|bb)", "x"]);
        let repeat = prop::sample::select(vec!["", "", "?", "*", "+", "{2}", "{1,3}"]);
        (any::<bool>(), prop::collection::vec((piece, repeat), 1..6), any::<bool>()).prop_map(|(start, pieces, end)| {
            let body: String = pieces.into_iter().map(|(p, r)| format!("{p}{r}")).collect();
            format!("{}{body}{}", if start { "^" } else { "" }, if end { "$" } else { "" })
        })
    }

    proptest! {
        /// Any pattern, whichever engine it gets, answers as the regex crate does.
        #[test]
        fn random_patterns_agree_with_the_regex_crate(
            ecma in patterns(),
            texts in prop::collection::vec("[ab0-9x\u{e9}-]{0,8}", 1..9),
        ) {
            let rust = translate(&ecma, Dialect::Rust).unwrap();
            let (matcher, regex) = (Matcher::new(&rust).unwrap(), ::regex::Regex::new(&rust).unwrap());
            let want: Vec<bool> = texts.iter().map(|t| regex.is_match(t)).collect();
            let mut all = vec![true; texts.len()];
            matcher.keep_matching(&mut all, |i| texts[i].as_str());
            prop_assert_eq!(all, want, "{} ({})", ecma, engine_name(&matcher));
        }

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
                matcher.keep_matching(&mut all, |i| refs[i]);
                prop_assert_eq!(&one, &want, "{} one at a time", ecma);
                prop_assert_eq!(&all, &want, "{} side by side", ecma);
            }
        }
    }
}
