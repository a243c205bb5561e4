//! Runs a pattern over a column of texts as fast as its shape allows.
//!
//! A pattern rule is the costliest per-row check of a scan: every value of a column is run
//! through it. The engines, tried in order when the pattern is compiled:
//!
//! - a **fixed shape**: a pattern anchored at both ends whose every piece is one ASCII byte
//!   class repeated a fixed number of times (`^ORD-\d{9}$`, `^[A-Z]{2}$`) is a length check
//!   plus one table lookup per byte, with no dependency between bytes; when every position
//!   is one range of ASCII bytes (a literal, `\d`, `[A-Z]`) and the text is eight bytes or
//!   more, eight positions are checked at once, with a few integer operations on a word;
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
    Fixed(Shape),
    Table(Box<ByteTable>),
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

    /// The set as one flag per byte: a lookup is a single load.
    fn table(&self) -> [bool; 256] {
        std::array::from_fn(|b| self.contains(b as u8))
    }

    /// The set's lowest and highest byte, when it holds every byte between them and no
    /// byte beyond ASCII.
    fn ascii_range(&self) -> Option<(u8, u8)> {
        let lo = (0..=127u8).find(|&b| self.contains(b))?;
        let hi = (lo..=127u8).take_while(|&b| self.contains(b)).last()?;
        ((hi..=255u8).skip(1).all(|b| !self.contains(b))).then_some((lo, hi))
    }
}

/// The texts a fixed-shape pattern matches: which bytes may stand at each position, and the
/// same as words of eight positions when every position is one range of ASCII bytes.
struct Shape {
    table: Vec<[bool; 256]>,
    words: Vec<Window>,
}

/// Eight positions of a shape, from `start`, as a word: per byte, what lifts a byte above
/// its range's top into the high bit (`0x7f - hi`), and the range's bottom.
struct Window {
    start: usize,
    above: u64,
    low: u64,
}

/// The high bit of every byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;

impl Window {
    /// The high bit of each of the eight bytes of `text` from `start` that is outside its
    /// range; every bit when the text is too short. A byte beyond ASCII has its own high bit
    /// set (adding to it may carry into the next byte's result, which only adds to what is
    /// already flagged); a byte at most 0x7f is above `hi` exactly when adding `0x7f - hi`
    /// sets its high bit, and below `lo` exactly when `(b | 0x80) - lo` clears it, with no
    /// borrow between bytes.
    #[inline]
    fn outside(&self, text: &[u8]) -> u64 {
        let Some(word) = text.get(self.start..).and_then(|t| t.first_chunk::<8>()) else { return HIGH };
        let x = u64::from_le_bytes(*word);
        (x | x.wrapping_add(self.above) | !((x | HIGH).wrapping_sub(self.low))) & HIGH
    }
}

impl Shape {
    fn new(sets: &[ByteSet]) -> Shape {
        let ranges: Option<Vec<(u8, u8)>> = sets.iter().map(ByteSet::ascii_range).collect();
        let words = match ranges {
            Some(ranges) if ranges.len() >= 8 => {
                let mut starts: Vec<usize> = (0..=ranges.len() - 8).step_by(8).collect();
                if ranges.len() % 8 != 0 {
                    starts.push(ranges.len() - 8);
                }
                let word = |start: usize, byte: fn((u8, u8)) -> u8| {
                    u64::from_le_bytes(std::array::from_fn(|k| byte(ranges[start + k])))
                };
                starts
                    .into_iter()
                    .map(|start| Window {
                        start,
                        above: word(start, |(_, hi)| 0x7f - hi),
                        low: word(start, |(lo, _)| lo),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Shape { table: sets.iter().map(ByteSet::table).collect(), words }
    }

    /// Whether `text` has the shape: by words where the shape has them, else every byte is
    /// looked up (no early exit, so the loop has no branch to mispredict).
    #[inline]
    fn fits(&self, text: &[u8]) -> bool {
        if text.len() != self.table.len() {
            return false;
        }
        if self.words.is_empty() {
            return text.iter().zip(&self.table).fold(true, |fits, (&b, allowed)| fits & allowed[usize::from(b)]);
        }
        self.words.iter().fold(0, |outside, w| outside | w.outside(text)) == 0
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
            Some(shape) => Engine::Fixed(Shape::new(&shape)),
            None => dfa(pattern).unwrap_or(Engine::Regex),
        };
        Ok(Matcher { engine, regex })
    }

    #[inline]
    pub fn is_match(&self, text: &str) -> bool {
        let found = match &self.engine {
            Engine::Fixed(shape) => Some(shape.fits(text.as_bytes())),
            Engine::Table(table) => table.walk(table.start, text.as_bytes()),
            Engine::Dfa { dfa, start } => walk_dfa(dfa, *start, text.as_bytes()),
            Engine::Regex => None,
        };
        found.unwrap_or_else(|| self.regex.is_match(text))
    }

    /// Clears `ok[i]` for every row still ok whose text does not match; `text(i)` reads a row.
    pub fn keep_matching<'t>(&self, ok: &mut [bool], text: impl Fn(usize) -> &'t str) {
        let table = match &self.engine {
            Engine::Table(table) => table,
            // A shape decides every text: no engine to choose per row.
            Engine::Fixed(shape) => {
                for (i, ok) in ok.iter_mut().enumerate() {
                    *ok = *ok && shape.fits(text(i).as_bytes());
                }
                return;
            }
            _ => {
                for (i, ok) in ok.iter_mut().enumerate() {
                    if *ok {
                        *ok = self.is_match(text(i));
                    }
                }
                return;
            }
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
        // The lanes' common bytes, zipped: a loop with no bounds to check.
        let [a, b, c, d, e, f, g, h] = texts.map(|t| &t[..common]);
        let mut state = [self.start; LANES];
        let columns = a.iter().zip(b).zip(c).zip(d).zip(e).zip(f).zip(g).zip(h);
        for (((((((a, b), c), d), e), f), g), h) in columns {
            for (s, &byte) in state.iter_mut().zip(&[*a, *b, *c, *d, *e, *f, *g, *h]) {
                *s = self.next[usize::from(*s)][usize::from(byte)];
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

    const PATTERNS: [&str; 12] = [
        r"^ORD-\d{9}$",
        // A fixed shape of ranges checked by words, and one whose first set is no range.
        r"^[A-Z]{2}\d{6}-[a-f]{3}$",
        r"^[ACE]{3}\d{6}$",
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
        assert_eq!(
            engines,
            ["fixed", "fixed", "fixed", "table", "table", "table", "table", "table", "table", "table", "dfa", "regex"]
        );
        let words = |m: &Matcher| matches!(&m.engine, Engine::Fixed(shape) if !shape.words.is_empty());
        assert_eq!(COMPILED.iter().take(3).map(|(_, m, _)| words(m)).collect::<Vec<_>>(), [true, true, false]);
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
            texts in prop::collection::vec("(ORD-|AB-|[A-Z]{2})?[0-9a-zA-Z@. \u{e9}\u{2028}-]{0,16}|[ab]{18,24}|[A-Z]{2}[0-9]{6}-[a-g]{3}|[ACEF]{3}[0-9]{6}", 0..11),
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

        /// Shapes of ASCII ranges, checked eight positions at a time, answer as a lookup per
        /// byte does, on texts that nearly fit: each byte in its range, just outside it, or
        /// beyond ASCII, and texts a byte too short or too long.
        #[test]
        fn shapes_by_words_fit_as_byte_by_byte(
            ranges in prop::collection::vec((0x20u8..0x7f, 0u8..12), 8..26),
            picks in prop::collection::vec((0u8..24, any::<u8>()), 26),
            cut in 0usize..3,
        ) {
            let ranges: Vec<(u8, u8)> = ranges.into_iter().map(|(lo, span)| (lo, lo.saturating_add(span).min(0x7f))).collect();
            let sets: Vec<ByteSet> = ranges.iter().map(|&(lo, hi)| {
                let mut set = ByteSet::default();
                set.insert_range(lo, hi);
                set
            }).collect();
            let mut text = String::new();
            for (&(lo, hi), &(how, pick)) in ranges.iter().zip(&picks) {
                // Mostly in range, so a text has a defect or two, or none.
                match how {
                    0 => text.push(char::from(lo - 1)),
                    1 => text.push(char::from(hi.saturating_add(1).min(0x7f))),
                    2 => text.push('\u{e9}'),
                    _ => text.push(char::from(lo + pick % (hi - lo + 1))),
                }
            }
            match cut {
                1 => { text.pop(); }
                2 => text.push('0'),
                _ => {}
            }
            let shape = Shape::new(&sets);
            prop_assert!(!shape.words.is_empty());
            let bytes = text.as_bytes();
            let want = bytes.len() == sets.len() && bytes.iter().zip(&sets).all(|(&b, set)| set.contains(b));
            prop_assert_eq!(shape.fits(bytes), want, "{:?}", text);
        }
    }
}
