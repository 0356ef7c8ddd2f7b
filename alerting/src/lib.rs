//! Alerting: threshold, baseline and host-comparison rules, their state machine, and notifiers.
//! Not built yet; see the open issues.
