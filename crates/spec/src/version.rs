//! Semantic versions as the standards use them: `1.2.3` and `v1.2.3` are the same version.
//!
//! Neither ODCS nor ODPS requires semantic versions, so a version that is not one is kept as
//! written; only comparisons that need a major version (breaking-change checks, identity by
//! major) say that they cannot be made.

use std::cmp::Ordering;
use std::fmt;

/// A parsed semantic version (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`, optional leading `v`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SemVer {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
    pub build: String,
}

impl SemVer {
    pub fn parse(text: &str) -> Option<SemVer> {
        let text = text.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) if valid_identifiers(build, false) => (rest, build),
            Some(_) => return None,
            None => (text, ""),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) if valid_identifiers(pre, true) => (core, pre),
            Some(_) => return None,
            None => (rest, ""),
        };
        let mut parts = core.split('.');
        let mut number = || {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || (part.len() > 1 && part.starts_with('0'))
            {
                return None;
            }
            part.parse().ok()
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if parts.next().is_some() {
            return None;
        }
        Some(SemVer { major, minor, patch, pre: pre.to_string(), build: build.to_string() })
    }
}

fn valid_identifiers(text: &str, numeric_no_leading_zero: bool) -> bool {
    text.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(numeric_no_leading_zero
                && id.len() > 1
                && id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The canonical text of a version for identity: `v1.2.3` and `1.2.3` give `1.2.3`; a
/// version that is not semver is kept as written (trimmed).
pub fn canonical(text: &str) -> String {
    SemVer::parse(text).map_or_else(|| text.trim().to_string(), |v| v.to_string())
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pre-release precedence: a release is greater than any pre-release of it; identifiers
/// compare numerically when both are numbers, as text otherwise.
fn compare_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_v_is_the_same_version() {
        assert_eq!(SemVer::parse("1.2.3"), SemVer::parse("v1.2.3"));
        assert_ne!(SemVer::parse("1.2.3"), SemVer::parse("1.2.4"));
        assert_eq!(SemVer::parse("v2.0.0-rc.1+b5").unwrap().to_string(), "2.0.0-rc.1+b5");
    }

    #[test]
    fn rejects_non_semver() {
        for text in ["1.0", "1", "01.0.0", "1.0.0.0", "latest", "1.0.0-", "1.0.0+", "a.b.c", "1.0.0-01"] {
            assert_eq!(SemVer::parse(text), None, "{text}");
        }
    }

    #[test]
    fn precedence_follows_semver() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in order.windows(2) {
            assert!(SemVer::parse(pair[0]).unwrap() < SemVer::parse(pair[1]).unwrap(), "{pair:?}");
        }
    }
}
