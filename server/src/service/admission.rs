//! Admission: how many queries run at once, how many may wait, and who skips the line.
//!
//! A large question keeps the cores busy for tens of milliseconds; without a cap, 64
//! callers asking at once all run at once, each slower than if they had taken turns, and
//! memory grows with every plan in flight. Queries scanning more than a threshold of
//! layer rows take a permit (one per core by default); small ones (one caller's series,
//! a day) and answers from the cache never wait. Beyond the queue bound a request is
//! refused at once with RESOURCE_EXHAUSTED and a retry hint, rather than queueing
//! without end.
//!
//! Each caller ([`caller_key`]) may hold at most [`Limits::per_caller`] large queries
//! running or waiting, so that one caller cannot fill the line and starve the others;
//! beyond it that caller alone is refused, with the same retry hint.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// Limits on query execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Large queries running at once.
    pub concurrent: usize,
    /// Large queries waiting at most; more are refused.
    pub queued: usize,
    /// Layer rows up to which a query counts as small and is not queued.
    pub small_rows: usize,
    /// Large queries one caller may have running or waiting at once.
    pub per_caller: usize,
}

/// The gate large queries pass.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Large queries running or waiting, per caller with any.
    callers: Arc<Mutex<HashMap<String, usize>>>,
}

/// What lets a query run: a permit for a large query, nothing for a small one.
#[derive(Debug)]
pub struct Ticket {
    _permit: Option<OwnedSemaphorePermit>,
    _caller: Option<CallerSlot>,
}

/// One of a caller's large queries, counted until dropped.
#[derive(Debug)]
struct CallerSlot {
    callers: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        if let Ok(mut callers) = self.callers.lock()
            && let Some(n) = callers.get_mut(&self.caller)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// A gate with `limits` (at least one query runs at a time).
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            concurrent: limits.concurrent.max(1),
            per_caller: limits.per_caller.max(1),
            ..limits
        };
        Self {
            permits: Arc::new(Semaphore::new(limits.concurrent)),
            waiting: AtomicUsize::new(0),
            callers: Arc::default(),
            limits,
        }
    }

    /// Counts one more large query of `caller`, or refuses it when the caller is at
    /// its limit.
    fn caller_slot(&self, caller: &str) -> Result<CallerSlot, Error> {
        let mut callers = self.callers.lock().map_err(|_| Error::NotReady)?;
        let held = callers.entry(caller.to_owned()).or_insert(0);
        if *held >= self.limits.per_caller {
            return Err(Error::CallerOverloaded {
                caller: caller.to_owned(),
                held: *held,
                retry_after: retry_hint(*held, self.limits.concurrent),
            });
        }
        *held += 1;
        Ok(CallerSlot {
            callers: self.callers.clone(),
            caller: caller.to_owned(),
        })
    }

    /// Lets a query scanning `rows` layer rows run: at once when small or a permit is
    /// free, after waiting in line otherwise, refused when the line is full. The
    /// caller bounds the wait by the request's deadline.
    pub async fn admit(&self, rows: usize, caller: &str) -> Result<Ticket, Error> {
        if rows <= self.limits.small_rows {
            return Ok(Ticket {
                _permit: None,
                _caller: None,
            });
        }
        let slot = self.caller_slot(caller)?;
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Ticket {
                _permit: Some(permit),
                _caller: Some(slot),
            });
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if queued >= self.limits.queued {
            return Err(Error::Overloaded {
                running: self.limits.concurrent,
                queued,
                retry_after: retry_hint(queued, self.limits.concurrent),
            });
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::NotReady)?;
        Ok(Ticket {
            _permit: Some(permit),
            _caller: Some(slot),
        })
    }
}

/// The name a request's limits and page tokens are kept per: the authenticated
/// caller's name (the auth layer puts an `Arc<Caller>` into the request's extensions),
/// and `"anonymous"` when access control is off, so that all callers share one budget.
pub fn caller_key(extensions: &http::Extensions) -> String {
    extensions
        .get::<std::sync::Arc<crate::auth::Caller>>()
        .map_or_else(|| "anonymous".to_owned(), |caller| caller.name.clone())
}

/// A wait worth suggesting: the line's length in turns of ~50 ms, at least 100 ms.
fn retry_hint(queued: usize, running: usize) -> Duration {
    let turns = queued / running.max(1) + 1;
    Duration::from_millis((turns as u64 * 50).clamp(100, 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_queries_skip_the_line_and_a_full_line_refuses() {
        let gate = Admission::new(Limits {
            concurrent: 1,
            queued: 1,
            small_rows: 10,
            per_caller: 10,
        });
        let running = gate.admit(100, "a").await.unwrap_or_else(|e| panic!("{e}"));
        // Small: through at once although the permit is taken.
        assert!(gate.admit(5, "a").await.is_ok());
        // One may wait ...
        let gate = Arc::new(gate);
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit(100, "a").await.map(|_| ()) })
        };
        while gate.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // ... the next is refused with a hint.
        match gate.admit(100, "a").await {
            Err(Error::Overloaded { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_millis(100))
            }
            other => panic!("{other:?}"),
        }
        drop(running);
        assert!(
            waiter.await.is_ok_and(|r| r.is_ok()),
            "the waiter runs next"
        );
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
        assert!(
            gate.callers.lock().is_ok_and(|c| c.is_empty()),
            "every slot given back"
        );
    }

    #[tokio::test]
    async fn one_caller_cannot_fill_the_line() {
        let gate = Arc::new(Admission::new(Limits {
            concurrent: 1,
            queued: 100,
            small_rows: 0,
            per_caller: 2,
        }));
        let running = gate
            .admit(1, "greedy")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit(1, "greedy").await.map(|_| ()) })
        };
        while gate.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The greedy caller is at its limit ...
        match gate.admit(1, "greedy").await {
            Err(Error::CallerOverloaded { held, .. }) => assert_eq!(held, 2),
            other => panic!("{other:?}"),
        }
        // ... another caller still gets in line.
        let other = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.admit(1, "polite").await.map(|_| ()) })
        };
        drop(running);
        assert!(waiter.await.is_ok_and(|r| r.is_ok()));
        assert!(other.await.is_ok_and(|r| r.is_ok()));
    }
}
