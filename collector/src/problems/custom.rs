//! Custom plugin monitor: runs plugins on an interval, maps exit codes to events and conditions.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::config::CustomPluginConfig;
use super::store::Store;

pub(crate) fn initialize(store: &Store, _cfg: &CustomPluginConfig) {
    store.register("", Vec::new());
}

pub(crate) async fn run(
    _file: PathBuf,
    _cfg: CustomPluginConfig,
    _slot: usize,
    _store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = shutdown.wait_for(|s| *s).await;
}
