//! Command-line options of `vigil aggregator`, their defaults and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Errors in the aggregator's options; each names the option.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("--{option}: invalid duration {value:?} (use e.g. 500ms, 15s, 2m, 1h)")]
    Duration { option: &'static str, value: String },
    #[error("--metric-resolution {0:?} is below the 5s minimum (add --allow-short-resolution for tests)")]
    ResolutionTooShort(String),
    #[error("--{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
    #[error("no node source: give --nodes, --nodes-file or --source")]
    NoSource,
}

/// Parses `500ms`, `15s`, `2m`, `1h` (and Go-style compounds like `1m30s`).
pub fn parse_duration(option: &'static str, value: &str) -> Result<Duration, Error> {
    let bad = || Error::Duration {
        option,
        value: value.to_string(),
    };
    let mut rest = value.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * scale);
    }
    Ok(total)
}

/// Command-line options of `vigil aggregator`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address of the HTTP API (Heapster's port is 8082).
    #[arg(long, default_value = "0.0.0.0:8082")]
    pub listen: SocketAddr,
    /// How often every node is pulled (minimum 5s).
    #[arg(
        long = "metric-resolution",
        alias = "metric_resolution",
        default_value = "15s"
    )]
    pub metric_resolution: String,
    /// Allows a resolution below 5s (tests only).
    #[arg(long, hide = true)]
    pub allow_short_resolution: bool,
    /// Static node list: `host:port` or `http(s)://host:port[/path]`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// File with one node per line (same syntax as --nodes, `#` comments); re-read when it changes.
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// Heapster's source flag: `kubernetes.summary_api:<master>?kubeletPort=..&kubeletHttps=..&inClusterConfig=..`.
    #[arg(long)]
    pub source: Option<String>,
    /// Per-node request timeout.
    #[arg(long, default_value = "10s")]
    pub scrape_timeout: String,
    /// How many nodes are pulled at the same time.
    #[arg(long, default_value_t = 64)]
    pub scrape_concurrency: usize,
    /// How long the in-memory store keeps every series.
    #[arg(long, default_value = "15m")]
    pub retention: String,
    /// Upper bound on stored series; new series beyond it are refused and counted.
    #[arg(long, default_value_t = 6_000_000)]
    pub max_series: usize,
    /// Directory for the store snapshot (loaded at start, written periodically and on shutdown).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How often the snapshot is written when --data-dir is set.
    #[arg(long, default_value = "5m")]
    pub snapshot_interval: String,
    /// Sink URIs in Heapster's syntax (repeatable), e.g. `influxdb:http://127.0.0.1:8086?db=k8s`.
    #[arg(long)]
    pub sink: Vec<String>,
    /// Makes /api/v1/metric-export answer an empty list (Heapster's --disable_export).
    #[arg(long, alias = "disable_export")]
    pub disable_export: bool,
}

/// The validated settings the aggregator runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub resolution: Duration,
    pub scrape_timeout: Duration,
    pub scrape_concurrency: usize,
    pub retention: Duration,
    pub max_series: usize,
    pub data_dir: Option<PathBuf>,
    pub snapshot_interval: Duration,
    pub disable_export: bool,
}

impl Args {
    /// Checks every option without side effects; errors name the option.
    pub fn validate(&self) -> Result<Settings, Error> {
        let resolution = parse_duration("metric-resolution", &self.metric_resolution)?;
        if resolution < Duration::from_secs(5) && !self.allow_short_resolution {
            return Err(Error::ResolutionTooShort(self.metric_resolution.clone()));
        }
        if resolution < Duration::from_millis(100) {
            return Err(Error::Invalid {
                option: "metric-resolution",
                message: "must be at least 100ms".into(),
            });
        }
        let scrape_timeout = parse_duration("scrape-timeout", &self.scrape_timeout)?;
        if scrape_timeout.is_zero() {
            return Err(Error::Invalid {
                option: "scrape-timeout",
                message: "must be above zero".into(),
            });
        }
        if self.scrape_concurrency == 0 {
            return Err(Error::Invalid {
                option: "scrape-concurrency",
                message: "must be at least 1".into(),
            });
        }
        let retention = parse_duration("retention", &self.retention)?;
        if retention < resolution {
            return Err(Error::Invalid {
                option: "retention",
                message: "must be at least one --metric-resolution".into(),
            });
        }
        if self.max_series == 0 {
            return Err(Error::Invalid {
                option: "max-series",
                message: "must be at least 1".into(),
            });
        }
        let snapshot_interval = parse_duration("snapshot-interval", &self.snapshot_interval)?;
        if snapshot_interval.is_zero() {
            return Err(Error::Invalid {
                option: "snapshot-interval",
                message: "must be above zero".into(),
            });
        }
        if self.nodes.iter().all(|n| n.trim().is_empty())
            && self.nodes_file.is_none()
            && self.source.is_none()
        {
            return Err(Error::NoSource);
        }
        Ok(Settings {
            listen: self.listen,
            resolution,
            scrape_timeout,
            scrape_concurrency: self.scrape_concurrency,
            retention,
            max_series: self.max_series,
            data_dir: self.data_dir.clone(),
            snapshot_interval,
            disable_export: self.disable_export,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("x", "15s").unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("x", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("x", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        for bad in ["", "15", "s", "15x", "-1s", "1.2.3s"] {
            let err = parse_duration("metric-resolution", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--metric-resolution"), "{bad}: {err}");
        }
    }

    fn args(extra: &[&str]) -> Args {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut argv = vec!["agg"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn short_resolution_needs_the_flag() {
        let err = args(&["--nodes", "127.0.0.1:1", "--metric-resolution", "1s"])
            .validate()
            .unwrap_err();
        assert_eq!(err, Error::ResolutionTooShort("1s".into()));
        let ok = args(&[
            "--nodes",
            "127.0.0.1:1",
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ])
        .validate()
        .unwrap();
        assert_eq!(ok.resolution, Duration::from_secs(1));
        assert_eq!(ok.listen.port(), 8082);
    }

    #[test]
    fn a_source_is_required_and_bad_values_are_named() {
        assert_eq!(args(&[]).validate().unwrap_err(), Error::NoSource);
        let err = args(&["--nodes", "a:1", "--scrape-concurrency", "0"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--scrape-concurrency"), "{err}");
        let err = args(&["--nodes", "a:1", "--retention", "1s"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--retention"), "{err}");
    }
}
