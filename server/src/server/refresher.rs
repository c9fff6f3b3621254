//! The background refresh loop.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use crate::catalog::Catalog;

/// Refreshes `catalog` now and then every `interval` (once when zero) until `stop`.
pub fn spawn(
    catalog: Arc<Catalog>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = catalog.refresh().await {
                tracing::error!(error = %e, "refresh failed");
            }
            if interval.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
    })
}
