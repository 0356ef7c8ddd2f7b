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
