//! WatchBudgets: one task per stream, asleep on the catalog's snapshot watch and the
//! budget store's change watch (no polling). When a snapshot with a new version is
//! served, or the budgets in force change, it recomputes the statuses of the budgets it
//! watches through [`AttributionApi::statuses`], the code of BudgetStatus (the caller's
//! scope, admission, the query pool), and sends an event for each budget whose state or
//! set of crossed thresholds changed. A refresh that read nothing new keeps the version,
//! so it wakes nobody. The task ends when the client goes away, at shutdown (with
//! UNAVAILABLE, so that the client reconnects elsewhere), when a computation fails, or
//! as soon as a reload of the callers file changed or removed the caller's entry (it
//! also wakes on the file's reloads, not only on its own budgets' changes).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use bedrock_attribution::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    AttributionApi, admission,
    budgets::{When, data_span, visible},
    convert,
};
use crate::{
    auth::Caller,
    budgets::{self, Budget},
    error::Error,
    snapshot::Snapshot,
    telemetry::rpc::record_rows,
};

/// Open WatchBudgets streams the server holds at most: each holds a task and wakes on
/// every refresh, so their number is bounded like any other resource.
pub const MAX_WATCHES: usize = 256;
/// Open WatchBudgets streams one caller of the callers file holds at most, so that one
/// caller cannot take every slot. Without access control callers cannot be told apart
/// and only the total bounds them.
pub const MAX_WATCHES_PER_CALLER: usize = 8;
/// Events queued per stream; past that the task waits for the client to read.
const QUEUED_EVENTS: usize = 16;

/// The events of one WatchBudgets call.
pub type EventStream = ReceiverStream<Result<pb::BudgetEvent, Status>>;

/// The open streams, in all and by caller.
#[derive(Debug)]
pub struct WatchSlots {
    total: usize,
    per_caller: usize,
    held: Mutex<Held>,
}

/// Streams open, in all and by identified caller.
#[derive(Debug, Default)]
struct Held {
    open: usize,
    by_caller: HashMap<String, usize>,
}

impl Default for WatchSlots {
    fn default() -> Self {
        Self::new(MAX_WATCHES, MAX_WATCHES_PER_CALLER)
    }
}

impl WatchSlots {
    /// At most `total` streams, `per_caller` of one caller.
    pub fn new(total: usize, per_caller: usize) -> Self {
        Self {
            total,
            per_caller,
            held: Mutex::default(),
        }
    }

    fn with_held<T>(&self, f: impl FnOnce(&mut Held) -> T) -> T {
        match self.held.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A slot for one more stream of `caller` (`None`: no access control), or
    /// RESOURCE_EXHAUSTED.
    fn take(self: &Arc<Self>, caller: Option<&str>) -> Result<Slot, Error> {
        self.with_held(|held| {
            let open = held.open;
            let mine = caller.map_or(0, |c| held.by_caller.get(c).copied().unwrap_or(0));
            if let Some(caller) = caller
                && mine >= self.per_caller
            {
                return Err(Error::TooLarge {
                    reason: format!(
                        "caller {caller} already has {mine} WatchBudgets streams open, the most one caller may; close one (one stream can watch every budget)"
                    ),
                });
            }
            if open >= self.total {
                return Err(Error::TooLarge {
                    reason: format!(
                        "the server already holds {open} WatchBudgets streams, the most it keeps open; retry later or watch through another replica"
                    ),
                });
            }
            held.open += 1;
            if let Some(caller) = caller {
                *held.by_caller.entry(caller.to_owned()).or_default() += 1;
            }
            Ok(Slot {
                slots: self.clone(),
                caller: caller.map(str::to_owned),
            })
        })
    }
}

/// One open stream's place, given back when its task ends.
#[derive(Debug)]
struct Slot {
    slots: Arc<WatchSlots>,
    caller: Option<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.with_held(|held| {
            held.open = held.open.saturating_sub(1);
            if let Some(caller) = &self.caller
                && let Some(n) = held.by_caller.get_mut(caller)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.by_caller.remove(caller);
                }
            }
        });
    }
}

/// What a stream last told (or, before its first event, knows) of one budget.
#[derive(Debug)]
struct Known {
    budget: Arc<Budget>,
    status: i32,
    crossed: Vec<String>,
}

/// One stream's state, owned by its task.
struct Watcher {
    api: AttributionApi,
    caller: Option<Arc<Caller>>,
    caller_key: String,
    /// The budgets asked for; empty: every budget the caller may see.
    ids: Vec<String>,
    send_initial: bool,
    known: BTreeMap<String, Known>,
    /// Version of the snapshot of the last computation; `None` before the first.
    computed_on: Option<u64>,
    /// Whether statuses were computed yet (not before the data holds usage).
    had_statuses: bool,
    tx: mpsc::Sender<Result<pb::BudgetEvent, Status>>,
    _slot: Slot,
}

/// Resolves when the callers file was reloaded (never without access control).
async fn reloaded(rights: &mut Option<watch::Receiver<u64>>) {
    match rights {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The file is gone with the server: nothing more to wait for.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the server starts shutting down (or can no longer tell).
async fn stopping(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

impl AttributionApi {
    pub(super) async fn watch_budgets_rpc(
        &self,
        request: Request<pb::WatchBudgetsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        let caller_key = admission::caller_key(request.extensions());
        let r = request.get_ref();
        if r.budget_ids.len() > budgets::MAX_BUDGETS {
            return Err(Error::invalid(
                "budget_ids",
                format!(
                    "has {} ids; at most {}",
                    r.budget_ids.len(),
                    budgets::MAX_BUDGETS
                ),
            )
            .into());
        }
        // Unknown ids are refused now, as BudgetStatus refuses them; a later deletion
        // is a BUDGET_DELETED event.
        let watched = self.chosen(caller.as_deref(), &r.budget_ids)?;
        let slot = self
            .watches
            .take(caller.as_ref().map(|c| c.name.as_str()))?;
        record_rows("WatchBudgets", watched.len());
        let (tx, rx) = mpsc::channel(QUEUED_EVENTS);
        let mut watcher = Watcher {
            api: self.clone(),
            caller,
            caller_key,
            ids: r.budget_ids.clone(),
            send_initial: r.send_initial,
            known: BTreeMap::new(),
            computed_on: None,
            had_statuses: false,
            tx,
            _slot: slot,
        };
        let mut snapshots = self.catalog.subscribe();
        let mut changes = self.budgets.subscribe();
        // Subscribed before the first statuses, like the other two watches: a reload
        // during them wakes the task, which checks the caller again.
        let rights = self.auth_file.as_ref().map(|f| f.subscribe());
        // The first statuses are taken before the call answers: every change after the
        // caller has the answer's headers is an event. Both watches are marked seen
        // first, so that a change during this computation wakes the task.
        let snapshot = snapshots.borrow_and_update().clone();
        changes.borrow_and_update();
        let initial = match snapshot {
            Some(snapshot) => watcher.turn(&snapshot, true).await?,
            None => Vec::new(),
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(watcher.run(initial, snapshots, changes, rights, shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl Watcher {
    /// Sends `events`, then waits for the next change, until the stream is over.
    async fn run(
        mut self,
        mut pending: Vec<pb::BudgetEvent>,
        mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        mut changes: watch::Receiver<u64>,
        mut rights: Option<watch::Receiver<u64>>,
        mut shutdown: Option<watch::Receiver<bool>>,
    ) {
        loop {
            for event in pending.drain(..) {
                let sent = tokio::select! {
                    biased;
                    sent = self.tx.send(Ok(event)) => sent.is_ok(),
                    // The client does not read: stop without waiting for it.
                    () = stopping(&mut shutdown) => false,
                };
                if !sent {
                    return;
                }
            }
            tokio::select! {
                () = stopping(&mut shutdown) => {
                    // Never waits: a client that does not read just sees the end.
                    let _ = self.tx.try_send(Err(Error::ShuttingDown.into()));
                    return;
                }
                () = self.tx.closed() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
                changed = changes.changed() => if changed.is_err() { return },
                () = reloaded(&mut rights) => {
                    // Rights are checked before anything is computed: a revoked caller's
                    // stream ends now, whether or not anything else changed.
                    if let Err(e) = self.check_caller() {
                        let _ = self.tx.try_send(Err(e.into()));
                        return;
                    }
                    continue;
                }
            }
            // Marked seen before computing: a change during the computation wakes the
            // next turn, so none is lost.
            let snapshot = snapshots.borrow_and_update().clone();
            changes.borrow_and_update();
            let Some(snapshot) = snapshot else {
                continue;
            };
            let turned = tokio::select! {
                turned = self.turn(&snapshot, false) => Some(turned),
                () = stopping(&mut shutdown) => None,
            };
            match turned {
                Some(Ok(events)) => pending = events,
                Some(Err(e)) => {
                    let _ = self.tx.try_send(Err(e.into()));
                    return;
                }
                None => {
                    let _ = self.tx.try_send(Err(Error::ShuttingDown.into()));
                    return;
                }
            }
        }
    }

    /// The budgets watched now.
    fn watched(&self) -> Vec<Arc<Budget>> {
        let caller = self.caller.as_deref();
        self.api
            .budgets
            .all()
            .into_iter()
            .filter(|b| visible(caller, b) && (self.ids.is_empty() || self.ids.contains(&b.id)))
            .collect()
    }

    /// Recomputes when the snapshot version or the watched budgets changed; the events
    /// of what changed. At the stream's opening (`at_open`) the statuses are the
    /// starting point, sent only when asked for.
    async fn turn(
        &mut self,
        snapshot: &Arc<Snapshot>,
        at_open: bool,
    ) -> Result<Vec<pb::BudgetEvent>, Error> {
        let watched = self.watched();
        let new_version = self.computed_on != Some(snapshot.version);
        let same_budgets = watched.len() == self.known.len()
            && watched
                .iter()
                .all(|b| self.known.get(&b.id).is_some_and(|k| *k.budget == **b));
        if !new_version && same_budgets {
            return Ok(Vec::new());
        }
        self.check_caller()?;
        if data_span(snapshot).is_none() {
            // No usage yet, so no month to report: statuses appear with the data.
            self.computed_on = Some(snapshot.version);
            return Ok(Vec::new());
        }
        let answer = self
            .api
            .statuses(
                self.caller.as_deref(),
                &self.caller_key,
                self.api.query_timeout,
                snapshot,
                When {
                    month: None,
                    month_text: "",
                    as_of: None,
                },
                &watched,
            )
            .await?;
        let had_statuses = std::mem::replace(&mut self.had_statuses, true);
        let at = convert::time(chrono::Utc::now());
        let event = |budget: &Budget, previous: Option<&Known>, reason| pb::BudgetEvent {
            budget_id: budget.id.clone(),
            budget_name: budget.name.clone(),
            previous_status: previous.map_or(0, |k| k.status),
            previous_thresholds_crossed: previous.map(|k| k.crossed.clone()).unwrap_or_default(),
            month: answer.month.clone(),
            as_of: answer.as_of,
            snapshot_version: snapshot.version,
            at: Some(at),
            reason: reason as i32,
            ..Default::default()
        };
        let mut events = Vec::new();
        for (budget, report) in watched.iter().zip(&answer.budgets) {
            use pb::BudgetEventReason as Reason;
            let previous = self.known.get(&budget.id);
            let (changed, reason) = match previous {
                None if at_open => (self.send_initial, Reason::Initial),
                // Statuses appear with the first usage in the data.
                None if !had_statuses => (true, Reason::DataChanged),
                None => (true, Reason::BudgetChanged),
                Some(k) => (
                    k.status != report.status || k.crossed != report.thresholds_crossed,
                    if *k.budget != **budget || !new_version {
                        Reason::BudgetChanged
                    } else {
                        Reason::DataChanged
                    },
                ),
            };
            if changed {
                events.push(pb::BudgetEvent {
                    status: report.status,
                    report: Some(report.clone()),
                    ..event(budget, previous, reason)
                });
            }
            self.known.insert(
                budget.id.clone(),
                Known {
                    budget: budget.clone(),
                    status: report.status,
                    crossed: report.thresholds_crossed.clone(),
                },
            );
        }
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| !watched.iter().any(|b| &b.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(k) = self.known.remove(&id) {
                events.push(event(
                    &k.budget,
                    Some(&k),
                    pb::BudgetEventReason::BudgetDeleted,
                ));
            }
        }
        self.computed_on = Some(snapshot.version);
        Ok(events)
    }

    /// Ends the stream when the caller's entry in the callers file changed or went
    /// away since it opened: no event is computed with rights the caller lost.
    fn check_caller(&self) -> Result<(), Error> {
        if let (Some(file), Some(caller)) = (&self.api.auth_file, &self.caller)
            && !file.callers().holds(caller)
        {
            return Err(Error::PermissionDenied {
                what: "WatchBudgets".into(),
                reason: format!(
                    "stream ended: the callers file changed the rights of caller {} since the stream opened; open it again",
                    caller.name
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_by_caller_and_given_back() {
        let slots = Arc::new(WatchSlots::new(4, 2));
        let a1 = slots.take(Some("a")).expect("a free slot");
        let _a2 = slots.take(Some("a")).expect("a free slot");
        let e = slots.take(Some("a")).expect_err("no free slot");
        assert!(e.to_string().contains("caller a already has 2"), "{e}");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        let _b1 = slots.take(Some("b")).expect("a free slot");
        // Without access control only the total counts.
        let anonymous = slots.take(None).expect("a free slot");
        let e = slots.take(Some("c")).expect_err("no free slot");
        assert!(
            e.to_string().contains("holds 4 WatchBudgets streams"),
            "{e}"
        );
        drop(a1);
        let _c1 = slots.take(Some("c")).expect("a free slot");
        assert!(slots.take(None).is_err(), "the total is reached again");
        drop(anonymous);
        let _again = slots.take(None).expect("a free slot");
        slots.with_held(|h| {
            assert_eq!(h.open, 4);
            assert_eq!(
                h.by_caller,
                HashMap::from([
                    ("a".to_owned(), 1),
                    ("b".to_owned(), 1),
                    ("c".to_owned(), 1)
                ])
            );
        });
    }
}
