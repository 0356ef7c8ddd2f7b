//! Log watchers (kmsg, filelog, journald) that turn a log source into `LogLine`s.
