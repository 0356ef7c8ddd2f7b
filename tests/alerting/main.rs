//! Alerting end to end: rule files checked, unit-tested and replayed like promtool's, rules evaluated on the aggregator and on a real Prometheus, notifications to a webhook, aiosmtpd and a real Alertmanager (checked with amtool).

#[path = "../support/mod.rs"]
mod support;

mod config_file;
mod default_rules;
mod notify;
mod notify_email;
mod notify_timing;
mod problems;
mod rules_check;
mod rules_e2e;
mod rules_remote;
mod rules_replay;
mod rules_unittest;
