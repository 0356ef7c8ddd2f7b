//! Learned baselines (per-series online models) and host comparison (robust peer-group outliers).
