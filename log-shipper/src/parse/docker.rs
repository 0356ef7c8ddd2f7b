//! Docker's json-file log line: `{"log":"...\n","stream":"stdout","time":"..."}`; no trailing `\n` means partial.

use super::{Parsed, Stream, TimeCache};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
}

/// Parses one json-file line (without its newline). The error names what is wrong.
pub fn parse<'a>(line: &'a [u8], times: &mut TimeCache) -> Result<Parsed<'a>, &'static str> {
    let l: Line<'_> = serde_json::from_slice(line).map_err(|_| "docker: invalid json")?;
    let log = l.log.ok_or("docker: missing \"log\"")?;
    let stream = match l.stream.as_deref() {
        Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        _ => return Err("docker: unknown stream"),
    };
    // Like Fluent Bit, a record whose time cannot be read keeps its fields and takes the read time; it is marked.
    let (time, time_error) = match l.time {
        None => (
            Cow::Borrowed(""),
            Some("docker: missing \"time\" (read time used)"),
        ),
        Some(t) => {
            // Some(None): usable as written; Some(Some(s)): usable once put in the canonical form `s`.
            let checked = times.check(&t).map(|c| match c {
                Cow::Owned(fixed) => Some(fixed),
                Cow::Borrowed(_) => None,
            });
            match checked {
                Some(None) => (t, None),
                Some(Some(fixed)) => (Cow::Owned(fixed), None),
                None => (
                    Cow::Borrowed(""),
                    Some("docker: invalid \"time\" (read time used)"),
                ),
            }
        }
    };
    let (message, partial) = match log {
        Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(m) => (Cow::Borrowed(m.as_bytes()), false),
            None => (Cow::Borrowed(s.as_bytes()), true),
        },
        Cow::Owned(mut s) => {
            let partial = !s.ends_with('\n');
            if !partial {
                s.pop();
            }
            (Cow::Owned(s.into_bytes()), partial)
        }
    };
    Ok(Parsed {
        time,
        time_error,
        stream,
        message,
        partial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with a fresh time cache.
    fn parse(line: &[u8]) -> Result<Parsed<'_>, &'static str> {
        super::parse(line, &mut TimeCache::default())
    }

    #[test]
    fn parses_full_and_partial() {
        let p = parse(
            br#"{"log":"content\n","stream":"stdout","time":"2016-10-20T18:39:20.57606443Z"}"#,
        )
        .unwrap();
        assert_eq!(&*p.message, b"content");
        assert!(!p.partial);
        assert_eq!(p.time, "2016-10-20T18:39:20.57606443Z");
        let p = parse(br#"{"log":"cont\u00e9","stream":"stderr","time":"2016-10-20T18:39:20Z"}"#)
            .unwrap();
        assert!(p.partial);
        assert_eq!(&*p.message, "cont\u{e9}".as_bytes());
        assert_eq!(p.stream, Stream::Stderr);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse(b"{\"log\":").unwrap_err(), "docker: invalid json");
        assert_eq!(
            parse(br#"{"stream":"stdout","time":"x"}"#).unwrap_err(),
            "docker: missing \"log\""
        );
        assert_eq!(
            parse(br#"{"log":"x","stream":"tty","time":"x"}"#).unwrap_err(),
            "docker: unknown stream"
        );
    }

    #[test]
    fn garbage_or_missing_time_is_flagged_and_the_record_kept() {
        let p = parse(br#"{"log":"x\n","stream":"stdout","time":"garbage"}"#).unwrap();
        assert_eq!(
            (p.time.as_ref(), p.time_error),
            ("", Some("docker: invalid \"time\" (read time used)"))
        );
        assert_eq!(&*p.message, b"x");
        let p = parse(br#"{"log":"x\n","stream":"stdout","time":"2024-13-45T99:99:99Z"}"#).unwrap();
        assert_eq!(
            p.time_error,
            Some("docker: invalid \"time\" (read time used)")
        );
        let p = parse(br#"{"log":"x\n","stream":"stdout"}"#).unwrap();
        assert_eq!(
            p.time_error,
            Some("docker: missing \"time\" (read time used)")
        );
        let p = parse(br#"{"log":"x\n","stream":"stdout","time":"2016-10-20T18:39:20.5+02:00"}"#)
            .unwrap();
        assert_eq!(
            (p.time.as_ref(), p.time_error),
            ("2016-10-20T18:39:20.5+02:00", None)
        );
    }
}
