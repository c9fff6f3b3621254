//! gRPC health: NOT_SERVING until the first snapshot, then following every snapshot
//! swap, and NOT_SERVING again when shutting down.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use bedrock_attribution::v1::attribution_service_server::AttributionServiceServer;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;

use crate::{catalog::Catalog, period::BillingPeriod, service::AttributionApi, snapshot::Snapshot};

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
/// The first time it says SERVING it logs what is served and two commands to try
/// against `url` (the address the API listens on, as a client would write it).
pub fn follow(
    catalog: &Arc<Catalog>,
    reporter: HealthReporter,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    url: String,
) {
    let mut snapshots = catalog.subscribe();
    tokio::spawn(async move {
        let mut announced = false;
        loop {
            let (serving, announcement) = {
                let snapshot = snapshots.borrow_and_update();
                let serving = snapshot
                    .as_ref()
                    .map(|s| !s.periods.is_empty() || s.problems.is_empty());
                let announcement = match (serving, snapshot.as_ref()) {
                    (Some(true), Some(s)) if !announced => Some(serving_message(s, &url)),
                    _ => None,
                };
                (serving, announcement)
            };
            if let Some(serving) = serving {
                set_health(&reporter, serving).await;
                let _ = ready.send(true);
            }
            if let Some(message) = announcement {
                announced = true;
                tracing::info!("{message}");
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
    });
}

/// The URL a client on this machine reaches `addr` at: an unspecified address
/// (`0.0.0.0`, `::`) is reached on loopback.
pub fn client_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".parse().unwrap_or(ip),
        ip if ip.is_unspecified() => "::1".parse().unwrap_or(ip),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// "serving N billing periods: SOURCE (MONTHS), ...; try: ..." for the first SERVING.
fn serving_message(snapshot: &Snapshot, url: &str) -> String {
    let mut by_source: BTreeMap<&str, Vec<BillingPeriod>> = snapshot
        .sources
        .iter()
        .map(|s| (s.as_str(), Vec::new()))
        .collect();
    for p in &snapshot.periods {
        by_source
            .entry(p.source.as_str())
            .or_default()
            .push(p.period);
    }
    let sources: Vec<String> = by_source
        .iter_mut()
        .map(|(source, periods)| {
            periods.sort();
            periods.dedup();
            format!("{source} ({})", months(periods))
        })
        .collect();
    let cli = format!("bedrock-attribution --server {url}");
    let latest = snapshot.periods.iter().map(|p| p.period).max();
    let question = match latest.and_then(|p| Some((p, p.next()?))) {
        Some((first, next)) => {
            format!("{cli} cost-by-principal --from {first}-01 --to {next}-01 --by role")
        }
        None => format!("{cli} list-principals --from 2026-01-01 --to 2027-01-01"),
    };
    format!(
        "serving {} billing periods: {}; try: `{cli} status` and `{question}`",
        snapshot.periods.len(),
        sources.join(", ")
    )
}

/// Sorted months as runs: `2026-01..2026-08, 2026-10`; `none` when empty.
fn months(periods: &[BillingPeriod]) -> String {
    let mut runs: Vec<(BillingPeriod, BillingPeriod)> = Vec::new();
    for &p in periods {
        match runs.last_mut() {
            Some((_, last)) if last.next() == Some(p) => *last = p,
            _ => runs.push((p, p)),
        }
    }
    if runs.is_empty() {
        return "none".to_owned();
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(text: &str) -> BillingPeriod {
        BillingPeriod::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn months_are_written_as_runs() {
        let ps: Vec<_> = ["2025-11", "2025-12", "2026-01", "2026-03"]
            .into_iter()
            .map(period)
            .collect();
        assert_eq!(months(&ps), "2025-11..2026-01, 2026-03");
        assert_eq!(months(&[]), "none");
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let url = |a: &str, tls| client_url(a.parse().unwrap_or_else(|e| panic!("{e}")), tls);
        assert_eq!(url("0.0.0.0:50051", false), "http://127.0.0.1:50051");
        assert_eq!(url("[::]:50051", true), "https://[::1]:50051");
        assert_eq!(url("10.0.0.7:443", true), "https://10.0.0.7:443");
    }
}
