//! The query pool: a tokio runtime of its own where queries (planning, DataFusion
//! execution, turning batches into rows) run, apart from the runtime that accepts
//! connections and answers health checks and small RPCs.
//!
//! DataFusion's operators are CPU-bound between their awaits; on the serving runtime 24
//! heavy queries on 2 cores held every worker thread, and a health `Check` waited 6-7 s
//! for one (a liveness probe would have killed the pod). On their own threads they
//! compete with the serving threads only through the OS scheduler, which answers
//! health in milliseconds.
//!
//! [`QueryPool::run`] also owns the deadline: at the deadline the query's task is
//! aborted (dropping its DataFusion streams, whose spawned partition tasks abort with
//! them), and a query that finishes after its deadline is reported as
//! DEADLINE_EXCEEDED, not answered, so its answer is never cached. A caller that goes
//! away aborts the task too.

use std::{
    future::Future,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::{runtime::Runtime, task::JoinHandle, time::Instant};

use crate::{
    error::Error,
    query::cancel::{self, Cancel},
};

/// A runtime for queries.
#[derive(Debug)]
pub struct QueryPool {
    runtime: Option<Runtime>,
    handle: tokio::runtime::Handle,
    name: String,
}

/// Aborts the task and cancels its DataFusion work when the request that waits for
/// it ends, however it ends.
struct AbortOnDrop<T>(JoinHandle<T>, Cancel);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.1.cancel();
        self.0.abort();
    }
}

impl QueryPool {
    /// A pool of `threads` worker threads (at least one), named `query-N-…` so that
    /// profilers and tests can tell them apart from the serving threads.
    pub fn new(threads: usize) -> Result<Self, Error> {
        static POOLS: AtomicUsize = AtomicUsize::new(0);
        let name = format!("query-{}", POOLS.fetch_add(1, Ordering::Relaxed));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name.clone())
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidConfig {
                reason: format!("cannot start the query pool: {e}"),
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            name,
        })
    }

    /// The name of the pool's threads.
    pub fn thread_name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on the pool until it ends or `deadline` passes, whichever is first:
    /// DEADLINE_EXCEEDED when the deadline passes first or the work ends after it.
    pub async fn run<T, F>(&self, deadline: Instant, work: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        // Aborting the task stops it at its next await; the cancel stops the DataFusion
        // operators in between (see [`cancel`]).
        let stop = Cancel::new(deadline.into_std());
        let mut task = AbortOnDrop(self.handle.spawn(cancel::scope(stop.clone(), work)), stop);
        tokio::select! {
            joined = &mut task.0 => {
                // Finished, but past the deadline: the caller has given up (or is about
                // to); an answer now would only be wasted, and caching it would keep
                // work the deadline was meant to stop.
                if Instant::now() >= deadline {
                    return Err(Error::Deadline);
                }
                match joined {
                    Ok(result) => result,
                    Err(e) if e.is_cancelled() => Err(Error::Deadline),
                    Err(e) => Err(Error::Query(datafusion::error::DataFusionError::Execution(
                        format!("query task failed: {e}"),
                    ))),
                }
            }
            () = tokio::time::sleep_until(deadline) => Err(Error::Deadline),
        }
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is not allowed inside another
        // runtime (where the server drops it); queries left are cancelled instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, atomic::AtomicBool},
        time::Duration,
    };

    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_pool_and_stops_at_the_deadline() {
        let pool = QueryPool::new(1).unwrap_or_else(|e| panic!("{e}"));
        let name = pool
            .run(Instant::now() + Duration::from_secs(5), async {
                Ok(std::thread::current().name().map(str::to_owned))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name.as_deref(), Some(pool.thread_name()));

        // Past the deadline the task is aborted: it never gets to its end.
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let started = Instant::now();
        let r = pool
            .run(Instant::now() + Duration::from_millis(50), async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(r, Err(Error::Deadline)), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(250));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst), "the work was cancelled");

        // Work that ends after its deadline (CPU-bound, no await to abort at) is not
        // an answer.
        let r = pool
            .run(Instant::now() + Duration::from_millis(20), async {
                std::thread::sleep(Duration::from_millis(100));
                Ok(1)
            })
            .await;
        assert!(matches!(r, Err(Error::Deadline)), "{r:?}");
    }
}
