//! System log monitor: feeds watcher lines through the rules, updates conditions and events.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::config::SystemLogConfig;
use super::store::Store;

pub(crate) fn initialize(store: &Store, _cfg: &SystemLogConfig) {
    store.register("", Vec::new());
}

pub(crate) async fn run(
    _file: PathBuf,
    _cfg: SystemLogConfig,
    _slot: usize,
    _store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = shutdown.wait_for(|s| *s).await;
}
