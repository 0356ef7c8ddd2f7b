//! The cluster aggregator: pulls every node's Summary API, computes Heapster's rates and
//! aggregates, keeps a bounded window, and serves Heapster's API and metrics.k8s.io.

pub mod batch;
pub mod sinks;

pub mod alerting;
pub mod api;
pub mod config;
pub mod metrics;
pub mod processors;
pub mod query;
pub mod render;
pub mod scrape;
#[doc(hidden)]
pub mod sim;
pub mod store;
pub mod tls;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;

pub use config::Args;
use metrics::SelfMetrics;
use processors::Processor;
use scrape::{Discovery, Scraper};
use store::Store;

/// Errors that stop the aggregator at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Discovery(#[from] scrape::discovery::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("--sink: {0}")]
    Sinks(String),
    #[error("--secure-listen: {0}")]
    Tls(#[from] tls::Error),
    #[error(transparent)]
    Alerting(#[from] alerting::Error),
    #[error(transparent)]
    Auth(#[from] vigil_server::auth::Error),
}

/// The next multiple of `resolution` after `now`.
fn next_boundary(now: DateTime<Utc>, resolution: Duration) -> DateTime<Utc> {
    let res = resolution.as_millis().max(1) as i64;
    let ms = now.timestamp_millis();
    Utc.timestamp_millis_opt((ms / res + 1) * res)
        .single()
        .unwrap_or(now)
}

/// Runs the aggregator until `shutdown` fires.
pub async fn run(args: Args, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let cfg = args.resolve()?;
    if let Some(w) = config::resolution_warning(cfg.metric_resolution) {
        tracing::warn!(resolution = ?cfg.metric_resolution, "{w}");
    }
    let mut discoveries = Discovery::from_options(
        &cfg.nodes,
        cfg.nodes_file.as_ref(),
        cfg.source.as_deref(),
    )
    .await?;
    // Sinks of the config file, then the --sink URIs.
    let sink_configs = &cfg.sinks;
    let sink_set = if sink_configs.is_empty() {
        None
    } else {
        Some(Arc::new(
            sinks::SinkSet::from_configs(sink_configs, cfg.data_dir.as_deref())
                .map_err(|e| Error::Sinks(e.to_string()))?,
        ))
    };
    let store = Arc::new(Store::new(
        cfg.retention.as_millis() as i64,
        cfg.max_series,
    ));
    if let Some(dir) = &cfg.data_dir {
        match store::snapshot::load(&store, dir, Utc::now().timestamp_millis()) {
            Ok(n) => tracing::info!(dir = %dir.display(), entities = n, "store snapshot loaded"),
            Err(e) => {
                // Keep the bad file for inspection and start empty rather than refuse to run.
                let aside = store::snapshot::path(dir).with_extension("jsonl.corrupt");
                let _ = std::fs::rename(store::snapshot::path(dir), &aside);
                tracing::error!(error = %e, moved_to = %aside.display(), "store snapshot unreadable; starting empty");
            }
        }
    }
    let max_document = cfg.max_document_bytes;
    let mut scraper = Scraper::new(cfg.scrape_timeout, cfg.scrape_concurrency)
        .with_max_document(max_document)
        .with_round_deadline(scrape::round_deadline(cfg.metric_resolution));
    if let Some(k) = discoveries.iter().find_map(|d| d.kube_source()) {
        scraper = scraper
            .with_kubelet_tls(k.insecure, k.ca_pem.as_deref())
            .map_err(|e| scrape::discovery::Error::Source {
                source_uri: cfg.source.clone().unwrap_or_default(),
                message: format!("kubelet client: {e}"),
            })?;
    }
    let scraper = Arc::new(scraper);
    let problems = Arc::new(scrape::problems::ProblemPuller::new());
    let self_metrics = Arc::new(SelfMetrics {
        kube_watch: discoveries.iter().find_map(|d| d.watch_stats()),
        ..Default::default()
    });
    // The pods' and namespaces' enrichment view, rebuilt from the watchers' stores in the
    // background after they change: a round only takes the latest one.
    let info_source = discoveries.iter().find_map(|d| d.info_source());
    let query_service = Arc::new(query::QueryService::new(store.clone(), cfg.query_limits()));
    let alerting = Arc::new(alerting::Alerting::start(
        &cfg,
        store.clone(),
        &query_service,
        shutdown.clone(),
    )?);
    let state = Arc::new(api::AppState {
        store: store.clone(),
        latest: RwLock::new(None),
        scraper: scraper.clone(),
        metrics: self_metrics.clone(),
        resolution: cfg.metric_resolution,
        disable_export: cfg.disable_export,
        extra_metrics: {
            let (sinks, alerting, problems) =
                (sink_set.clone(), alerting.clone(), problems.clone());
            Some(Arc::new(move |out: &mut String| {
                if let Some(s) = &sinks {
                    s.write_metrics(out);
                }
                alerting.write_metrics(out);
                problems.write_metrics(out);
            }) as api::MetricsWriter)
        },
        federate: Some(sinks::render_exposition),
        query: query_service,
    });
    let sinks_task = sink_set
        .clone()
        .map(|s| tokio::spawn(s.run(shutdown.clone())));
    // Who may call the API; writes on a non-loopback listener need authentication.
    let auth = Arc::new(vigil_server::auth::Auth::new(&cfg.auth).await?);
    let mut writes = Vec::new();
    if alerting.manager.is_some() {
        writes.push("/-/reload");
    }
    if alerting.notifier.is_some() {
        writes.extend(["/api/v2/silences", "/api/v2/alerts"]);
    }
    auth.check_listener("--listen", cfg.listen, &writes)?;
    if let Some((addr, _)) = &cfg.secure_listen() {
        auth.check_listener("--secure-listen", *addr, &writes)?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.listen,
            source,
        })?;
    tracing::info!(listen = %cfg.listen, resolution = ?cfg.metric_resolution, "aggregator listening");
    let router = auth.layer(api::app(state.clone()).merge(alerting.router()));
    // The same API over HTTPS, for the kube-apiserver's metrics.k8s.io APIService.
    let secure_server = match &cfg.secure_listen() {
        Some((addr, opts)) => {
            // Client certificates (--client-ca-file, the kube-apiserver's front proxy) are asked
            // for here and checked by the auth layer.
            let config = vigil_server::tls::listener_config(opts, *addr, &auth)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    addr: *addr,
                    source,
                })?;
            tracing::info!(listen = %addr, "aggregator listening over HTTPS");
            Some(tokio::spawn(vigil_server::serve(
                listener,
                router.clone(),
                vigil_server::Options::default().with_tls(config),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(vigil_server::serve(
        listener,
        router,
        vigil_server::Options::default(),
        shutdown.clone(),
    ));

    let mut processor = Some(Processor::new(cfg.retention));
    let mut last_snapshot = Instant::now();
    loop {
        let boundary = next_boundary(Utc::now(), cfg.metric_resolution);
        let wait = (boundary - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let started = Instant::now();
        let mut targets = Vec::new();
        for d in discoveries.iter_mut() {
            let (t, err) = d.targets().await;
            if let Some(e) = err {
                self_metrics
                    .discovery_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "node discovery failed; keeping the previous list");
            }
            targets.extend(t);
        }
        targets.sort_by(|a, b| a.url.cmp(&b.url));
        targets.dedup_by(|a, b| a.url == b.url);
        // The node problem detectors are pulled beside the Summaries, within the same deadline.
        let (docs, pulled) = tokio::join!(
            scraper.round(
                &targets,
                scrape::max_jitter(targets.len(), cfg.metric_resolution),
            ),
            problems.pull(&scraper, &targets),
        );
        let fetched = started.elapsed();
        let mut proc = processor.take().expect("processor is returned every round");
        let st = store.clone();
        let info = info_source.clone();
        let (proc, batch, process_t, store_t, store_err) = tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            proc.cluster_info = info.and_then(|i| i.cluster_info());
            let batch = proc.process_owned(boundary, docs);
            let process_t = t0.elapsed();
            let t1 = Instant::now();
            let err = st.ingest(&batch).err();
            st.points_heap_bytes();
            (proc, batch, process_t, t1.elapsed(), err)
        })
        .await
        .expect("processing does not panic");
        let rs = proc.rate_stats();
        self_metrics
            .rates_computed
            .store(rs.computed, Ordering::Relaxed);
        self_metrics
            .counter_resets
            .store(rs.counter_resets, Ordering::Relaxed);
        self_metrics
            .container_restarts
            .store(rs.restarts, Ordering::Relaxed);
        self_metrics
            .rate_state_sets
            .store(proc.tracked_sets() as u64, Ordering::Relaxed);
        self_metrics
            .duplicate_nodes
            .store(proc.duplicate_nodes(), Ordering::Relaxed);
        processor = Some(proc);
        let (pr, sc, st) = (problems.clone(), scraper.clone(), store.clone());
        let t_ms = boundary.timestamp_millis();
        let conditions: Vec<_> = discoveries
            .iter()
            .filter_map(|d| d.node_conditions())
            .flatten()
            .collect();
        let refused = tokio::task::spawn_blocking(move || {
            pr.apply_round(pulled, &sc, t_ms, &st);
            scrape::kubernetes::store_node_conditions(&conditions, t_ms, &st)
        })
        .await
        .expect("storing node problems does not panic");
        if refused > 0 {
            self_metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = store_err {
            self_metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store refused series");
        }
        let batch = Arc::new(batch);
        self_metrics
            .last_batch_sets
            .store(batch.sets.len() as u64, Ordering::Relaxed);
        self_metrics
            .last_batch_timestamp_seconds
            .store(batch.timestamp.timestamp().max(0) as u64, Ordering::Relaxed);
        *state.latest.write().unwrap() = Some(batch.clone());
        if let Some(s) = &sink_set {
            s.push(batch.clone());
        }
        let total = started.elapsed();
        SelfMetrics::set(&self_metrics.last_round_seconds, total.as_secs_f64());
        self_metrics.round_seconds.observe(total.as_secs_f64());
        SelfMetrics::set(&self_metrics.last_fetch_seconds, fetched.as_secs_f64());
        SelfMetrics::set(&self_metrics.last_process_seconds, process_t.as_secs_f64());
        SelfMetrics::set(&self_metrics.last_store_seconds, store_t.as_secs_f64());
        self_metrics.rounds.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            nodes = targets.len(),
            sets = batch.sets.len(),
            seconds = total.as_secs_f64(),
            "round done"
        );
        if let Some(dir) = &cfg.data_dir {
            if last_snapshot.elapsed() >= cfg.snapshot_interval {
                last_snapshot = Instant::now();
                write_snapshot(&store, dir, &self_metrics).await;
            }
        }
    }
    if let Some(dir) = &cfg.data_dir {
        write_snapshot(&store, dir, &self_metrics).await;
    }
    if let Some(t) = sinks_task {
        let _ = t.await;
    }
    if let Some(t) = secure_server {
        let _ = t.await;
    }
    let _ = server.await;
    Ok(())
}

async fn write_snapshot(store: &Arc<Store>, dir: &std::path::Path, m: &SelfMetrics) {
    let (st, d) = (store.clone(), dir.to_path_buf());
    match tokio::task::spawn_blocking(move || store::snapshot::write(&st, &d)).await {
        Ok(Ok(n)) => {
            m.snapshots_written.fetch_add(1, Ordering::Relaxed);
            tracing::info!(dir = %dir.display(), entities = n, "store snapshot written");
        }
        Ok(Err(e)) => {
            m.snapshot_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store snapshot failed");
        }
        Err(e) => {
            m.snapshot_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store snapshot task failed");
        }
    }
}
