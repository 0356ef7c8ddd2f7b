//! Rule files (Prometheus format plus baseline and outlier rules), evaluation, state.
