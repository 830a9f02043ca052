//! Permit classes and validity windows. What a permit means is carried by
//! which key signed it: one signing key per `(class, window)`. Windows are
//! whole UTC days or ISO weeks, deliberately coarse so that everyone holding
//! a class for a window shares one anonymity set.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Time, Weekday};

use super::ProtocolError;

/// The one range every date and duration from outside must lie in before
/// any arithmetic touches it: period ends and extensions (HTTP and CLI reach
/// them through the core), validity windows, and the dates an auditor reads
/// from a log. `time` panics or fails on overflow near year 9999; inside
/// this range, adding the longest grace or window never comes near it.
pub mod range {
    use time::{Date, OffsetDateTime};

    /// The earliest year accepted.
    pub const EARLIEST_YEAR: i32 = 1970;
    /// The latest year accepted.
    pub const LATEST_YEAR: i32 = 9000;
    /// The longest grace after a period's end: ten years of 366 days.
    pub const MAX_GRACE_S: u64 = 10 * 366 * 86_400;
    /// The rule a date outside the range breaks, for error messages.
    pub const DATE_RULE: &str = "must lie in the years 1970 to 9000";
    /// The rule a grace outside the range breaks, for error messages.
    pub const GRACE_RULE: &str = "must be at most 316224000 seconds (ten years)";

    /// Whether a calendar date lies in the range.
    pub fn date_ok(date: Date) -> bool {
        (EARLIEST_YEAR..=LATEST_YEAR).contains(&date.year())
    }

    /// Whether an instant lies in the range (judged in UTC).
    pub fn instant_ok(at: OffsetDateTime) -> bool {
        let utc = at.to_offset(time::UtcOffset::UTC);
        date_ok(utc.date())
    }

    /// Whether a grace, in seconds, lies in the range.
    pub fn grace_ok(grace_s: u64) -> bool {
        grace_s <= MAX_GRACE_S
    }
}

/// How long a class's passes are valid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// One UTC calendar day.
    Day,
    /// One ISO 8601 week, Monday to Sunday, UTC.
    IsoWeek,
}

/// One validity window: a day or an ISO week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// The first day of the window (a Monday for ISO weeks).
    start: Date,
    kind: WindowKind,
}

impl Window {
    /// The window of `kind` that contains `date`.
    pub fn containing(kind: WindowKind, date: Date) -> Self {
        let start = match kind {
            WindowKind::Day => date,
            WindowKind::IsoWeek => {
                date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
            }
        };
        Self { start, kind }
    }

    /// Parses `2026-12-01` (a day) or `2026-W49` (an ISO week), in the
    /// years of [`range`] only.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let window = Self::parse_any_year(text)?;
        if range::date_ok(window.start) {
            Ok(window)
        } else {
            Err(ProtocolError::BadWindow)
        }
    }

    fn parse_any_year(text: &str) -> Result<Self, ProtocolError> {
        if let Some((year, week)) = text.split_once("-W") {
            let year: i32 = year.parse().map_err(|_| ProtocolError::BadWindow)?;
            let week: u8 = week.parse().map_err(|_| ProtocolError::BadWindow)?;
            let start = Date::from_iso_week_date(year, week, Weekday::Monday)
                .map_err(|_| ProtocolError::BadWindow)?;
            return Ok(Self {
                start,
                kind: WindowKind::IsoWeek,
            });
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let start = Date::parse(text, &format).map_err(|_| ProtocolError::BadWindow)?;
        Ok(Self {
            start,
            kind: WindowKind::Day,
        })
    }

    /// The window's kind.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    /// The first day of the window.
    pub fn first_day(&self) -> Date {
        self.start
    }

    /// The instant the window opens (inclusive).
    pub fn starts_at(&self) -> OffsetDateTime {
        self.start.with_time(Time::MIDNIGHT).assume_utc()
    }

    /// The instant the window closes (exclusive).
    pub fn ends_at(&self) -> OffsetDateTime {
        self.starts_at() + self.length()
    }

    fn length(&self) -> Duration {
        match self.kind {
            WindowKind::Day => Duration::days(1),
            WindowKind::IsoWeek => Duration::weeks(1),
        }
    }

    /// The window after this one.
    pub fn next(&self) -> Self {
        Self {
            start: self.start + self.length(),
            kind: self.kind,
        }
    }

    /// The ISO week (year, week) this window falls in; quotas count per ISO week.
    pub fn iso_week(&self) -> (i32, u8) {
        let (year, week, _) = self.start.to_iso_week_date();
        (year, week)
    }

    /// Whether `at` lies in the window, widened by `skew` on both sides.
    pub fn contains(&self, at: OffsetDateTime, skew: Duration) -> bool {
        at >= self.starts_at() - skew && at < self.ends_at() + skew
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WindowKind::Day => write!(
                f,
                "{:04}-{:02}-{:02}",
                self.start.year(),
                u8::from(self.start.month()),
                self.start.day()
            ),
            WindowKind::IsoWeek => {
                let (year, week) = self.iso_week();
                write!(f, "{year:04}-W{week:02}")
            }
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Window::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How many passes of a class a resident may obtain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quota {
    /// At most this many per ISO week.
    PerIsoWeek(u32),
    /// No limit.
    Unlimited,
}

/// Extra personal data a class requires at enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraField {
    /// The employer's tax number (for work passes).
    EmployerTaxNumber,
}

/// A class name such as `personal`: lowercase ASCII letters, digits and `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClassName(String);

impl ClassName {
    /// Validates a class name.
    pub fn new(name: &str) -> Result<Self, ProtocolError> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(ProtocolError::BadClassName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClassName {
    type Error = ProtocolError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<ClassName> for String {
    fn from(value: ClassName) -> Self {
        value.0
    }
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One permit class, as configured by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitClass {
    /// The class name shown to verifiers.
    pub name: ClassName,
    /// How long each pass is valid for.
    pub window: WindowKind,
    /// How many passes a resident may obtain.
    pub quota: Quota,
    /// Personal data this class needs beyond the base enrolment.
    #[serde(default)]
    pub requires: Vec<ExtraField>,
}

/// The set of permit classes an issuer offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassConfig {
    /// The classes, by name.
    pub classes: Vec<PermitClass>,
}

impl ClassConfig {
    /// Looks a class up by name.
    pub fn class(&self, name: &str) -> Option<&PermitClass> {
        self.classes.iter().find(|c| c.name.as_str() == name)
    }
}

impl Default for ClassConfig {
    /// The defaults of the reference design: two one-day personal passes a
    /// week; unlimited weekly work passes (employer tax number required);
    /// unlimited one-day medical passes.
    fn default() -> Self {
        let class = |name: &str, window, quota, requires| PermitClass {
            // The default names are valid literals.
            #[allow(clippy::expect_used)]
            name: ClassName::new(name).expect("default class names are valid"),
            window,
            quota,
            requires,
        };
        Self {
            classes: vec![
                class("personal", WindowKind::Day, Quota::PerIsoWeek(2), vec![]),
                class(
                    "work",
                    WindowKind::IsoWeek,
                    Quota::Unlimited,
                    vec![ExtraField::EmployerTaxNumber],
                ),
                class("medical", WindowKind::Day, Quota::Unlimited, vec![]),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    /// Windows come from residents: one near the end of `time`'s range must
    /// be refused at parsing, before `ends_at` can overflow.
    #[test]
    fn windows_outside_the_range_are_refused() {
        for text in [
            "9999-12-31",
            "9999-W52",
            "9001-01-01",
            "1969-12-31",
            "-0001-W01",
        ] {
            assert!(Window::parse(text).is_err(), "{text}");
        }
        for text in ["9000-12-31", "9000-W52", "1970-01-01"] {
            let window = Window::parse(text).unwrap();
            assert!(window.ends_at() > window.starts_at(), "{text}");
        }
    }

    #[test]
    fn windows_print_and_parse() {
        let day = Window::containing(WindowKind::Day, date!(2026 - 12 - 01));
        assert_eq!(day.to_string(), "2026-12-01");
        assert_eq!(Window::parse("2026-12-01").unwrap(), day);
        let week = Window::containing(WindowKind::IsoWeek, date!(2026 - 12 - 03));
        assert_eq!(week.to_string(), "2026-W49");
        assert_eq!(week.first_day(), date!(2026 - 11 - 30));
        assert_eq!(Window::parse("2026-W49").unwrap(), week);
        assert_eq!(week.next().to_string(), "2026-W50");
        assert!(Window::parse("2026-W60").is_err());
        assert!(Window::parse("yesterday").is_err());
    }

    #[test]
    fn contains_respects_bounds_and_skew() {
        let day = Window::parse("2026-12-01").unwrap();
        assert!(day.contains(datetime!(2026-12-01 00:00 UTC), Duration::ZERO));
        assert!(day.contains(datetime!(2026-12-01 23:59:59 UTC), Duration::ZERO));
        assert!(!day.contains(datetime!(2026-12-02 00:00 UTC), Duration::ZERO));
        assert!(!day.contains(datetime!(2026-11-30 23:58 UTC), Duration::ZERO));
        assert!(day.contains(datetime!(2026-11-30 23:58 UTC), Duration::minutes(5)));
    }

    #[test]
    fn default_classes_match_the_design() {
        let config = ClassConfig::default();
        assert_eq!(
            config.class("personal").unwrap().quota,
            Quota::PerIsoWeek(2)
        );
        assert_eq!(
            config.class("work").unwrap().requires,
            vec![ExtraField::EmployerTaxNumber]
        );
        assert_eq!(config.class("medical").unwrap().quota, Quota::Unlimited);
        assert!(config.class("party").is_none());
        assert!(ClassName::new("Bad Name").is_err());
    }
}
