//! Node problem detector: runs node-problem-detector's monitor configs unchanged (system log
//! monitors and custom plugins), keeps node conditions and events.
