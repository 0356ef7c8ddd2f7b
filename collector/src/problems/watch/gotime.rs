//! Go time layouts (`"Jan _2 15:04:05"`) for the filelog `timestampFormat`, turned into chrono formats.

use chrono::{DateTime, Datelike, Local, NaiveDateTime, TimeZone, Utc};

/// A Go time layout compiled to a chrono format.
#[derive(Debug, Clone)]
pub struct GoLayout {
    chrono: String,
    has_year: bool,
    has_zone: bool,
}

/// Go layout tokens, longest first where they share a prefix.
const TOKENS: &[(&str, &str)] = &[
    ("January", "%B"),
    ("Monday", "%A"),
    ("2006", "%Y"),
    ("-07:00:00", "%:z"),
    ("-07:00", "%:z"),
    ("-0700", "%z"),
    ("Z07:00", "%:z"),
    ("Z0700", "%z"),
    ("-07", "%#z"),
    ("Jan", "%b"),
    ("Mon", "%a"),
    ("MST", "%Z"),
    (".000000000", "%.9f"),
    (".000000", "%.6f"),
    (".000", "%.3f"),
    (".999999999", "%.f"),
    (".999999", "%.f"),
    (".999", "%.f"),
    ("002", "%j"),
    ("01", "%m"),
    ("02", "%d"),
    ("_2", "%e"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("15", "%H"),
    ("PM", "%p"),
    ("pm", "%P"),
    ("1", "%m"),
    ("2", "%d"),
    ("3", "%I"),
    ("4", "%M"),
    ("5", "%S"),
];

impl GoLayout {
    /// Compiles a Go layout.
    pub fn new(layout: &str) -> Self {
        let mut chrono = String::new();
        let mut rest = layout;
        'outer: while !rest.is_empty() {
            for (go, fmt) in TOKENS {
                if let Some(r) = rest.strip_prefix(go) {
                    chrono.push_str(fmt);
                    rest = r;
                    continue 'outer;
                }
            }
            let c = rest.chars().next().expect("non-empty");
            if c == '%' {
                chrono.push_str("%%");
            } else {
                chrono.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
        let has_year = chrono.contains("%Y") || chrono.contains("%y");
        let has_zone = chrono.contains('z');
        GoLayout {
            chrono,
            has_year,
            has_zone,
        }
    }

    /// Parses a timestamp; a layout without a year gets the current year (as node-problem-detector
    /// does for kernel logs) and one without a zone is local time.
    pub fn parse(&self, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let s = s.trim();
        if self.has_zone {
            return DateTime::parse_from_str(s, &self.chrono)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| format!("timestamp {s:?} does not match layout: {e}"));
        }
        let naive = if self.has_year {
            NaiveDateTime::parse_from_str(s, &self.chrono)
        } else {
            let year = now.with_timezone(&Local).year();
            NaiveDateTime::parse_from_str(&format!("{year} {s}"), &format!("%Y {}", self.chrono))
        }
        .map_err(|e| format!("timestamp {s:?} does not match layout: {e}"))?;
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("timestamp {s:?} does not exist in the local time zone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_layout() {
        let l = GoLayout::new("Jan _2 15:04:05");
        let now = Utc::now();
        let t = l
            .parse("Mar  5 07:08:09", now)
            .unwrap()
            .with_timezone(&Local);
        assert_eq!(
            (t.month(), t.day(), t.year()),
            (3, 5, now.with_timezone(&Local).year())
        );
        assert_eq!(t.format("%H:%M:%S").to_string(), "07:08:09");
        let t = l
            .parse("Nov 22 23:59:01", now)
            .unwrap()
            .with_timezone(&Local);
        assert_eq!((t.month(), t.day()), (11, 22));
        assert!(l.parse("garbage", now).is_err());
    }

    #[test]
    fn layouts_with_year_and_zone() {
        let l = GoLayout::new("2006-01-02T15:04:05.000Z07:00");
        let t = l
            .parse("2024-02-03T04:05:06.789+02:00", Utc::now())
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-03T02:05:06.789+00:00");
    }
}
