//! What the standard says about SLA properties: their names and synonyms (case-insensitive),
//! which direction is better, and the units of durations.

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
}
