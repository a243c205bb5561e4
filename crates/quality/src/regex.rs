//! Translates a contract's ECMA-262 pattern (the portable subset the linter accepts) into the
//! dialect of each executor, so every store gives the same answer.
//!
//! ECMA-262 reads `\d`, `\w` and `\b` as ASCII and `.` as anything but a line terminator;
//! Rust's regex reads them as Unicode, PostgreSQL reads `\b` as a backspace and `.` as any
//! character. The translation spells each of them out.

use meshplane_spec::lint::pattern;

/// The engine a pattern is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The `regex` crate (files, through DataFusion or meshplane's own kernels).
    Rust,
    /// PostgreSQL's advanced regular expressions (`~`).
    Postgres,
}

const DIGIT: &str = "0-9";
const WORD: &str = "A-Za-z0-9_";
const NOT_LINE_END: &str = "[^\n\r\u{2028}\u{2029}]";

/// The pattern in `dialect`, or why it cannot be run.
pub fn translate(ecma: &str, dialect: Dialect) -> Result<String, String> {
    pattern::check(ecma).map_err(|r| format!("{} ({})", r.message, r.hint))?;
    let mut out = String::with_capacity(ecma.len() + 16);
    let mut chars = ecma.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else { return Err("the pattern ends with a lone backslash".into()) };
                out.push_str(&escape(e, in_class, dialect)?);
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                // A `]` right after the opening bracket is a literal in ECMA-262 only when
                // escaped, and an empty class matches nothing; both are left to the engine.
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '.' if !in_class => out.push_str(NOT_LINE_END),
            '(' if !in_class && chars.peek() == Some(&'?') => {
                out.push('(');
                let mut look = chars.clone();
                look.next();
                if look.peek() == Some(&'<') && dialect == Dialect::Postgres {
                    // A named group: PostgreSQL has no names, the group still captures.
                    chars.next();
                    chars.next();
                    for n in chars.by_ref() {
                        if n == '>' {
                            break;
                        }
                    }
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn escape(e: char, in_class: bool, dialect: Dialect) -> Result<String, String> {
    let class = |set: &str, negated: bool| -> Result<String, String> {
        match (in_class, negated) {
            (true, false) => Ok(set.to_string()),
            (false, false) => Ok(format!("[{set}]")),
            (false, true) => Ok(format!("[^{set}]")),
            (true, true) if dialect == Dialect::Rust => Ok(format!("[^{set}]")),
            (true, true) => {
                Err("a negated class escape (\\D, \\S, \\W) inside brackets cannot run on PostgreSQL".into())
            }
        }
    };
    Ok(match e {
        'd' => class(DIGIT, false)?,
        'D' => class(DIGIT, true)?,
        'w' => class(WORD, false)?,
        'W' => class(WORD, true)?,
        'b' if in_class => "\\x08".to_string(),
        'b' => if dialect == Dialect::Rust { "(?-u:\\b)" } else { "\\y" }.to_string(),
        'B' => if dialect == Dialect::Rust { "(?-u:\\B)" } else { "\\Y" }.to_string(),
        'S' if in_class && dialect == Dialect::Postgres => {
            return Err("a negated class escape (\\D, \\S, \\W) inside brackets cannot run on PostgreSQL".into());
        }
        's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' => format!("\\{e}"),
        '0' => "\\x00".to_string(),
        c if c.is_ascii_alphanumeric() => format!("\\{c}"),
        // An escaped punctuation character is that character.
        c => {
            let mut s = String::new();
            if "\\^$.|?*+()[]{}-/".contains(c) && c != '/' {
                s.push('\\');
            }
            s.push(c);
            s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(p: &str) -> ::regex::Regex {
        ::regex::Regex::new(&translate(p, Dialect::Rust).unwrap()).unwrap()
    }

    #[test]
    fn ascii_classes_as_ecma_reads_them() {
        let digits = rust(r"^\d+$");
        assert!(digits.is_match("0123"));
        assert!(!digits.is_match("١٢٣"), "Arabic-Indic digits are not \\d in ECMA-262");
        let word = rust(r"^\w+$");
        assert!(!word.is_match("café"));
        assert!(rust(r"a.c").is_match("abc") && !rust(r"a.c").is_match("a\nc"));
        assert!(rust(r"\bcat\b").is_match("a cat sat"));
        assert!(rust(r"^[\d.]+$").is_match("1.5") && !rust(r"^[\d.]+$").is_match("1x5"));
        assert!(rust(r"^a\/b$").is_match("a/b"));
    }

    #[test]
    fn postgres_spelling() {
        assert_eq!(translate(r"\bx\d", Dialect::Postgres).unwrap(), r"\yx[0-9]");
        assert_eq!(translate(r"(?<year>\d{4})", Dialect::Postgres).unwrap(), "([0-9]{4})");
        assert_eq!(translate(r"(?:ab)+", Dialect::Postgres).unwrap(), "(?:ab)+");
        assert!(translate(r"[\D]", Dialect::Postgres).is_err());
        assert!(translate(r"[^\S]", Dialect::Postgres).is_err());
        assert_eq!(translate(r"[^@\s]+", Dialect::Postgres).unwrap(), r"[^@\s]+");
    }

    proptest::proptest! {
        /// Whatever the linter accepts translates into a pattern the file executor compiles,
        /// and the translation never panics on anything else.
        #[test]
        fn accepted_patterns_compile(p in r"[\\a-z0-9.^$|?*+(){}\[\]<>:=!,\- ]{0,24}") {
            if let Ok(rust) = translate(&p, Dialect::Rust) {
                proptest::prop_assert!(::regex::Regex::new(&rust).is_ok(), "{p} became {rust}");
            }
            let _ = translate(&p, Dialect::Postgres);
        }
    }

    #[test]
    fn refuses_what_the_linter_refuses() {
        assert!(translate(r"(?=x)", Dialect::Rust).unwrap_err().contains("lookahead"));
        assert!(translate(r"(a)\1", Dialect::Rust).is_err());
    }
}
