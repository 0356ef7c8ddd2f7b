//! Rule matching over the last `bufferSize` log lines with node-problem-detector's semantics,
//! plus a provably equivalent fast path for patterns that cannot span lines.
//!
//! node-problem-detector compiles every rule as `pattern + "\z"` and runs it over the
//! ring buffer of the last `bufferSize` messages joined by "\n" (empty slots included as
//! empty strings); the matched logs are the lines from the one holding the match start to the
//! newest. When the compiled pattern is anchored at the end (its top level is a concatenation
//! ending in `\z`), can never match a "\n" and never asserts the start of the text (`^`/`\A`
//! without `m`), any match lies inside the newest message, and every assertion sees the same
//! context there as in the joined buffer (the byte before the newest message is "\n" in the
//! buffer and the text start when alone: both non-word, both a line start). So matching the
//! newest message alone gives the same answer and the matched logs are exactly the newest one.
//! For those rules a literal prefilter comes first: from each pattern, regex-syntax extracts
//! the finite set of literals every match must begin with (or, failing that, end with); one
//! Aho-Corasick pass over the newest line finds which rules can possibly match, and only those
//! run their regex. A rule without such a literal set (or with an empty literal) always runs.
//! The others use the exact joined-buffer algorithm. Tests compare both paths line by line.

use aho_corasick::{AhoCorasick, MatchKind};
use chrono::{DateTime, Utc};
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// One log line as the watchers deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When the line was logged.
    pub timestamp: DateTime<Utc>,
    /// The message (without the syslog / kmsg prefix).
    pub message: String,
}

/// Rewrites a Go (RE2) pattern into the `regex` crate's dialect with Go's meaning:
/// `\d \w \s` (and negations) and `\b \B` are ASCII-only in Go; `\Q...\E` quotes literally.
pub fn translate_go_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Position inside a class right after '[' or '[^' (where ']' is literal).
    let mut class_start = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            let Some(n) = chars.next() else {
                out.push('\\');
                break;
            };
            let (inner, outer): (&str, &str) = match n {
                'd' => ("0-9", "[0-9]"),
                'D' => ("[^0-9]", "[^0-9]"),
                'w' => ("0-9A-Za-z_", "[0-9A-Za-z_]"),
                'W' => ("[^0-9A-Za-z_]", "[^0-9A-Za-z_]"),
                's' => ("\\t\\n\\f\\r ", "[\\t\\n\\f\\r ]"),
                'S' => ("[^\\t\\n\\f\\r ]", "[^\\t\\n\\f\\r ]"),
                'b' if !in_class => ("", "(?-u:\\b)"),
                'B' if !in_class => ("", "(?-u:\\B)"),
                'Q' if !in_class => {
                    let mut lit = String::new();
                    loop {
                        match chars.next() {
                            None => break,
                            Some('\\') if chars.peek() == Some(&'E') => {
                                chars.next();
                                break;
                            }
                            Some(ch) => lit.push(ch),
                        }
                    }
                    out.push_str("(?:");
                    out.push_str(&regex::escape(&lit));
                    out.push(')');
                    continue;
                }
                other => {
                    out.push('\\');
                    out.push(other);
                    class_start = false;
                    continue;
                }
            };
            out.push_str(if in_class { inner } else { outer });
            class_start = false;
            continue;
        }
        if in_class {
            if c == '[' && chars.peek() == Some(&':') {
                // POSIX class [:alpha:]: copy through the closing ":]".
                out.push(c);
                for ch in chars.by_ref() {
                    out.push(ch);
                    if ch == ']' {
                        break;
                    }
                }
                class_start = false;
                continue;
            }
            if c == ']' && !class_start {
                in_class = false;
            }
            if c == '^' && class_start && out.ends_with('[') {
                out.push(c);
                continue;
            }
            class_start = false;
            out.push(c);
            continue;
        }
        if c == '[' {
            in_class = true;
            class_start = true;
        }
        out.push(c);
    }
    out
}

/// Compiles a rule pattern the way node-problem-detector does: `pattern + \z`.
pub fn compile_rule_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    // The bare pattern must be valid on its own (node-problem-detector validates it alone).
    let translated = translate_go_regex(pattern);
    Regex::new(&translated)?;
    Regex::new(&format!("{translated}\\z"))
}

/// Whether `hir` can match a "\n" or asserts the start of the text.
fn may_cross_lines(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty => false,
        HirKind::Literal(lit) => lit.0.contains(&b'\n'),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        HirKind::Class(Class::Bytes(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
        HirKind::Look(look) => matches!(look, Look::Start),
        HirKind::Repetition(rep) => may_cross_lines(&rep.sub),
        HirKind::Capture(cap) => may_cross_lines(&cap.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().any(may_cross_lines),
    }
}

/// Whether the compiled `pattern\z` only ever matches inside the newest message (see module doc).
pub fn is_single_line(pattern: &str) -> bool {
    let translated = translate_go_regex(pattern);
    let Ok(hir) = regex_syntax::Parser::new().parse(&format!("{translated}\\z")) else {
        return false;
    };
    match hir.kind() {
        HirKind::Concat(subs) => {
            let Some((last, prefix)) = subs.split_last() else {
                return false;
            };
            matches!(last.kind(), HirKind::Look(Look::End)) && !prefix.iter().any(may_cross_lines)
        }
        // `\z` alone (empty pattern): matches at the end of anything.
        HirKind::Look(Look::End) => true,
        _ => false,
    }
}

/// Literals one of which every match of `pattern` must begin with (or end with, when the
/// beginning has no finite set); `None` when there is no such finite, non-empty set.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::Parser::new()
        .parse(&translate_go_regex(pattern))
        .ok()?;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut ex = Extractor::new();
        ex.kind(kind);
        let seq = ex.extract(&hir);
        if let Some(lits) = seq.literals() {
            if !lits.is_empty() && lits.iter().all(|l| !l.as_bytes().is_empty()) {
                return Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect());
            }
        }
    }
    None
}

/// One Aho-Corasick automaton over every rule's required literals.
struct Prefilter {
    /// Leftmost-first automaton over the same literals: only asks "any literal here?", which
    /// lets aho-corasick use its SIMD (Teddy) searcher.
    any: Option<AhoCorasick>,
    /// Standard automaton for overlapping iteration: which literals occur.
    ac: Option<AhoCorasick>,
    /// For each automaton pattern, the rules (indices into `single`) that require it.
    rules_of: Vec<Vec<usize>>,
    /// Rules without required literals: always candidates.
    always: Vec<usize>,
}

impl Prefilter {
    fn new(lits: &[Option<Vec<Vec<u8>>>]) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut rules_of: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (rule, l) in lits.iter().enumerate() {
            match l {
                None => always.push(rule),
                Some(l) => {
                    for lit in l {
                        match patterns.iter().position(|p| p == lit) {
                            Some(i) => {
                                if !rules_of[i].contains(&rule) {
                                    rules_of[i].push(rule)
                                }
                            }
                            None => {
                                patterns.push(lit.clone());
                                rules_of.push(vec![rule]);
                            }
                        }
                    }
                }
            }
        }
        let build = |kind: MatchKind| {
            (!patterns.is_empty()).then(|| {
                AhoCorasick::builder()
                    .match_kind(kind)
                    .build(&patterns)
                    .expect("literal automaton")
            })
        };
        Prefilter {
            any: build(MatchKind::LeftmostFirst),
            ac: build(MatchKind::Standard),
            rules_of,
            always,
        }
    }

    /// Marks the rules that can match `line`; false when none can.
    fn candidates(&self, line: &str, out: &mut [bool]) -> bool {
        let mut any = false;
        for &r in &self.always {
            out[r] = true;
            any = true;
        }
        if let (Some(any_lit), Some(ac)) = (&self.any, &self.ac) {
            // The common case is a line with none of the literals: one accelerated scan.
            if !any_lit.is_match(line) {
                return any;
            }
            for m in ac.find_overlapping_iter(line) {
                for &r in &self.rules_of[m.pattern().as_usize()] {
                    out[r] = true;
                    any = true;
                }
            }
        }
        any
    }
}

/// A match: which rule, and the matched logs (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch {
    /// Index of the rule in the config.
    pub rule: usize,
    /// The matched lines, oldest first; the last one is the newest line.
    pub lines: Vec<LogLine>,
}

/// The ring buffer of recent lines and the compiled rules of one monitor.
pub struct Matcher {
    /// Every rule's compiled `pattern\z`.
    full: Vec<Regex>,
    /// Rules matched on the newest line alone, and their literal prefilter.
    single: Vec<usize>,
    prefilter: Prefilter,
    /// Scratch: which rules the prefilter let through for the current line.
    candidates: Vec<bool>,
    /// Rules matched on the joined buffer.
    multi: Vec<usize>,
    /// node-problem-detector's ring: `max` slots, `current` = next write position.
    slots: Vec<Option<LogLine>>,
    current: usize,
    joined: String,
}

impl Matcher {
    /// Compiles the patterns (already validated) for a buffer of `buffer_lines` lines.
    pub fn new(patterns: &[&str], buffer_lines: usize) -> Result<Self, regex::Error> {
        let buffer_lines = buffer_lines.max(1);
        let mut full = Vec::with_capacity(patterns.len());
        let mut single = Vec::new();
        let mut multi = Vec::new();
        let mut single_lits = Vec::new();
        for (idx, pattern) in patterns.iter().enumerate() {
            let compiled = compile_rule_pattern(pattern)?;
            if is_single_line(pattern) {
                single.push(idx);
                single_lits.push(required_literals(pattern));
            } else {
                multi.push(idx);
            }
            full.push(compiled);
        }
        let prefilter = Prefilter::new(&single_lits);
        Ok(Matcher {
            full,
            candidates: vec![false; single.len()],
            single,
            prefilter,
            multi,
            slots: vec![None; buffer_lines],
            current: 0,
            joined: String::new(),
        })
    }

    /// Number of rules that need the joined buffer (0 for all shipped configs).
    pub fn multi_line_rules(&self) -> usize {
        self.multi.len()
    }

    /// Pushes a line and returns the rules that match, in rule order.
    pub fn push(&mut self, line: LogLine) -> Vec<RuleMatch> {
        let max = self.slots.len();
        let slot = self.current % max;
        self.slots[slot] = Some(line);
        self.current += 1;
        let newest = self.slots[slot].as_ref().expect("just written");
        let mut out = Vec::new();
        if !self.single.is_empty()
            && self
                .prefilter
                .candidates(&newest.message, &mut self.candidates)
        {
            for (i, cand) in self.candidates.iter_mut().enumerate() {
                if std::mem::take(cand) && self.full[self.single[i]].is_match(&newest.message) {
                    out.push(RuleMatch {
                        rule: self.single[i],
                        lines: vec![newest.clone()],
                    });
                }
            }
        }
        if !self.multi.is_empty() {
            self.join();
            for &rule in &self.multi {
                if let Some(lines) = self.match_joined(rule) {
                    out.push(RuleMatch { rule, lines });
                }
            }
            out.sort_by_key(|m| m.rule);
        }
        out
    }

    /// node-problem-detector's `String()`: every slot oldest first, empty slots as "".
    fn join(&mut self) {
        let max = self.slots.len();
        self.joined.clear();
        for i in 0..max {
            if i > 0 {
                self.joined.push('\n');
            }
            if let Some(l) = &self.slots[(self.current + i) % max] {
                self.joined.push_str(&l.message);
            }
        }
    }

    /// node-problem-detector's `Match()` on the joined buffer.
    fn match_joined(&self, rule: usize) -> Option<Vec<LogLine>> {
        let loc = self.full[rule].find(&self.joined)?;
        let max = self.slots.len();
        let s = self.joined.len() as isize - loc.start() as isize - 1;
        let mut total: isize = 0;
        let mut matched = Vec::new();
        let tail = self.current + max - 1;
        let mut i = tail;
        while i >= self.current {
            let Some(l) = &self.slots[i % max] else { break };
            matched.push(l.clone());
            total += l.message.len() as isize + 1;
            if total > s {
                break;
            }
            i -= 1;
        }
        matched.reverse();
        Some(matched)
    }

    /// The exact algorithm for every rule (used by tests to prove the fast path equivalent).
    pub fn push_exact(&mut self, line: LogLine) -> Vec<RuleMatch> {
        let max = self.slots.len();
        let slot = self.current % max;
        self.slots[slot] = Some(line);
        self.current += 1;
        self.join();
        (0..self.full.len())
            .filter_map(|rule| {
                self.match_joined(rule)
                    .map(|lines| RuleMatch { rule, lines })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(msg: &str) -> LogLine {
        LogLine {
            timestamp: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            message: msg.to_string(),
        }
    }

    #[test]
    fn translation_keeps_go_meaning() {
        assert_eq!(translate_go_regex(r"\d+"), "[0-9]+");
        assert_eq!(translate_go_regex(r"[\S ]+"), "[[^\\t\\n\\f\\r ] ]+");
        assert_eq!(translate_go_regex(r"\\d"), r"\\d");
        assert_eq!(translate_go_regex(r"a\Q.*\Eb"), r"a(?:\.\*)b");
        assert_eq!(translate_go_regex(r"[]\d]"), r"[]0-9]");
        assert_eq!(translate_go_regex(r"[^]\w]x"), r"[^]0-9A-Za-z_]x");
        assert_eq!(translate_go_regex(r"[[:alpha:]\d]"), r"[[:alpha:]0-9]");
        // ASCII-only like Go: a non-ASCII letter is not \w.
        let re = compile_rule_pattern(r"x\w").unwrap();
        assert!(re.is_match("xa"));
        assert!(!re.is_match("xé"));
        assert!(compile_rule_pattern(r"\bfoo\b").unwrap().is_match("a foo"));
    }

    #[test]
    fn single_line_analysis() {
        assert!(is_single_line(r"Killed process \d+ (.+) total-vm:\d+kB.*"));
        assert!(is_single_line(
            r"task [\S ]+:\w+ blocked for more than \w+ seconds\."
        ));
        assert!(is_single_line(
            r".*\[Hardware Error\]: event severity: fatal$"
        ));
        assert!(is_single_line(r"\bword"));
        assert!(is_single_line(r"(?m)^start"));
        // Can cross lines: "\n", [^x], \s, (?s).
        assert!(!is_single_line(r"a\nb"));
        assert!(!is_single_line(r"a[^x]+b"));
        assert!(!is_single_line(r"a\sb"));
        assert!(!is_single_line(r"(?s)a.*b"));
        // Start of text anchor: depends on the whole buffer.
        assert!(!is_single_line(r"^start"));
        // Top-level alternation: node-problem-detector's `a|b\z` anchors only `b`.
        assert!(!is_single_line(r"foo|bar"));
        assert!(is_single_line(r"(foo|bar)"));
    }

    #[test]
    fn required_literals_are_extracted() {
        let l = required_literals(r"Killed process \d+ (.+) total-vm:\d+kB.*").unwrap();
        assert!(l.iter().all(|x| x.starts_with(b"Killed process ")), "{l:?}");
        assert_eq!(
            required_literals(r".*\[Hardware Error\]: event severity: fatal$").unwrap(),
            vec![b"[Hardware Error]: event severity: fatal".to_vec()]
        );
        assert_eq!(required_literals(r".*"), None);
        assert_eq!(required_literals(r"x*"), None);
        let l = required_literals(r"(?i)oops").unwrap();
        assert!(l.len() >= 2, "case variants: {l:?}");
    }

    #[test]
    fn multi_line_pattern_matches_when_last_line_arrives() {
        let mut m = Matcher::new(&[r"first line\nsecond \d+"], 10).unwrap();
        assert_eq!(m.multi_line_rules(), 1);
        assert!(m.push(line("noise")).is_empty());
        assert!(m.push(line("first line")).is_empty());
        let hits = m.push(line("second 42"));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].lines, vec![line("first line"), line("second 42")]);
        // Not matched any more once another line arrives: the match must end at the newest line.
        assert!(m.push(line("third")).is_empty());
    }

    #[test]
    fn top_level_alternation_keeps_npd_quirk() {
        // `foo|bar\z`: "foo" anywhere in the buffer matches, as in node-problem-detector.
        let mut m = Matcher::new(&["foo|bar"], 3).unwrap();
        assert_eq!(m.push(line("a foo b")).len(), 1);
        assert_eq!(m.push(line("zzz")).len(), 1);
        let hits = m.push(line("yyy"));
        assert_eq!(hits.len(), 1);
        assert_eq!(
            hits[0].lines,
            vec![line("a foo b"), line("zzz"), line("yyy")]
        );
        assert!(m.push(line("xxx")).is_empty(), "foo left the 3-line buffer");
    }

    #[test]
    fn start_anchor_uses_whole_buffer() {
        // The joined buffer starts with empty slots, so `^x` matches only when x is the
        // oldest slot of a full buffer... and the buffer is a single line here.
        let mut m = Matcher::new(&["^x"], 1).unwrap();
        assert_eq!(m.push(line("x")).len(), 1);
        let mut m = Matcher::new(&["^x"], 2).unwrap();
        assert!(m.push(line("x")).is_empty(), "joined buffer is \"\\nx\"");
    }

    /// Runs both algorithms on the same lines and requires identical answers.
    fn assert_equivalent(patterns: &[&str], lines: &[&str], buffer: usize) {
        let mut fast = Matcher::new(patterns, buffer).unwrap();
        let mut exact = Matcher::new(patterns, buffer).unwrap();
        for l in lines {
            assert_eq!(
                fast.push(line(l)),
                exact.push_exact(line(l)),
                "line {l:?} patterns {patterns:?}"
            );
        }
    }

    #[test]
    fn fast_path_equals_exact_on_samples() {
        let kernel = crate::problems::config::parse_str(
            std::path::Path::new("kernel-monitor.json"),
            crate::problems::KERNEL_MONITOR,
        )
        .unwrap();
        let crate::problems::config::MonitorConfig::SystemLog(cfg) = kernel else {
            panic!()
        };
        let patterns: Vec<&str> = cfg.rules.iter().map(|r| r.pattern.as_str()).collect();
        let mut lines = Vec::new();
        for f in std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/problems/kernel-log-samples"
        ))
        .unwrap()
        {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        lines.push(String::new());
        lines.push("[Hardware Error]: event severity: fatal".into());
        lines.push("XFS (sda1): Shutting down filesystem".into());
        lines.push(
            "xé \u{1F600} Killed process 1 (a) total-vm:1kB, anon-rss:1kB, file-rss:1kB".into(),
        );
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        for buffer in [1, 2, 10] {
            assert_equivalent(&patterns, &refs, buffer);
        }
    }

    #[test]
    fn fast_path_equals_exact_on_edge_patterns() {
        let patterns = [
            r"\bfoo",
            r"(?m)^foo",
            r"foo$",
            r"",
            r"x*",
            r"(?i)FOO \w+",
            r"[^\n]*bar",
            r"\Bbar",
            r"(?i)oops: \d+",
            r"(a|bc)d",
            r".*fatal$",
            r"[\S ]+:\w+ blocked",
        ];
        let lines = [
            "foo", "afoo", "foo bar", "xbar", "", "FOO é", "a\nfoo", "bar\nfoo", "foo bar",
        ];
        assert_equivalent(&patterns, &lines, 3);
        assert_equivalent(&patterns, &lines, 1);
    }
}
