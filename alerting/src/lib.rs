//! Alerting: rules (threshold, recording, baseline, outlier) evaluated through the [`Query`]
//! interface this crate defines, their state machine, and the notifier (routing, grouping,
//! inhibition, silences, receivers). Rules hand alerts to the notifier through [`Notify`].

pub mod alert;
pub mod anomaly;
pub mod notify;
pub mod query;
pub mod rules;

pub use alert::{Alert, Fanout, Notify};
pub use query::{Query, QueryError, RangeSeries, RemoteQuery, Sample};
