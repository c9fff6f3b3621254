//! gRPC health: NOT_SERVING until the first snapshot, then following every snapshot
//! swap, and NOT_SERVING again when shutting down.

use std::sync::Arc;

use bedrock_attribution::v1::attribution_service_server::AttributionServiceServer;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;

use crate::{catalog::Catalog, service::AttributionApi};

/// Sets the overall status and the API's.
pub async fn set_health(reporter: &HealthReporter, serving: bool) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let status = if serving { Serving } else { NotServing };
    reporter.set_service_status("", status).await;
    if serving {
        reporter
            .set_serving::<AttributionServiceServer<AttributionApi>>()
            .await;
    } else {
        reporter
            .set_not_serving::<AttributionServiceServer<AttributionApi>>()
            .await;
    }
}

/// Follows every snapshot swap (from the background loop or the Refresh RPC): SERVING
/// while any data is servable; signals `ready` at the first snapshot; stops at shutdown.
pub fn follow(
    catalog: &Arc<Catalog>,
    reporter: HealthReporter,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut snapshots = catalog.subscribe();
    tokio::spawn(async move {
        loop {
            let serving = snapshots
                .borrow_and_update()
                .as_ref()
                .map(|s| !s.periods.is_empty() || s.problems.is_empty());
            if let Some(serving) = serving {
                set_health(&reporter, serving).await;
                let _ = ready.send(true);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
    });
}
