//! `vigil up`: every part of vigil on this machine, with embedded defaults: the collector (with
//! node-problem-detector's kernel monitor), an aggregator that pulls it, and a log shipper writing
//! to a local file.

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::watch;

#[derive(Parser, Debug)]
pub struct Args {
    /// Address of the collector (cAdvisor metrics, Summary API, node problems).
    #[arg(long, default_value = "127.0.0.1:4194")]
    collector_listen: SocketAddr,
    /// node-problem-detector monitor config (JSON; repeatable) the collector's problem detector
    /// runs [default: node-problem-detector's kernel monitor (kmsg plugin on /dev/kmsg), written
    /// to <data-dir>/problems/kernel-monitor.json]. A log source that cannot be read is reported
    /// as failing in /problems/sources and retried; a malformed config stops `vigil up`.
    #[arg(long)]
    problem_detector_config: Vec<PathBuf>,
    /// Address of the aggregator (Heapster API, metrics.k8s.io).
    #[arg(long, default_value = "127.0.0.1:8082")]
    aggregator_listen: SocketAddr,
    /// Address of the log shipper's /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:2020")]
    log_shipper_listen: SocketAddr,
    /// Where state lives (aggregator snapshot, log checkpoints, shipped logs)
    /// [default: $XDG_DATA_HOME/vigil or ~/.local/share/vigil].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The kubelet's pod log directory the log shipper tails.
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_root: PathBuf,
    /// How often the aggregator pulls the collector.
    #[arg(long, default_value = "15s", value_parser = vigil_alerting::rules::parse_duration)]
    metric_resolution: std::time::Duration,
    /// Prometheus rule file (path or glob; repeatable) [default: vigil's default rules, written
    /// to <data-dir>/rules/default.yml].
    #[arg(long)]
    rule_file: Vec<String>,
    /// Alertmanager-format notification config (routes, receivers, inhibit_rules).
    #[arg(long)]
    notify_config: Option<PathBuf>,
    /// Also send the rules' alerts to this Alertmanager (base URL; repeatable).
    #[arg(long = "alertmanager-url")]
    alertmanager_url: Vec<String>,
    /// How much history the aggregator keeps for PromQL and dashboards (the Deployment keeps
    /// Heapster's 15m); a node's ~1,500 series hold about 21 MB a day at 15s (2.4 B a point).
    #[arg(long, default_value = "24h", value_parser = vigil_alerting::rules::parse_duration)]
    retention: std::time::Duration,
}

/// Wraps a crate's `clap::Args` so `vigil up` builds it from the same flags a user would type.
#[derive(Parser)]
struct Sub<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn sub<T: clap::Args>(name: &str, flags: &[String]) -> Result<T> {
    let argv = std::iter::once(name.to_string()).chain(flags.iter().cloned());
    Ok(Sub::<T>::try_parse_from(argv)
        .with_context(|| format!("embedded {name} options"))?
        .args)
}

fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("vigil");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/vigil"),
        None => PathBuf::from("vigil-data"),
    }
}

pub async fn run(args: Args, shutdown: watch::Receiver<bool>) -> Result<()> {
    let data = args.data_dir.clone().unwrap_or_else(default_data_dir);
    for dir in ["aggregator", "log-shipper", "logs"] {
        std::fs::create_dir_all(data.join(dir))
            .with_context(|| format!("creating {}", data.join(dir).display()))?;
    }
    let mut problem_configs = args.problem_detector_config.clone();
    if problem_configs.is_empty() {
        let default = data.join("problems/kernel-monitor.json");
        std::fs::create_dir_all(data.join("problems"))
            .and_then(|_| std::fs::write(&default, vigil_collector::problems::KERNEL_MONITOR))
            .with_context(|| format!("writing {}", default.display()))?;
        problem_configs.push(default);
    }
    let mut collector_flags = vec![format!("--listen={}", args.collector_listen)];
    collector_flags.extend(
        problem_configs
            .iter()
            .map(|f| format!("--problem-detector-config={}", f.display())),
    );
    let collector: vigil_collector::Args = sub("collector", &collector_flags)?;
    let mut rule_files = args.rule_file.clone();
    if rule_files.is_empty() {
        let default = data.join("rules/default.yml");
        std::fs::create_dir_all(data.join("rules"))
            .and_then(|_| std::fs::write(&default, vigil_alerting::rules::DEFAULT_RULES))
            .with_context(|| format!("writing {}", default.display()))?;
        rule_files.push(default.display().to_string());
    }
    let mut aggregator_flags = vec![
        format!("--listen={}", args.aggregator_listen),
        format!("--nodes={}", args.collector_listen),
        format!("--data-dir={}", data.join("aggregator").display()),
    ];
    aggregator_flags.extend(rule_files.iter().map(|f| format!("--rule-file={f}")));
    if let Some(n) = &args.notify_config {
        aggregator_flags.push(format!("--notify-config={}", n.display()));
    }
    aggregator_flags.extend(
        args.alertmanager_url
            .iter()
            .map(|u| format!("--alertmanager-url={u}")),
    );
    let mut aggregator: vigil_aggregator::Args = sub("aggregator", &aggregator_flags)?;
    aggregator.metric_resolution = Some(args.metric_resolution);
    aggregator.retention = Some(args.retention);
    let shipped = data.join("logs/records.ndjson");
    let log_shipper: vigil_log_shipper::Args = sub(
        "log-shipper",
        &[
            format!("--listen={}", args.log_shipper_listen),
            format!("--root={}", args.pod_log_root.display()),
            format!("--data-dir={}", data.join("log-shipper").display()),
            format!("--sink=file:{}", shipped.display()),
        ],
    )?;

    println!("vigil is up:");
    println!("  web UI      http://{}/", args.aggregator_listen);
    println!(
        "  collector   http://{}/metrics  /stats/summary  /healthz",
        args.collector_listen
    );
    println!(
        "  problems    http://{}/conditions  /problems/events  /problems/sources  ({})",
        args.collector_listen,
        problem_configs
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  aggregator  http://{}/api/v1/model/metrics/  /apis/metrics.k8s.io/v1beta1/nodes",
        args.aggregator_listen
    );
    println!(
        "  log shipper http://{}/metrics  ({} -> {})",
        args.log_shipper_listen,
        args.pod_log_root.display(),
        shipped.display()
    );
    println!(
        "  alerting    http://{}/api/v1/alerts  /api/v1/rules  ({})",
        args.aggregator_listen,
        rule_files.join(", ")
    );
    println!("  state in {}", data.display());

    tokio::try_join!(
        async {
            vigil_collector::run(collector, shutdown.clone())
                .await
                .context("collector")
        },
        async {
            vigil_aggregator::run(aggregator, shutdown.clone())
                .await
                .context("aggregator")
        },
        async {
            vigil_log_shipper::run(log_shipper, shutdown.clone())
                .await
                .context("log shipper")
        },
    )?;
    Ok(())
}
