//! `vigil rules check|test|replay`: rule tooling with promtool's verdicts and output.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates rule files as `promtool check rules` does (exit 1 on errors, 3 on fatal lint).
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Linting checks: `duplicate-rules`, `all` or `none`.
        #[arg(long, value_enum, default_value = "duplicate-rules")]
        lint: Lint,
        /// Make lint findings exit with status 3.
        #[arg(long)]
        lint_fatal: bool,
    },
    /// Runs rule unit tests in promtool's format (`rule_files`, `input_series`,
    /// `alert_rule_test`, `promql_expr_test`); exit 1 if any fails.
    Test {
        /// Unit-test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Backtesting: evaluates the rules in virtual time, at each sample of a CSV series
    /// (`--csv`) or at each group interval from `--from` to `--to` over a query API, and prints
    /// one line per alert state change (`<time> <alertname> <labels> firing|resolved`).
    Replay {
        /// Rule file (path or glob; repeatable).
        #[arg(long = "rule-file", required = true)]
        rule_files: Vec<String>,
        /// CSV of `timestamp,value` (YYYY-MM-DD HH:MM:SS UTC, RFC 3339 or unix seconds).
        #[arg(long, required_unless_present = "from", conflicts_with_all = ["from", "to", "rule_query_url"])]
        csv: Option<PathBuf>,
        /// Name of the series the CSV becomes.
        #[arg(long, default_value = "value", conflicts_with = "from")]
        metric: String,
        /// Start of the history replayed over the query API (RFC 3339, YYYY-MM-DD HH:MM:SS UTC or
        /// unix seconds).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// End of the history replayed (same forms as --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Prometheus-compatible API the history is read from: the aggregator's store (its
        /// PromQL API), Prometheus, VictoriaMetrics, Thanos.
        #[arg(long, default_value = "http://127.0.0.1:8082")]
        rule_query_url: String,
        /// Interval of rule groups that set none.
        #[arg(long, default_value = "1m", value_parser = vigil_alerting::rules::parse_duration)]
        rule_evaluation_interval: std::time::Duration,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Lint {
    All,
    DuplicateRules,
    None,
}

/// Runs a `vigil rules` command and returns the process exit status.
pub fn run(args: Args) -> i32 {
    match args.command {
        Command::Check {
            files,
            lint,
            lint_fatal,
        } => check(&files, lint, lint_fatal),
        Command::Test { files } => test(&files),
        Command::Replay {
            rule_files,
            csv,
            metric,
            from,
            to,
            rule_query_url,
            rule_evaluation_interval,
        } => match (csv, from, to) {
            (Some(csv), _, _) => replay(&rule_files, &csv, &metric),
            (None, Some(from), Some(to)) => replay_range(
                &rule_files,
                &from,
                &to,
                &rule_query_url,
                rule_evaluation_interval,
            ),
            _ => {
                eprintln!("replay needs --csv, or --from and --to");
                2
            }
        },
    }
}

/// promtool's `CheckRules`: "Checking <file>", then SUCCESS with the rule count or FAILED with
/// the errors on stderr; 1 if any file has errors, 3 if only lint findings and `--lint-fatal`.
fn check(files: &[PathBuf], lint: Lint, lint_fatal: bool) -> i32 {
    let mut errors = false;
    let mut lint_found = false;
    for f in files {
        println!("Checking {}", f.display());
        match vigil_alerting::rules::load_file(f) {
            Ok(file) if lint != Lint::None && !file.warnings.is_empty() => {
                eprintln!("  FAILED:");
                for w in &file.warnings {
                    eprintln!("lint error {w}");
                }
                lint_found = true;
            }
            Ok(file) => {
                let n: usize = file.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(e) => {
                eprintln!("  FAILED:");
                for line in &e.errors {
                    eprintln!("{line}");
                }
                errors = true;
            }
        }
        println!();
    }
    if errors {
        1
    } else if lint_found && lint_fatal {
        3
    } else {
        0
    }
}

fn replay(patterns: &[String], csv: &std::path::Path, metric: &str) -> i32 {
    use vigil_alerting::rules::offline;
    if !vigil_alerting::rules::file::is_metric_name(metric) {
        eprintln!("--metric {metric:?}: not a valid metric name");
        return 2;
    }
    let files = match vigil_alerting::rules::load_patterns(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let name = csv.display().to_string();
    let samples = match std::fs::read_to_string(csv)
        .map_err(|e| format!("{name}: {e}"))
        .and_then(|text| offline::read_csv(&name, &text).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let opts = vigil_alerting::rules::EvalOptions::default();
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for change in offline::replay(&files, metric, &samples, &opts) {
        if writeln!(out, "{change}").is_err() {
            return 1;
        }
    }
    0
}

/// `replay --from --to`: the groups evaluated over history in a query API; state changes on
/// stdout, failed evaluations on stderr (exit 1 if any).
fn replay_range(
    patterns: &[String],
    from: &str,
    to: &str,
    url: &str,
    interval: std::time::Duration,
) -> i32 {
    use vigil_alerting::rules::offline;
    let time = |flag: &str, v: &str| {
        offline::parse_timestamp(v).map_err(|e| format!("--{flag}: {e}"))
    };
    let interval = if interval.is_zero() {
        Err("--rule-evaluation-interval: must be longer than 0s".to_string())
    } else {
        Ok(interval)
    };
    let (from_ms, to_ms, interval) = match (time("from", from), time("to", to), interval) {
        (Ok(f), Ok(t), Ok(i)) if f <= t => (f, t, i),
        (Ok(_), Ok(_), Ok(_)) => {
            eprintln!("--from {from} is after --to {to}");
            return 2;
        }
        (f, t, i) => {
            for e in [f.err(), t.err(), i.err()].into_iter().flatten() {
                eprintln!("{e}");
            }
            return 2;
        }
    };
    let files = match vigil_alerting::rules::load_patterns(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let query = match vigil_alerting::RemoteQuery::new(url, std::time::Duration::from_secs(30)) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let opts = vigil_alerting::rules::EvalOptions {
        default_interval: interval,
        ..Default::default()
    };
    let (changes, failures) = offline::replay_range(&files, &query, from_ms, to_ms, &opts);
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for change in changes {
        if writeln!(out, "{change}").is_err() {
            return 1;
        }
    }
    // A peer that is down fails every evaluation: the first few say why.
    for f in failures.iter().take(10) {
        eprintln!("{f}");
    }
    if failures.len() > 10 {
        eprintln!("... {} failed evaluations in all", failures.len());
    }
    i32::from(!failures.is_empty())
}

/// promtool's `test rules`: "Unit Testing:  <file>", then SUCCESS or FAILED with each failure.
fn test(files: &[PathBuf]) -> i32 {
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        match vigil_alerting::rules::unittest::run_file(f) {
            Ok(failures) if failures.is_empty() => println!("  SUCCESS"),
            Ok(failures) => {
                failed = true;
                eprintln!("  FAILED:");
                for e in failures {
                    eprintln!("{e}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("  FAILED:");
                eprintln!("    {e}");
            }
        }
        println!();
    }
    i32::from(failed)
}
