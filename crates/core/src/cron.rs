//! Cron schedules, as ODCS writes them (`scheduler: cron`, `schedule: 0 20 * * *`): the five
//! standard fields (minute, hour, day of month, month, day of week) with lists, ranges, steps
//! and month and day names, or one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
//! Times are UTC, in milliseconds since the Unix epoch.
//!
//! As in Vixie cron, when both the day of month and the day of week are restricted, a day
//! matching either one matches.

use time::{Duration, OffsetDateTime, Time};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month and day of week are both restricted: either one matches.
    either_day: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field: its name for messages, its range, and the names its values may have.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[] },
    Field { name: "hour", min: 0, max: 23, names: &[] },
    Field { name: "day of month", min: 1, max: 31, names: &[] },
    Field { name: "month", min: 1, max: 12, names: &MONTHS },
    // 7 is Sunday too.
    Field { name: "day of week", min: 0, max: 7, names: &WEEKDAYS },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        let value = match self.names.iter().position(|n| *n == lower) {
            Some(i) => i as u32 + if self.name == "month" { 1 } else { 0 },
            None => text.parse().map_err(|_| format!("{}: `{text}` is not a number", self.name))?,
        };
        if value < self.min || value > self.max {
            return Err(format!("{}: {value} is outside {}-{}", self.name, self.min, self.max));
        }
        Ok(value)
    }

    /// The set of values a field's text allows, as bits.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().map_err(|_| format!("{}: bad step `{step}`", self.name))?;
                    if step == 0 {
                        return Err(format!("{}: a step of 0", self.name));
                    }
                    (range, step)
                }
                None => (item, 1),
            };
            let (from, to) = match range {
                "*" => (self.min, self.max),
                _ => match range.split_once('-') {
                    Some((a, b)) => (self.value(a)?, self.value(b)?),
                    // `5/15` means from 5 to the end, every 15.
                    None if step > 1 => (self.value(range)?, self.max),
                    None => (self.value(range)?, self.value(range)?),
                },
            };
            if from > to {
                return Err(format!("{}: the range {from}-{to} is backwards", self.name));
            }
            for v in (from..=to).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

fn has(bits: u64, value: u8) -> bool {
    bits & (1 << value) != 0
}

impl Cron {
    /// Parses a schedule, or says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "`{text}` has {} fields; a cron schedule has five: minute hour day-of-month month day-of-week",
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (field, part)) in FIELDS.iter().zip(&parts).enumerate() {
            bits[i] = field.parse(part).map_err(|e| format!("`{text}`: {e}"))?;
        }
        let weekdays = if has(bits[4], 7) { bits[4] | 1 } else { bits[4] };
        let restricted = |p: &str| !p.starts_with('*');
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1],
            days: bits[2],
            months: bits[3],
            weekdays,
            either_day: restricted(parts[2]) && restricted(parts[4]),
        })
    }

    fn day_matches(&self, t: OffsetDateTime) -> bool {
        let dom = has(self.days, t.day());
        let dow = has(self.weekdays, t.weekday().number_days_from_sunday());
        if self.either_day { dom || dow } else { dom && dow }
    }

    /// The first time the schedule fires strictly after `after_ms`; `None` when it never
    /// fires in the next ten years (`0 0 31 2 *`).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let minute = after_ms.div_euclid(60_000) + 1;
        let mut t = OffsetDateTime::from_unix_timestamp(minute.checked_mul(60)?).ok()?;
        let end = t + Duration::days(3653);
        while t < end {
            if !has(self.months, u8::from(t.month())) {
                let (year, month) = match t.month().next() {
                    time::Month::January => (t.year() + 1, time::Month::January),
                    next => (t.year(), next),
                };
                t = time::Date::from_calendar_date(year, month, 1).ok()?.with_time(Time::MIDNIGHT).assume_utc();
            } else if !self.day_matches(t) {
                t = (t.date().next_day()?).with_time(Time::MIDNIGHT).assume_utc();
            } else if !has(self.hours, t.hour()) {
                t = t.replace_minute(0).ok()? + Duration::hours(1);
            } else if !has(self.minutes, t.minute()) {
                t += Duration::minutes(1);
            } else {
                return Some(t.unix_timestamp() * 1000);
            }
        }
        None
    }

    /// The last time the schedule fired after `after_ms` and at or before `now_ms`, if it did.
    pub fn latest(&self, after_ms: i64, now_ms: i64) -> Option<i64> {
        let mut last = None;
        let mut at = after_ms;
        while let Some(next) = self.next_after(at).filter(|n| *n <= now_ms) {
            last = Some(next);
            at = next;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `YYYY-MM-DDTHH:MM:SSZ` in milliseconds.
    fn ms(text: &str) -> i64 {
        let n: Vec<u32> =
            text.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect();
        let month = time::Month::try_from(n[1] as u8).unwrap();
        let date = time::Date::from_calendar_date(n[0] as i32, month, n[2] as u8).unwrap();
        date.with_hms(n[3] as u8, n[4] as u8, n[5] as u8).unwrap().assume_utc().unix_timestamp() * 1000
    }

    #[test]
    fn the_standard_forms_fire_when_they_should() {
        let cases = [
            ("0 20 * * *", "2026-11-26T21:00:00Z", "2026-11-27T20:00:00Z"),
            ("*/15 * * * *", "2026-11-26T21:07:30Z", "2026-11-26T21:15:00Z"),
            ("30 8 * * mon-fri", "2026-11-27T09:00:00Z", "2026-11-30T08:30:00Z"),
            ("0 0 1 jan,jul *", "2026-11-26T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            ("@weekly", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"),
            ("0 12 * * 7", "2026-11-26T00:00:00Z", "2026-11-29T12:00:00Z"),
            // Both days restricted: the 1st of the month or a Monday, whichever comes first.
            ("0 0 1 * 1", "2026-11-26T00:00:00Z", "2026-11-30T00:00:00Z"),
            ("5/20 * * * *", "2026-11-26T10:26:00Z", "2026-11-26T10:45:00Z"),
        ];
        for (schedule, after, expected) in cases {
            let cron = Cron::parse(schedule).unwrap();
            assert_eq!(cron.next_after(ms(after)), Some(ms(expected)), "{schedule} after {after}");
        }
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(0), None, "February has no 31st");
    }

    #[test]
    fn the_latest_firing_is_found_and_an_idle_window_has_none() {
        let hourly = Cron::parse("@hourly").unwrap();
        let latest = hourly.latest(ms("2026-11-26T08:30:00Z"), ms("2026-11-26T11:59:00Z"));
        assert_eq!(latest, Some(ms("2026-11-26T11:00:00Z")));
        assert_eq!(hourly.latest(ms("2026-11-26T11:00:00Z"), ms("2026-11-26T11:59:00Z")), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (schedule, message) in [
            ("0 20 * *", "has 4 fields"),
            ("61 * * * *", "minute: 61 is outside 0-59"),
            ("0 0 * foo *", "month: `foo` is not a number"),
            ("*/0 * * * *", "a step of 0"),
            ("0 5-2 * * *", "backwards"),
            ("", "has 0 fields"),
        ] {
            let err = Cron::parse(schedule).unwrap_err();
            assert!(err.contains(message), "{schedule}: {err}");
        }
    }

    proptest! {
        /// Against a naive walk, minute by minute over two days.
        #[test]
        fn next_after_is_the_first_matching_minute(
            minute in "(\\*|[0-5]?[0-9])(/[1-9])?",
            hour in "(\\*|1?[0-9])(-2[0-3])?",
            weekday in "\\*|[0-6]",
            start in 1_700_000_000_000i64..1_900_000_000_000,
        ) {
            let schedule = format!("{minute} {hour} * * {weekday}");
            let Ok(cron) = Cron::parse(&schedule) else { return Ok(()) };
            let naive = (1..=2 * 24 * 60).map(|k| (start.div_euclid(60_000) + k) * 60_000).find(|&t| {
                let at = OffsetDateTime::from_unix_timestamp(t / 1000).unwrap();
                has(cron.minutes, at.minute()) && has(cron.hours, at.hour()) && cron.day_matches(at)
            });
            if let Some(expected) = naive {
                prop_assert_eq!(cron.next_after(start), Some(expected), "{}", schedule);
            }
        }
    }
}
