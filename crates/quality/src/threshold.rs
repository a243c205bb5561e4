//! The comparison a measured value must satisfy, built from a rule's ODCS operators.
//!
//! Every operator a rule gives must hold (the standard's own example pairs `mustBeGreaterThan`
//! with `mustBeLessThan`). `mustBeBetween` is "the equivalent to mustBeGreaterThan and
//! mustBeLessThan", so its bounds are exclusive, as the standard says.

use std::fmt;

use serde::Serialize;
use serde_json::Value as Any;

/// One operator with its operand(s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Bound {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    Between(f64, f64),
    NotBetween(f64, f64),
}

impl Bound {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bound::Eq(x) => value == x,
            Bound::Ne(x) => value != x,
            Bound::Gt(x) => value > x,
            Bound::Ge(x) => value >= x,
            Bound::Lt(x) => value < x,
            Bound::Le(x) => value <= x,
            Bound::Between(lo, hi) => value > lo && value < hi,
            Bound::NotBetween(lo, hi) => !(value > lo && value < hi),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Eq(x) => write!(f, "= {x}"),
            Bound::Ne(x) => write!(f, "!= {x}"),
            Bound::Gt(x) => write!(f, "> {x}"),
            Bound::Ge(x) => write!(f, ">= {x}"),
            Bound::Lt(x) => write!(f, "< {x}"),
            Bound::Le(x) => write!(f, "<= {x}"),
            Bound::Between(lo, hi) => write!(f, "between {lo} and {hi} (exclusive)"),
            Bound::NotBetween(lo, hi) => write!(f, "not between {lo} and {hi} (exclusive)"),
        }
    }
}

/// All the bounds a value must satisfy.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Threshold(pub Vec<Bound>);

impl Threshold {
    /// A count that must be zero (the schema checks).
    pub fn zero() -> Self {
        Threshold(vec![Bound::Eq(0.0)])
    }

    pub fn holds(&self, value: f64) -> bool {
        self.0.iter().all(|b| b.holds(value))
    }

    /// Builds the threshold from `(operator, value)` pairs, as `Quality::operators` gives them.
    /// An operand of the wrong shape is an error naming the operator.
    pub fn from_operators(operators: &[(&str, &Any)]) -> Result<Self, String> {
        let mut bounds = Vec::new();
        for (name, value) in operators {
            let bound = match *name {
                "mustBeBetween" | "mustNotBeBetween" => {
                    let pair =
                        value.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
                    let Some((lo, hi)) = pair else {
                        return Err(format!("`{name}` needs a list of two numbers"));
                    };
                    if *name == "mustBeBetween" { Bound::Between(lo, hi) } else { Bound::NotBetween(lo, hi) }
                }
                _ => {
                    let Some(x) = value.as_f64() else {
                        return Err(format!("`{name}` needs a number"));
                    };
                    match *name {
                        "mustBe" => Bound::Eq(x),
                        "mustNotBe" => Bound::Ne(x),
                        "mustBeGreaterThan" => Bound::Gt(x),
                        "mustBeGreaterOrEqualTo" => Bound::Ge(x),
                        "mustBeLessThan" => Bound::Lt(x),
                        "mustBeLessOrEqualTo" => Bound::Le(x),
                        other => return Err(format!("`{other}` is not an operator")),
                    }
                }
            };
            bounds.push(bound);
        }
        if bounds.is_empty() {
            return Err("the rule has no operator (mustBe, mustBeLessThan, ...)".into());
        }
        Ok(Threshold(bounds))
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn between_is_exclusive_as_the_standard_says() {
        let between = json!([0, 100]);
        let t = Threshold::from_operators(&[("mustBeBetween", &between)]).unwrap();
        assert!(!t.holds(0.0) && t.holds(0.5) && t.holds(99.0) && !t.holds(100.0));
        let t = Threshold::from_operators(&[("mustNotBeBetween", &between)]).unwrap();
        assert!(t.holds(0.0) && !t.holds(50.0) && t.holds(100.0));
    }

    #[test]
    fn every_operator_must_hold() {
        let (lo, hi) = (json!(0), json!(10));
        let t = Threshold::from_operators(&[("mustBeGreaterThan", &lo), ("mustBeLessOrEqualTo", &hi)]).unwrap();
        assert!(!t.holds(0.0) && t.holds(10.0) && !t.holds(10.5));
        assert_eq!(t.to_string(), "> 0 and <= 10");
    }

    #[test]
    fn malformed_operands_are_named() {
        let bad = json!("five");
        assert_eq!(Threshold::from_operators(&[("mustBe", &bad)]).unwrap_err(), "`mustBe` needs a number");
        let short = json!([1]);
        assert!(Threshold::from_operators(&[("mustBeBetween", &short)]).unwrap_err().contains("two numbers"));
        assert!(Threshold::from_operators(&[]).is_err());
    }
}
