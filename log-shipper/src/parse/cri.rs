//! The CRI log line format: `<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <message>`.

use super::{Parsed, Stream, TimeCache};
use std::borrow::Cow;

/// Parses one CRI line (without its newline). The error names what is wrong. A line whose first field is shaped like
/// a timestamp but is not a real one (`2024-13-45T99:99:99Z`) is kept, with `time_error` set.
pub fn parse<'a>(line: &'a [u8], times: &mut TimeCache) -> Result<Parsed<'a>, &'static str> {
    let sp1 = memchr::memchr(b' ', line).ok_or("cri: missing fields")?;
    let time = &line[..sp1];
    if !looks_like_rfc3339(time) {
        return Err("cri: bad timestamp");
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or("cri: missing fields")?;
    let stream = match &rest[..sp2] {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err("cri: unknown stream"),
    };
    let rest = &rest[sp2 + 1..];
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(sp3) => (&rest[..sp3], &rest[sp3 + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let first_tag = tags.split(|&b| b == b':').next().unwrap_or_default();
    let partial = match first_tag {
        b"P" => true,
        b"F" => false,
        _ => return Err("cri: unknown tag"),
    };
    // The timestamp was checked to be ASCII.
    let time = std::str::from_utf8(time).map_err(|_| "cri: bad timestamp")?;
    let (time, time_error) = match times.check(time) {
        Some(t) => (t, None),
        None => (
            Cow::Borrowed(""),
            Some("cri: invalid timestamp (read time used)"),
        ),
    };
    Ok(Parsed {
        time,
        time_error,
        stream,
        message: Cow::Borrowed(message),
        partial,
    })
}

/// A cheap shape check: `YYYY-MM-DDTHH:MM:SS` followed by fraction and zone.
fn looks_like_rfc3339(t: &[u8]) -> bool {
    t.len() >= 20
        && t[..4].iter().all(u8::is_ascii_digit)
        && t[4] == b'-'
        && t[7] == b'-'
        && (t[10] == b'T' || t[10] == b't')
        && t[13] == b':'
        && t[16] == b':'
        && t.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with a fresh time cache.
    fn parse(line: &[u8]) -> Result<Parsed<'_>, &'static str> {
        super::parse(line, &mut TimeCache::default())
    }

    #[test]
    fn parses_the_documented_example() {
        let p = parse(b"2016-10-06T00:17:09.669794202Z stdout F message").unwrap();
        assert_eq!(p.time, "2016-10-06T00:17:09.669794202Z");
        assert_eq!(p.stream, Stream::Stdout);
        assert_eq!(&*p.message, b"message");
        assert!(!p.partial);
    }

    #[test]
    fn joined_tags_offsets_and_empty_messages() {
        let p = parse(b"2016-10-06T00:17:09.669794202+00:00 stderr P:x part ").unwrap();
        assert!(p.partial);
        assert_eq!(p.stream, Stream::Stderr);
        assert_eq!(&*p.message, b"part ");
        let p = parse(b"2016-10-06T00:17:09.669794202Z stdout F").unwrap();
        assert_eq!(&*p.message, b"");
    }

    #[test]
    fn an_impossible_timestamp_is_flagged_and_the_line_kept() {
        for t in [
            "2024-13-45T99:99:99Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00.1234567891Z",
            "2024-01-01T00:00:00+19:00",
            "2024-01-01T00:00:00Q0000",
        ] {
            let line = format!("{t} stderr F kept");
            let p = parse(line.as_bytes()).unwrap();
            assert_eq!(p.time, "", "{t}");
            assert_eq!(
                p.time_error,
                Some("cri: invalid timestamp (read time used)")
            );
            assert_eq!(p.stream, Stream::Stderr);
            assert_eq!(&*p.message, b"kept");
        }
        let p = parse(b"2016-10-06t00:17:09.669794202z stdout F x").unwrap();
        assert_eq!(p.time, "2016-10-06T00:17:09.669794202Z");
        assert_eq!(p.time_error, None);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse(b"garbage").unwrap_err(), "cri: missing fields");
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdin F x").unwrap_err(),
            "cri: unknown stream"
        );
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdout X x").unwrap_err(),
            "cri: unknown tag"
        );
        assert_eq!(
            parse(b"yesterday stdout F x").unwrap_err(),
            "cri: bad timestamp"
        );
    }
}
