//! Rule files (Prometheus format plus baseline and outlier rules), evaluation, state.

/// The default rule file (`alerting/rules/default.yml`), loaded by `vigil up` when no
/// `--rule-file` is given.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yml");

pub mod eval;
pub mod file;
pub mod manager;
pub mod models;
pub mod offline;
pub mod template;
pub mod unittest;

pub use eval::{EvalOptions, GroupState, SeriesWriter, State};
pub use manager::{Manager, ManagerConfig};
pub use file::{load_file, load_patterns, parse_duration, FileError, Group, LoadError, Rule, RuleFile, RuleKind};
