//! Parsing PromQL with the `promql-parser` crate: errors located as Prometheus locates them
//! (`line:column: parse error: …`), and the formatted query for `/api/v1/format_query`.

use promql_parser::parser::{self, Expr};

use crate::Error;

/// A parsed query, to evaluate many times (alerting rules) or to inspect.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) expr: Expr,
    /// String literals whose escapes make invalid UTF-8 in Prometheus (e.g. `"\xff"`), as the
    /// parser decoded them: they are no valid label names.
    pub(crate) invalid_utf8: Vec<String>,
}

impl Query {
    /// Parses `text`; a syntax error names its position (`1:5: parse error: …`).
    pub fn parse(text: &str) -> Result<Query, Error> {
        let expr = match parser::parse(text) {
            Ok(expr) => expr,
            Err(msg) => {
                // promql-parser lacks duration arithmetic (`[5m+1m]`, `offset (2*1m)`, on by
                // default since Prometheus 3.14): compute it here and parse the result.
                let rewritten = rewrite_durations(text).ok().filter(|r| r != text);
                match rewritten.and_then(|r| parser::parse(&r).ok()) {
                    Some(expr) => expr,
                    None => return Err(Error::Parse(locate(text, &msg))),
                }
            }
        };
        check(&expr)?;
        Ok(Query { expr, invalid_utf8: invalid_utf8_literals(text) })
    }

    /// The query with its expression changed by `f` (e.g. `@` set on its selectors).
    pub fn map_expr(mut self, f: impl FnOnce(&mut Expr)) -> Result<Query, Error> {
        f(&mut self.expr);
        check(&self.expr)?;
        Ok(self)
    }

    /// The type of the query's result: `scalar`, `string`, `vector` or `matrix`.
    pub fn result_type(&self) -> &'static str {
        match self.expr.value_type() {
            parser::value::ValueType::Scalar => "scalar",
            parser::value::ValueType::String => "string",
            parser::value::ValueType::Vector => "vector",
            parser::value::ValueType::Matrix => "matrix",
        }
    }

    /// The parsed expression (promql-parser's AST).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.expr)
    }
}

/// The query reformatted as Prometheus's `/api/v1/format_query` prints it.
pub fn format_query(text: &str) -> Result<String, Error> {
    Ok(Query::parse(text)?.expr.prettify())
}

/// The string literals of `text` that Go would decode to invalid UTF-8, decoded as the parser
/// decodes them (`\xNN` and octal escapes as the character U+00NN).
fn invalid_utf8_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' && c != '\'' {
            continue;
        }
        let (mut go, mut ours) = (Vec::<u8>::new(), String::new());
        while let Some(d) = chars.next() {
            if d == c {
                break;
            }
            if d != '\\' {
                let mut buf = [0; 4];
                go.extend_from_slice(d.encode_utf8(&mut buf).as_bytes());
                ours.push(d);
                continue;
            }
            let Some(e) = chars.next() else { break };
            let byte_escape = |chars: &mut std::iter::Peekable<std::str::Chars>, radix: u32, n: usize, first: Option<char>| {
                let mut digits: String = first.into_iter().collect();
                while digits.len() < n {
                    match chars.next() {
                        Some(x) => digits.push(x),
                        None => break,
                    }
                }
                u8::from_str_radix(&digits, radix).ok()
            };
            let b = match e {
                'x' => byte_escape(&mut chars, 16, 2, None),
                '0'..='7' => byte_escape(&mut chars, 8, 3, Some(e)),
                _ => {
                    ours.push(e);
                    go.push(e as u8);
                    continue;
                }
            };
            if let Some(b) = b {
                go.push(b);
                ours.push(char::from(b));
            }
        }
        if std::str::from_utf8(&go).is_err() {
            out.push(ours);
        }
    }
    out
}

/// Replaces duration expressions inside `[…]` (range and subquery step) and after `offset`
/// by their value in milliseconds (`[26m+4m]` → `[1800000ms]`).
fn rewrite_durations(text: &str) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut braces = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // Copy a string literal whole.
                out.push(c);
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                    }
                    out.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                }
                continue;
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' if braces == 0 => {
                let end = (i + 1..chars.len()).find(|&j| chars[j] == ']').ok_or("unclosed [")?;
                let inner: String = chars[i + 1..end].iter().collect();
                let mut parts = Vec::new();
                for part in split_top_level_colon(&inner) {
                    let p = part.trim();
                    if p.is_empty() || is_plain_duration(p) {
                        parts.push(p.to_string());
                    } else {
                        let secs = DurationExpr::new(p).eval()?;
                        parts.push(format!("{}ms", (secs * 1000.0).round() as i64));
                    }
                }
                out.push('[');
                out.push_str(&parts.join(":"));
                out.push(']');
                i = end + 1;
                continue;
            }
            _ => {}
        }
        if braces == 0 && c == 'o' && starts_word(&chars, i, "offset") {
            out.push_str("offset");
            i += 6;
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let sign_len = usize::from(j < chars.len() && (chars[j] == '-' || chars[j] == '+'));
            let mut k = j + sign_len;
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if k < chars.len() && chars[k] == '(' {
                let mut depth = 0;
                let mut end = k;
                while end < chars.len() {
                    match chars[end] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    end += 1;
                }
                let e: String = chars[j..=end.min(chars.len() - 1)].iter().collect();
                let secs = DurationExpr::new(&e).eval()?;
                out.push_str(&format!(" {}ms", (secs * 1000.0).round() as i64));
                i = end + 1;
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok(out)
}

fn starts_word(chars: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    let before_ok = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let after = i + w.len();
    before_ok
        && chars.len() >= after
        && chars[i..after] == w[..]
        && (after == chars.len() || !(chars[after].is_alphanumeric() || chars[after] == '_'))
}

fn split_top_level_colon(s: &str) -> Vec<&str> {
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn is_plain_duration(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric()) && s.starts_with(|c: char| c.is_ascii_digit())
}

/// A duration expression: numbers (seconds) and durations with `+ - * / % ^` and parentheses;
/// `^` binds tighter than unary minus, as in PromQL.
struct DurationExpr {
    chars: Vec<char>,
    pos: usize,
}

impl DurationExpr {
    fn new(s: &str) -> DurationExpr {
        DurationExpr { chars: s.chars().filter(|c| !c.is_whitespace()).collect(), pos: 0 }
    }

    fn eval(mut self) -> Result<f64, String> {
        let v = self.sum()?;
        if self.pos != self.chars.len() {
            return Err(format!("unexpected {:?} in duration expression", self.chars[self.pos]));
        }
        Ok(v)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            v = if c == '+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.unary()?;
        while let Some(c @ ('*' | '/' | '%')) = self.peek() {
            self.pos += 1;
            let r = self.unary()?;
            v = match c {
                '*' => v * r,
                '/' => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some('-') => {
                self.pos += 1;
                Ok(-self.unary()?)
            }
            Some('+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.primary()?;
        if self.peek() == Some('^') {
            self.pos += 1;
            let exp = self.unary()?;
            return Ok(base.powf(exp));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<f64, String> {
        if self.peek() == Some('(') {
            self.pos += 1;
            let v = self.sum()?;
            if self.peek() != Some(')') {
                return Err("unclosed parenthesis in duration expression".into());
            }
            self.pos += 1;
            return Ok(v);
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') {
            self.pos += 1;
        }
        let tok: String = self.chars[start..self.pos].iter().collect();
        if tok.is_empty() {
            return Err("expected a number or duration".into());
        }
        if let Ok(n) = tok.parse::<f64>() {
            return Ok(n);
        }
        parse_duration_secs(&tok).ok_or_else(|| format!("bad duration {tok:?}"))
    }
}

/// `1h30m`, `8000ms`, `1.5` … in seconds.
fn parse_duration_secs(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604_800.0,
            "y" => 31_536_000.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    Some(total)
}

/// Rejects what the parser accepts but Prometheus does not evaluate.
fn check(expr: &Expr) -> Result<(), Error> {
    match expr {
        Expr::Aggregate(a) => {
            check(&a.expr)?;
            if let Some(p) = &a.param {
                check(p)?;
            }
        }
        Expr::Unary(u) => check(&u.expr)?,
        Expr::Binary(b) => {
            check(&b.lhs)?;
            check(&b.rhs)?;
        }
        Expr::Paren(p) => check(&p.expr)?,
        Expr::Subquery(s) => check(&s.expr)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                check(a)?;
            }
        }
        Expr::VectorSelector(vs) => {
            let has_non_empty = vs.name.is_some()
                || vs.matchers.matchers.iter().any(|m| !matches_empty(m))
                || (!vs.matchers.or_matchers.is_empty()
                    && vs
                        .matchers
                        .or_matchers
                        .iter()
                        .all(|alt| alt.iter().any(|m| !matches_empty(m))));
            if !has_non_empty {
                return Err(Error::Parse(format!(
                    "1:1: parse error: vector selector must contain at least one non-empty matcher"
                )));
            }
        }
        Expr::MatrixSelector(ms) => check(&Expr::VectorSelector(ms.vs.clone()))?,
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

fn matches_empty(m: &promql_parser::label::Matcher) -> bool {
    use promql_parser::label::MatchOp;
    match &m.op {
        MatchOp::Equal => m.value.is_empty(),
        MatchOp::NotEqual => !m.value.is_empty(),
        MatchOp::Re(r) | MatchOp::NotRe(r) => {
            let full = regex::Regex::new(&format!("^(?s:{})$", r.as_str()))
                .map(|re| re.is_match(""))
                .unwrap_or(false);
            if matches!(m.op, MatchOp::Re(_)) {
                full
            } else {
                !full
            }
        }
    }
}

/// Adds the position of a syntax error to the parser's message. The parser does not report
/// positions, so the error is placed after the longest prefix that still parses (or lexes).
fn locate(text: &str, msg: &str) -> String {
    let msg = msg.trim();
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .skip(1)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut good = 0;
    if text.len() <= 4096 {
        let lex_error = parser::lex::lexer(text).is_err();
        for &end in &bounds {
            let prefix = &text[..end];
            let ok = if lex_error {
                parser::lex::lexer(prefix).is_ok()
            } else {
                parser::parse(prefix).is_ok()
            };
            if ok {
                good = end;
            } else if lex_error {
                break;
            }
        }
    }
    // The error is at the first non-blank character after the good prefix.
    let rest = &text[good..];
    let at = good + (rest.len() - rest.trim_start().len());
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    format!("{line}:{col}: parse error: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        Query::parse(q).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_position() {
        let e = err("sum(rate(x[5m])) by");
        assert!(e.starts_with("1:18: parse error:"), "{e}");
        let e = err("1 +");
        assert!(e.starts_with("1:3: parse error:"), "{e}");
        let e = err("foo{a=\"b\"} $");
        assert!(e.contains("parse error"), "{e}");
        assert!(e.starts_with("1:"), "{e}");
    }

    #[test]
    fn unknown_function_and_bad_arguments() {
        let e = err("no_such_fn(up)");
        assert!(e.contains("parse error") && e.contains("no_such_fn"), "{e}");
        let e = err("rate(up)");
        assert!(e.contains("parse error") && e.contains("expected type matrix"), "{e}");
        let e = err("abs(up, up)");
        assert!(e.contains("parse error"), "{e}");
        let e = err("{}");
        assert!(e.contains("at least one non-empty matcher"), "{e}");
    }

    #[test]
    fn duration_arithmetic() {
        assert_eq!(rewrite_durations("changes(x[26m+4m])").unwrap(), "changes(x[1560000ms])".replace("1560000", "1800000"));
        assert_eq!(rewrite_durations("x[29s+1s:5s+5s]").unwrap(), "x[30000ms:10000ms]");
        assert_eq!(rewrite_durations("x offset (-2 ^ 2)").unwrap(), "x offset -4000ms");
        assert_eq!(rewrite_durations("x{a=\"[1+1]\"}[5m]").unwrap(), "x{a=\"[1+1]\"}[5m]");
        assert!(Query::parse("rate(x[1h30m % 1h])").is_ok());
        assert!(Query::parse("rate(x[1h +])").unwrap_err().to_string().contains("parse error"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_query("sum(rate(x{a=\"b\"}[5m]))by(c)").unwrap(), "sum by (c) (rate(x{a=\"b\"}[5m]))");
    }
}
