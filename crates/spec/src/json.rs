//! A strict JSON reader that builds the same [`Node`] tree as the YAML reader.
//!
//! JSON is nearly a subset of YAML 1.2, but not quite: YAML parsers refuse the UTF-16
//! surrogate pairs (`"\ud83d\ude00"`) that JSON uses for characters outside the BMP. So
//! texts that look like JSON are read here first, with exact JSON rules and positions.

use crate::tree::{DuplicateKey, Entry, MAX_DEPTH, Node, Parsed, Pos, Span, SyntaxError, Value};

/// Reads one JSON document.
pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut reader = Reader { bytes: text.as_bytes(), at: 0, line: 1, col: 1, duplicate_keys: Vec::new() };
    reader.skip_space();
    let node = reader.value(0)?;
    reader.skip_space();
    if reader.at < reader.bytes.len() {
        return Err(reader.error("unexpected text after the JSON value"));
    }
    Ok(Parsed { documents: vec![node], duplicate_keys: reader.duplicate_keys })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u32,
    col: u32,
    duplicate_keys: Vec<DuplicateKey>,
}

impl Reader<'_> {
    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError { message: message.to_string(), span: Span { start: self.pos(), end: self.pos() } }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            // Columns count characters: continuation bytes of UTF-8 do not advance.
            self.col += 1;
        }
        Some(b)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), SyntaxError> {
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("values nest too deeply"));
        }
        let start = self.pos();
        let value = match self.peek() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::Str(self.string()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.error("expected a JSON value")),
            None => return Err(self.error("unexpected end of text")),
        };
        Ok(Node { value, span: Span { start, end: self.pos() } })
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(value)
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        let mut float = false;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        let digits = |r: &mut Self| {
            let from = r.at;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.bump();
            }
            r.at > from
        };
        if !digits(self) {
            return Err(self.error("expected digits"));
        }
        if self.peek() == Some(b'.') {
            float = true;
            self.bump();
            if !digits(self) {
                return Err(self.error("expected digits after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !digits(self) {
                return Err(self.error("expected digits in the exponent"));
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| self.error("invalid number"))?;
        if !float && let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        text.parse::<f64>().map(Value::Float).map_err(|_| self.error("invalid number"))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.expect(b'"', "`\"`")?;
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.bump() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape in string")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) if b < 0x20 => {
                    return Err(self.error("control character in string: escape it"));
                }
                Some(b) => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8 in string"))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = self
                .bump()
                .and_then(|b| (b as char).to_digit(16))
                .ok_or_else(|| self.error("expected four hex digits after \\u"))?;
            n = n * 16 + digit;
        }
        Ok(n)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !(self.bump() == Some(b'\\') && self.bump() == Some(b'u')) {
                return Err(self.error("a high surrogate must be followed by a low surrogate"));
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("invalid low surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid Unicode escape"))
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.expect(b'[', "`[`")?;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(Value::Seq(items));
        }
        loop {
            self.skip_space();
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.bump() {
                Some(b',') => continue,
                Some(b']') => return Ok(Value::Seq(items)),
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.expect(b'{', "`{`")?;
        let mut entries: Vec<Entry> = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(Value::Map(entries));
        }
        loop {
            self.skip_space();
            let key_start = self.pos();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            let key_span = Span { start: key_start, end: self.pos() };
            self.skip_space();
            self.expect(b':', "`:`")?;
            self.skip_space();
            let value = self.value(depth + 1)?;
            match entries.iter().find(|e| e.key == key) {
                Some(first) => self.duplicate_keys.push(DuplicateKey { key, first: first.key_span, again: key_span }),
                None => entries.push(Entry { key, key_span, value }),
            }
            self.skip_space();
            match self.bump() {
                Some(b',') => continue,
                Some(b'}') => return Ok(Value::Map(entries)),
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_surrogate_pairs_and_positions() {
        let parsed =
            parse("{\n\t\"a\": \"caf\\u00e9 \\ud83d\\ude00\",\n\t\"b\": [1, 2.5, -3e2, true, null]\n}").unwrap();
        let doc = &parsed.documents[0];
        assert_eq!(doc.get("a").unwrap().as_str(), Some("café 😀"));
        assert_eq!(doc.get("b").unwrap().span.start, Pos { line: 3, col: 7 });
        assert_eq!(doc.get("b").unwrap().to_json(), serde_json::json!([1, 2.5, -300.0, true, null]));
    }

    #[test]
    fn refuses_what_json_refuses() {
        for text in ["{", "{\"a\" 1}", "[1,]", "{\"a\": tru}", "\"\\ud83d\"", "01x", "{} {}", "\"a\nb\""] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn reports_duplicate_keys() {
        let parsed = parse("{\"a\": 1, \"a\": 2}").unwrap();
        assert_eq!(parsed.duplicate_keys.len(), 1);
    }
}
