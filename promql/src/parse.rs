//! Parsing PromQL with the `promql-parser` crate: errors located as Prometheus locates them
//! (`line:column: parse error: …`), and the formatted query for `/api/v1/format_query`.

use promql_parser::parser::{self, Expr};

use crate::Error;

/// A parsed query, to evaluate many times (alerting rules) or to inspect.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) expr: Expr,
}

impl Query {
    /// Parses `text`; a syntax error names its position (`1:5: parse error: …`).
    pub fn parse(text: &str) -> Result<Query, Error> {
        match parser::parse(text) {
            Ok(expr) => {
                check(&expr)?;
                Ok(Query { expr })
            }
            Err(msg) => Err(Error::Parse(locate(text, &msg))),
        }
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
        assert!(e.contains("parse error") && e.contains("range vector"), "{e}");
        let e = err("abs(up, up)");
        assert!(e.contains("parse error"), "{e}");
        let e = err("{}");
        assert!(e.contains("at least one non-empty matcher"), "{e}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_query("sum(rate(x{a=\"b\"}[5m]))by(c)").unwrap(), "sum by (c) (rate(x{a=\"b\"}[5m]))");
    }
}
