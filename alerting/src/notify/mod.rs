//! The notifier: Alertmanager-format routing, grouping, inhibition, silences and receivers.
