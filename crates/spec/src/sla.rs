//! What the standard says about SLA properties: their names and synonyms (case-insensitive),
//! which direction is better, and the units of durations.

use serde_json::Value as Any;

/// Which way an SLA value improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// The standard gives no order (e.g. a time of day with an offset).
    Unordered,
}

/// The SLA properties of the Data QoS table: canonical name, short synonym, direction.
const PROPERTIES: &[(&str, &str, Better)] = &[
    ("availability", "av", Better::Higher),
    ("throughput", "th", Better::Higher),
    ("errorRate", "er", Better::Lower),
    ("generalAvailability", "ga", Better::Lower),
    ("endOfSupport", "es", Better::Higher),
    ("endOfLife", "el", Better::Higher),
    ("retention", "re", Better::Higher),
    ("frequency", "fy", Better::Lower),
    ("latency", "ly", Better::Lower),
    ("timeToDetect", "td", Better::Lower),
    ("timeToNotify", "tn", Better::Lower),
    ("timeToRepair", "tr", Better::Lower),
    ("timeOfAvailability", "", Better::Unordered),
];

/// The canonical name of an SLA property; `freshness` is the older name of `latency`.
pub fn canonical(property: &str) -> Option<&'static str> {
    if property.eq_ignore_ascii_case("freshness") {
        return Some("latency");
    }
    PROPERTIES
        .iter()
        .find(|(name, short, _)| {
            property.eq_ignore_ascii_case(name) || (!short.is_empty() && property.eq_ignore_ascii_case(short))
        })
        .map(|(name, ..)| *name)
}

/// Which way the property improves, when the standard says.
pub fn better(property: &str) -> Better {
    canonical(property)
        .and_then(|c| PROPERTIES.iter().find(|(name, ..)| *name == c))
        .map_or(Better::Unordered, |(.., better)| *better)
}

/// Seconds in one `unit`, accepting the standard's synonyms (d, day, days; y, yr, years; ...).
pub fn unit_seconds(unit: &str) -> Option<f64> {
    const DAY: f64 = 86_400.0;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => DAY,
        "w" | "wk" | "week" | "weeks" => 7.0 * DAY,
        "mo" | "month" | "months" => 30.0 * DAY,
        "y" | "yr" | "yrs" | "year" | "years" => 365.0 * DAY,
        _ => return None,
    };
    Some(seconds)
}

/// Seconds of an SLA duration (latency, retention): one function for lint and test, so that
/// what lint accepts the test can measure. The value is a number (or digits) in `unit` (days
/// by default), or an ISO-8601 duration such as `P1DT12H`.
pub fn duration_seconds(value: &Any, unit: Option<&str>) -> Result<f64, String> {
    let number = match value {
        Any::Number(n) => n.as_f64(),
        Any::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
        Any::String(s) => {
            return iso_duration(s).ok_or_else(|| format!("`{s}` is neither a number nor an ISO-8601 duration"));
        }
        _ => None,
    };
    let number = number.ok_or("the SLA value is not a duration")?;
    let unit = unit.unwrap_or("d");
    unit_seconds(unit).map(|s| number * s).ok_or_else(|| format!("`{unit}` is not a unit of time"))
}

/// `PnYnMnWnDTnHnMnS` with every part optional; years are 365 days and months 30.
fn iso_duration(text: &str) -> Option<f64> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    let (date, time) = rest.split_once(['T', 't']).unwrap_or((rest, ""));
    let mut total = 0.0;
    let mut any = false;
    for (part, units) in [
        (date, &[('Y', 365.0 * 86400.0), ('M', 30.0 * 86400.0), ('W', 604800.0), ('D', 86400.0)][..]),
        (time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let c = c.to_ascii_uppercase();
            let factor = allowed.by_ref().find(|(u, _)| *u == c)?.1;
            total += number.parse::<f64>().ok()? * factor;
            number.clear();
            any = true;
        }
        if !number.is_empty() {
            return None;
        }
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_with_synonyms() {
        assert_eq!(canonical("Latency"), Some("latency"));
        assert_eq!(canonical("ly"), Some("latency"));
        assert_eq!(canonical("FRESHNESS"), Some("latency"));
        assert_eq!(canonical("RE"), Some("retention"));
        assert_eq!(canonical("speed"), None);
        assert_eq!(better("retention"), Better::Higher);
        assert_eq!(better("latency"), Better::Lower);
    }

    #[test]
    fn units_accept_synonyms() {
        assert_eq!(unit_seconds("d"), unit_seconds("days"));
        assert_eq!(unit_seconds("y"), unit_seconds("yr"));
        assert_eq!(unit_seconds("Years"), Some(365.0 * 86_400.0));
        assert_eq!(unit_seconds("fortnight"), None);
    }

    #[test]
    fn iso_durations_and_units() {
        assert_eq!(iso_duration("P1DT12H"), Some(129_600.0));
        assert_eq!(iso_duration("PT90M"), Some(5_400.0));
        assert_eq!(iso_duration("P1Y"), Some(365.0 * 86_400.0));
        assert_eq!(iso_duration("P"), None);
        assert_eq!(iso_duration("P1X"), None);
        assert_eq!(duration_seconds(&Any::from(4), Some("days")), Ok(4.0 * 86_400.0));
        assert_eq!(duration_seconds(&Any::from(2), Some("yr")), Ok(2.0 * 365.0 * 86_400.0));
        assert_eq!(duration_seconds(&Any::from(3), None), Ok(3.0 * 86_400.0));
        assert!(duration_seconds(&Any::from(3), Some("fortnights")).unwrap_err().contains("fortnights"));
    }
}
