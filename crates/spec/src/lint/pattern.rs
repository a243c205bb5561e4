//! The portable subset of ECMA-262 regular expressions.
//!
//! ODCS says patterns are ECMA-262. meshplane runs them in several engines (Rust's regex for
//! files, PostgreSQL's ARE when checks push down), so it accepts only what every engine
//! runs with the same meaning once translated: literals, `.`, classes with ranges, `\d \w \s`
//! and their negations, `^ $ \b \B`, groups (capturing, non-capturing, `(?<name>…)`),
//! alternation and every quantifier. It refuses, with a reason, what some engine lacks or
//! reads differently: lookaround, backreferences, inline flags, Unicode property classes,
//! POSIX classes, nested classes and class set operations, `\A \z`, and Rust-only syntax.

use regex_syntax::ast::{self, Ast, ClassSet, ClassSetItem, GroupKind, parse::ParserBuilder};

/// Why a pattern is refused: a message, and a hint on what to write instead.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

/// Checks that `pattern` is a valid ECMA-262 expression in the portable subset.
pub fn check(pattern: &str) -> Result<(), Refusal> {
    if let Some(refusal) = textual_refusal(pattern) {
        return Err(refusal);
    }
    let ast = ParserBuilder::new().nest_limit(100).build().parse(pattern).map_err(|err| Refusal {
        message: format!("invalid regular expression: {}", err.kind()),
        hint: "check the brackets, escapes and quantifiers of the pattern".into(),
    })?;
    walk(&ast)
}

/// Constructs the Rust parser would reject with a confusing message, caught first by text.
fn textual_refusal(pattern: &str) -> Option<Refusal> {
    let refuse = |message: &str, hint: &str| Some(Refusal { message: message.into(), hint: hint.into() });
    if pattern.contains("(?=") || pattern.contains("(?!") || pattern.contains("(?<=") || pattern.contains("(?<!") {
        return refuse(
            "lookahead and lookbehind are not portable: the file executor cannot run them",
            "express the condition without lookaround, or split it into two quality rules",
        );
    }
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1].is_ascii_digit() && bytes[i + 1] != b'0' {
                return refuse(
                    "backreferences (\\1, \\2, ...) are not portable: the file executor cannot run them",
                    "rewrite the pattern without referring back to a group",
                );
            }
            if bytes[i + 1] == b'k' {
                return refuse(
                    "named backreferences (\\k<name>) are not portable",
                    "rewrite the pattern without referring back to a group",
                );
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal { message: message.into(), hint: hint.into() })
}

fn walk(node: &Ast) -> Result<(), Refusal> {
    match node {
        Ast::Empty(_) | Ast::Dot(_) | Ast::ClassPerl(_) => Ok(()),
        Ast::Flags(_) => refuse("inline flags such as (?i) are not ECMA-262", "write both cases explicitly, e.g. [Aa]"),
        Ast::Literal(lit) => literal(lit),
        Ast::Assertion(a) => match a.kind {
            ast::AssertionKind::StartLine
            | ast::AssertionKind::EndLine
            | ast::AssertionKind::WordBoundary
            | ast::AssertionKind::NotWordBoundary => Ok(()),
            _ => refuse(
                "this assertion is not ECMA-262 (\\A, \\z and \\b{…} are Rust syntax)",
                "use ^ and $ for the start and end",
            ),
        },
        Ast::ClassUnicode(_) => refuse(
            "Unicode property classes (\\p{…}) are not portable: PostgreSQL cannot run them",
            "list the characters or ranges instead, e.g. [A-Za-z]",
        ),
        Ast::ClassBracketed(class) => class_set(&class.kind),
        Ast::Repetition(rep) => walk(&rep.ast),
        Ast::Group(group) => {
            match &group.kind {
                GroupKind::CaptureName { starts_with_p: true, .. } => {
                    return refuse("(?P<name>…) is Python/Rust syntax, not ECMA-262", "write (?<name>…) instead");
                }
                GroupKind::NonCapturing(flags) if !flags.items.is_empty() => {
                    return refuse(
                        "inline flags such as (?i:…) are not ECMA-262",
                        "write both cases explicitly, e.g. [Aa]",
                    );
                }
                _ => {}
            }
            walk(&group.ast)
        }
        Ast::Alternation(alt) => alt.asts.iter().try_for_each(walk),
        Ast::Concat(concat) => concat.asts.iter().try_for_each(walk),
    }
}

fn literal(lit: &ast::Literal) -> Result<(), Refusal> {
    match lit.kind {
        ast::LiteralKind::Octal => refuse("octal escapes are not portable", "write the character itself or \\xHH"),
        ast::LiteralKind::HexBrace(_) => refuse("\\x{…} is Rust syntax, not ECMA-262", "write \\xHH or \\uHHHH"),
        ast::LiteralKind::HexFixed(ast::HexLiteralKind::UnicodeLong) => {
            refuse("\\UHHHHHHHH is not ECMA-262", "write the character itself")
        }
        ast::LiteralKind::Special(ast::SpecialLiteralKind::Bell | ast::SpecialLiteralKind::Space) => {
            refuse("this escape is not ECMA-262", "write the character itself")
        }
        _ => Ok(()),
    }
}

fn class_set(set: &ClassSet) -> Result<(), Refusal> {
    match set {
        ClassSet::BinaryOp(_) => refuse(
            "class set operations (&&, --, ~~) are Rust syntax; in ECMA-262 they are literal characters",
            "escape the characters (\\&) or list the class explicitly",
        ),
        ClassSet::Item(item) => class_item(item),
    }
}

fn class_item(item: &ClassSetItem) -> Result<(), Refusal> {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Range(_) | ClassSetItem::Perl(_) => Ok(()),
        ClassSetItem::Literal(lit) => literal(lit),
        ClassSetItem::Ascii(_) => {
            refuse("POSIX classes such as [[:alpha:]] are not ECMA-262", "write the range instead, e.g. [A-Za-z]")
        }
        ClassSetItem::Unicode(_) => refuse(
            "Unicode property classes (\\p{…}) are not portable: PostgreSQL cannot run them",
            "list the characters or ranges instead",
        ),
        ClassSetItem::Bracketed(_) => refuse(
            "a class inside a class is Rust syntax; in ECMA-262 `[` inside a class is a literal",
            "escape the inner bracket as \\[",
        ),
        ClassSetItem::Union(union) => union.items.iter().try_for_each(class_item),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_the_portable_subset() {
        for p in [
            r"^[A-Z]{2}$",
            r"^\d{4}-\d{2}-\d{2}$",
            r"^[\w.+-]+@[\w-]+\.[a-z]{2,}$",
            r"(?:ab|cd)+?",
            r"(?<year>\d{4})",
            r"^\s*$",
            r"\bword\B",
            r"[^a-z0-9_]",
            r"a\.b\/c",
            r"\u00e9\x41\t\n",
            "",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_what_is_not_portable() {
        for (p, word) in [
            (r"foo(?=bar)", "lookahead"),
            (r"(?<!x)y", "lookahead"),
            (r"(a)\1", "backreference"),
            (r"(?i)abc", "flags"),
            (r"\p{L}+", "Unicode"),
            (r"[[:alpha:]]", "POSIX"),
            (r"[a-z&&[^aeiou]]", "set operations"),
            (r"\Aabc\z", "assertion"),
            (r"(?P<n>x)", "(?P<name>"),
            (r"\x{41}", "Rust syntax"),
            (r"[a-z", "invalid"),
            (r"a{2,1}", "invalid"),
        ] {
            let err = check(p).expect_err(p);
            assert!(err.message.contains(word), "{p}: {}", err.message);
            assert!(!err.hint.is_empty());
        }
    }
}
