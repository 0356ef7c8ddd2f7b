//! Parsers for the kernel's cgroup file formats (single values, flat keyed, nested keyed, PSI).

use crate::summary::{PsiData, PsiStats};

/// A single unsigned number (`"1234\n"`).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim_ascii().parse().ok()
}

/// A limit: a number, or `max` (v2) meaning unlimited. Values ≥ 2^62 (v1's "unlimited"
/// page-rounded i64::MAX) are unlimited too, as cAdvisor and the kubelet treat them.
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t == "max" || t == "-1" {
        return Ok(None);
    }
    let v: u64 = t
        .parse()
        .map_err(|_| format!("expected a number or \"max\", got {t:?}"))?;
    Ok(if v >= 1 << 62 { None } else { Some(v) })
}

/// Iterates `key value` lines (memory.stat, cpu.stat, memory.events, cpuacct.stat).
/// A line that is not `key <u64>` is an error naming the line; blank lines are skipped.
pub fn flat_keyed(text: &str) -> FlatKeyed<'_> {
    FlatKeyed { rest: text }
}

/// The iterator of `flat_keyed`: lines as the kernel writes them (`key digits\n`) are parsed in
/// one pass over their bytes; any other line goes through the general (slower) parser, so
/// both give the same answers.
pub struct FlatKeyed<'a> {
    rest: &'a str,
}

impl<'a> Iterator for FlatKeyed<'a> {
    type Item = Result<(&'a str, u64), String>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let b = self.rest.as_bytes();
            // The kernel's shape: a key of visible bytes, one space, up to 19 digits (no u64
            // overflow possible), a newline or the end. Anything else takes the general parser.
            let k = key_len(b);
            if k > 0 && b.get(k) == Some(&b' ') {
                let start = k + 1;
                let mut j = start;
                let mut v = 0u64;
                while j < b.len() && j - start < 19 && b[j].is_ascii_digit() {
                    v = v * 10 + u64::from(b[j] - b'0');
                    j += 1;
                }
                if j > start && (j == b.len() || b[j] == b'\n') {
                    // `k` and `j` sit on ASCII bytes, so both are char boundaries.
                    let key = &self.rest[..k];
                    self.rest = self.rest.get(j + 1..).unwrap_or("");
                    return Some(Ok((key, v)));
                }
            }
            let (line, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
            self.rest = rest;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if !line.trim().is_empty() {
                return Some(parse_keyed_line(line));
            }
        }
        None
    }
}

/// The length of the key at the start of `b`: the index of its first byte at or below b' '
/// (`b.len()` if there is none), found eight bytes at a time. A key is 4–30 bytes, and a loop
/// over single bytes ends at a different count each line, which the CPU cannot predict: this
/// was 40 % of memory.stat's parse time.
fn key_len(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // The high bit of each byte below 0x21 (a byte of 0x80 or more is never flagged).
        // A borrow can flag a byte after a true one, never before it: the lowest flag is exact.
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        if below != 0 {
            return i + (below.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..].iter().take_while(|&&c| c > b' ').count()
}

/// One `key value` line, whatever its spacing.
fn parse_keyed_line(line: &str) -> Result<(&str, u64), String> {
    let mut it = line.split_ascii_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(k), Some(v), None) => v
            .parse::<u64>()
            .map(|v| (k, v))
            .map_err(|_| format!("bad value in line {line:?}")),
        _ => Err(format!("expected \"key value\", got line {line:?}")),
    }
}

/// `v` in units of `by` nanoseconds; a value that does not fit u64 nanoseconds (no kernel writes
/// one) is an error naming the key instead of a silent wrap or a debug-build panic.
pub fn to_ns(key: &str, v: u64, by: u64) -> Result<u64, String> {
    v.checked_mul(by)
        .ok_or_else(|| format!("{key} {v} overflows u64 nanoseconds"))
}

/// A PSI file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=123` and the same for `full`.
/// A file without a `full` line (cpu on older kernels) gets zeros for `full`.
pub fn parse_psi(text: &str) -> Result<PsiStats, String> {
    match psi_fast(text.as_bytes()) {
        Some(p) => Ok(p),
        None => psi_lines(text),
    }
}

/// A PSI file line by line, whatever its spacing and blank lines (see `psi_line`).
fn psi_lines(text: &str) -> Result<PsiStats, String> {
    let mut out = PsiStats::default();
    let mut seen_some = false;
    for line in text.split('\n') {
        if line.trim().is_empty() {
            continue;
        }
        let (full, data) = psi_line(line)?;
        if full {
            out.full = data;
        } else {
            out.some = data;
            seen_some = true;
        }
    }
    if !seen_some {
        return Err("no \"some\" line".to_string());
    }
    Ok(out)
}

/// A PSI file exactly as the kernel writes it: `some avg10=… avg60=… avg300=… total=…` lines
/// (then `full …`), single spaces, each ending with a newline, averages as `<int>.<two
/// digits>`. It is read in one pass over its bytes, without the float parser. Any other shape
/// gives `None`, and `psi_line` then reads it or rejects it with the reason.
fn psi_fast(mut b: &[u8]) -> Option<PsiStats> {
    let mut out = PsiStats::default();
    let mut seen_some = false;
    while !b.is_empty() {
        let (full, rest) = match b.strip_prefix(b"some avg10=") {
            Some(r) => (false, r),
            None => (true, b.strip_prefix(b"full avg10=")?),
        };
        let (avg10, rest) = avg_prefix(rest)?;
        let (avg60, rest) = avg_prefix(rest.strip_prefix(b" avg60=")?)?;
        let (avg300, rest) = avg_prefix(rest.strip_prefix(b" avg300=")?)?;
        let rest = rest.strip_prefix(b" total=")?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        // Up to 19 digits cannot overflow a u64.
        if digits == 0 || digits > 19 || rest.get(digits) != Some(&b'\n') {
            return None;
        }
        let total = rest[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        b = &rest[digits + 1..];
        let data = PsiData {
            total,
            avg10,
            avg60,
            avg300,
        };
        if full {
            out.full = data;
        } else {
            out.some = data;
            seen_some = true;
        }
    }
    seen_some.then_some(out)
}

/// A PSI average at the start of `b` as the kernel writes it (1–9 digits, a dot, two digits),
/// and the bytes after it.
fn avg_prefix(b: &[u8]) -> Option<(f64, &[u8])> {
    let int = b.iter().take_while(|c| c.is_ascii_digit()).count();
    match b.get(int..int + 3)? {
        [b'.', f1, f2] if (1..=9).contains(&int) && f1.is_ascii_digit() && f2.is_ascii_digit() => {
            let n = b[..int]
                .iter()
                .chain([f1, f2])
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Some((n as f64 / 100.0, &b[int + 3..]))
        }
        _ => None,
    }
}

/// One PSI line, whatever its spacing; an error names what is wrong in it.
fn psi_line(line: &str) -> Result<(bool, PsiData), String> {
    let mut it = line.split_ascii_whitespace();
    let full = match it.next().unwrap_or_default() {
        "some" => false,
        "full" => true,
        _ => return Err(format!("expected \"some\" or \"full\", got line {line:?}")),
    };
    let mut data = PsiData::default();
    for field in it {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in line {line:?}"))?;
        let bad = || format!("bad {k} in line {line:?}");
        match k {
            "avg10" => data.avg10 = parse_avg(v).ok_or_else(bad)?,
            "avg60" => data.avg60 = parse_avg(v).ok_or_else(bad)?,
            "avg300" => data.avg300 = parse_avg(v).ok_or_else(bad)?,
            "total" => data.total = v.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok((full, data))
}

/// A PSI average: the kernel writes `<int>.<two digits>` (read exactly, without the float
/// parser); any other decimal form goes through `f64::from_str`.
fn parse_avg(v: &str) -> Option<f64> {
    match avg_prefix(v.as_bytes()) {
        Some((x, [])) => Some(x),
        _ => v.parse().ok().filter(|x: &f64| x.is_finite()),
    }
}

/// `MAJ:MIN` of a block device.
pub fn parse_dev(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(parse_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(parse_limit("-1"), Ok(None));
        assert_eq!(parse_limit("67108864\n"), Ok(Some(67108864)));
        assert!(parse_limit("lots").unwrap_err().contains("lots"));
    }

    #[test]
    fn key_len_finds_the_first_byte_at_or_below_space() {
        let naive = |b: &[u8]| b.iter().take_while(|&&c| c > b' ').count();
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b" ".to_vec(),
            b"anon 4096\n".to_vec(),
            b"workingset_refault_anon 0\n".to_vec(),
            b"nospaceatallinthesebytes".to_vec(),
            "clé\u{e9}\u{80}x 1".as_bytes().to_vec(),
            b"a\tb c".to_vec(),
            b"\x00\x01\x21\x20".to_vec(),
        ];
        // Every position of a separator (or none) in keys of 0–20 bytes, with each kind of
        // separator and a high byte before it, so a word boundary falls everywhere.
        for len in 0..20 {
            for sep in [b' ', b'\n', b'\t', 0u8, 0x20] {
                let mut v = vec![b'k'; len];
                v.push(sep);
                v.extend_from_slice(b"\xff12 x");
                cases.push(v.clone());
                if len > 0 {
                    v[len - 1] = 0x80;
                    cases.push(v);
                }
            }
        }
        for c in &cases {
            assert_eq!(key_len(c), naive(c), "{c:?}");
        }
    }

    #[test]
    fn flat_keyed_reports_the_bad_line() {
        let ok: Vec<_> = flat_keyed("a 1\nb 2\n").collect::<Result<_, _>>().unwrap();
        assert_eq!(ok, vec![("a", 1), ("b", 2)]);
        let err = flat_keyed("a 1\nb x\n")
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(err.contains("b x"), "{err}");
    }

    /// The byte-level fast path and the general parser agree on every kind of line.
    #[test]
    fn flat_keyed_fast_path_agrees_with_the_general_parser() {
        let general = |text: &str| -> Vec<Result<(String, u64), String>> {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| parse_keyed_line(l).map(|(k, v)| (k.to_string(), v)))
                .collect()
        };
        for text in [
            "anon 1\nfile 22\n",
            "anon 1\nfile 22",
            "  lead 5\n\n\ttab\t6\r\nx  7 \n",
            "a 01\nb +3\nc 18446744073709551615\nd 18446744073709551616\n",
            "a 1 2\nb\nc x\n 9\n\u{e9}t\u{e9} 4\n",
            "",
            "\n\n",
            "k 12a\nk2 \n",
            "e 9999999999999999999\nf 10000000000000000000\ng 99999999999999999999\n",
            "\u{1}x 5\ny\u{1} 6\n",
        ] {
            let fast: Vec<_> = flat_keyed(text)
                .map(|r| r.map(|(k, v)| (k.to_string(), v)))
                .collect();
            assert_eq!(fast, general(text), "{text:?}");
        }
    }

    #[test]
    fn to_ns_rejects_overflow() {
        assert_eq!(to_ns("usage_usec", 5, 1000), Ok(5000));
        let e = to_ns("usage_usec", u64::MAX / 10, 1000).unwrap_err();
        assert!(e.contains("usage_usec") && e.contains("overflows"), "{e}");
    }

    #[test]
    fn psi_averages_read_exactly_as_the_float_parser_reads_them() {
        for i in [0u64, 1, 9, 10, 99, 100, 12345] {
            for f in 0..100u64 {
                let v = format!("{i}.{f:02}");
                assert_eq!(parse_avg(&v), v.parse::<f64>().ok(), "{v}");
            }
        }
        assert_eq!(parse_avg("1.5"), Some(1.5));
        assert_eq!(parse_avg("1e2"), Some(100.0));
        for bad in ["", ".", "x.00", "1.0x", "nan", "inf", "-"] {
            assert_eq!(parse_avg(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn psi_some_and_full() {
        let p = parse_psi("some avg10=1.50 avg60=0.00 avg300=0.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=45\n").unwrap();
        assert_eq!(p.some.total, 123);
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.full.total, 45);
        assert!(parse_psi("bogus avg10=1").is_err());
        assert!(parse_psi("").is_err());
    }

    /// Whole files: the byte-level fast path and the line parser agree, and shapes the fast
    /// path does not take still parse (or fail) through the line parser.
    #[test]
    fn psi_fast_path_agrees_with_the_general_parser() {
        let general = |text: &str| psi_lines(text).ok();
        let fast_taken = [
            "some avg10=1.50 avg60=0.25 avg300=10.07 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "some avg10=99.99 avg60=100.00 avg300=0.01 total=9999999999999999999\n",
            "some avg10=123456789.99 avg60=0.00 avg300=0.00 total=1\n",
            "full avg10=1.50 avg60=0.00 avg300=0.00 total=1\nsome avg10=2.00 avg60=0.00 avg300=0.00 total=2\n",
        ];
        for text in fast_taken {
            let fast = psi_fast(text.as_bytes()).expect(text);
            assert_eq!(Some(fast.clone()), general(text), "{text}");
            assert_eq!(parse_psi(text), Ok(fast));
        }
        // Other shapes: not the fast path's, same answer as the line parser.
        for text in [
            "some avg10=1.5 avg60=0 avg300=2e1 total=7\n",
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=1 extra=3\n",
            "some  avg10=1.50   avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=1",
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=1\r\n",
            "\nsome avg10=1.50 avg60=0.00 avg300=0.00 total=1\n\n",
            "some avg10=1234567890.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=18446744073709551615\n",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=99999999999999999999\n",
        ] {
            assert_eq!(psi_fast(text.as_bytes()), None, "{text:?}");
            assert_eq!(parse_psi(text).ok(), general(text), "{text:?}");
        }
        for bad in [
            "some avg10=x avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=-1\n",
            "some avg10\n",
            "some avg10=1.00 total=18446744073709551616\n",
            "half avg10=1.00\n",
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        ] {
            assert_eq!(psi_fast(bad.as_bytes()), None, "{bad}");
            assert!(parse_psi(bad).is_err(), "{bad}");
        }
    }
}
