//! Label sets as Alertmanager sees them: fingerprints, matchers (`a="b"`, `=~`, `!=`, `!~`) and the
//! Go string forms group keys are built from.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// A set of labels, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// Alertmanager's fingerprint of a label set (prometheus/common `LabelSet.Fingerprint`): FNV-1a
/// 64 over the names sorted bytewise, each followed by 0xFF, its value and 0xFF.
pub fn fingerprint(labels: &Labels) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    // BTreeMap<String, _> iterates in bytewise order of the names, as Go's sort.Strings.
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}

/// The fingerprint as Alertmanager prints it (`%016x`).
pub fn fingerprint_hex(labels: &Labels) -> String {
    format!("{:016x}", fingerprint(labels))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a valid label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's `strconv.Quote` (what `%q` prints): the label values in a group key.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// prometheus/common `LabelSet.String()`: `{a="1", b="2"}`, names sorted.
pub fn labels_string(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `regexp.QuoteMeta`: the receiver name in template data (and so in webhook payloads).
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a matcher compares (ordered as Alertmanager's `MatchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regexp,
    NotRegexp,
}

impl MatchType {
    fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }
}

/// One label matcher; a missing label matches as `""`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub kind: MatchType,
    pub name: String,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; regular expressions are anchored (`^(?:re)$`) as Alertmanager's.
    pub fn new(kind: MatchType, name: &str, value: &str) -> Result<Matcher, String> {
        let re = match kind {
            MatchType::Regexp | MatchType::NotRegexp => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("error parsing regexp {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            kind,
            name: name.to_string(),
            value: value.to_string(),
            re,
        })
    }

    /// Whether the value `v` matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.kind, &self.re) {
            (MatchType::Equal, _) => v == self.value,
            (MatchType::NotEqual, _) => v != self.value,
            (MatchType::Regexp, Some(re)) => re.is_match(v),
            (MatchType::NotRegexp, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    /// Whether the label set matches (a missing label is `""`).
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    /// `name="value"` with `\`, newline and `"` escaped (Alertmanager 0.25 `Matcher.String`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('"', "\\\"");
        write!(f, "{}{}\"{}\"", self.name, self.kind.as_str(), escaped)
    }
}

/// All matchers match the label set.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

/// Sorts as Alertmanager's `Matchers` (name, value, type).
pub fn sort_matchers(ms: &mut [Matcher]) {
    ms.sort_by(|a, b| {
        (a.name.as_str(), a.value.as_str(), a.kind).cmp(&(b.name.as_str(), b.value.as_str(), b.kind))
    });
}

/// `{a="b",c=~"d"}`: `Matchers.String()`.
pub fn matchers_string(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

/// Parses one matcher: `name="value"`, `name=~re`, `name!=value`, `name!~"re"` (quotes optional).
pub fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let s = s.trim();
    let name_end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let name = &s[..name_end];
    let rest = s[name_end..].trim_start();
    let (kind, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchType::Regexp, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchType::NotRegexp, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchType::Equal, r)
    } else {
        return Err(format!("bad matcher format: {s}"));
    };
    if name.is_empty() {
        return Err(format!("bad matcher format: {s}"));
    }
    let raw_all = rest.trim();
    let (raw, mut expect_quote) = match raw_all.strip_prefix('"') {
        Some(r) => (r, true),
        None => (raw_all, false),
    };
    let mut value = String::new();
    let mut escaped = false;
    let chars: Vec<char> = raw.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                _ => {
                    value.push('\\');
                    value.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' if i < chars.len() - 1 => escaped = true,
            '\\' => value.push('\\'),
            '"' => {
                if !expect_quote || i < chars.len() - 1 {
                    return Err(format!(
                        "matcher value contains unescaped double quote: {raw_all}"
                    ));
                }
                expect_quote = false;
            }
            c => value.push(c),
        }
    }
    if expect_quote {
        return Err(format!(
            "matcher value contains unescaped double quote: {raw_all}"
        ));
    }
    Matcher::new(kind, name, &value)
}

/// Parses `{a="b", c=~"d"}` or `a="b",c=~"d"` (Alertmanager's `ParseMatchers`).
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, String> {
    let s = s.trim();
    let s = s.strip_prefix('{').unwrap_or(s);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens = Vec::new();
    let (mut inside_quotes, mut escaped) = (false, false);
    let mut token = String::new();
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => {}
            '"' => {
                if !escaped {
                    inside_quotes = !inside_quotes;
                } else {
                    escaped = false;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    if !token.trim().is_empty() {
        tokens.push(token);
    }
    tokens.iter().map(|t| parse_matcher(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprints_match_prometheus_common() {
        assert_eq!(
            fingerprint(&ls(&[("name", "garland, briggs"), ("fear", "love is not enough")])),
            5799056148416392346
        );
        assert_eq!(
            fingerprint_hex(&ls(&[
                ("alertname", "HighCPU"),
                ("instance", "node-1"),
                ("severity", "page")
            ])),
            "56542b3342454bfb"
        );
        assert_eq!(fingerprint_hex(&Labels::new()), "cbf29ce484222325");
    }

    #[test]
    fn matchers_parse_like_alertmanager() {
        let ms = parse_matchers(r#"{alertname="Foo", job=~"a|b" , x!="y,z"}"#).unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[1].kind, MatchType::Regexp);
        assert!(ms[1].matches("a") && !ms[1].matches("ab"));
        assert_eq!(ms[2].value, "y,z");
        assert_eq!(parse_matcher("a=b").unwrap().value, "b");
        assert_eq!(parse_matcher(r#"a="q\"uote""#).unwrap().value, "q\"uote");
        assert!(parse_matcher("=b").is_err());
        assert!(parse_matcher(r#"a="b"c""#).is_err());
        assert!(parse_matcher("a=~(").unwrap_err().contains("regexp"));
        let m = parse_matcher(r#"severity="pa\"ge""#).unwrap();
        assert_eq!(m.to_string(), r#"severity="pa\"ge""#);
    }

    #[test]
    fn label_set_string_is_go_quoted() {
        assert_eq!(
            labels_string(&ls(&[("b", "x\"y"), ("a", "1\n")])),
            r#"{a="1\n", b="x\"y"}"#
        );
        assert_eq!(labels_string(&Labels::new()), "{}");
        assert_eq!(quote_meta("team.x-1"), r"team\.x-1");
    }
}
