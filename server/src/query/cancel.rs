//! Stopping a query's DataFusion work when its request ends (deadline passed, caller
//! gone).
//!
//! Aborting a tokio task takes effect only when the task next yields, and DataFusion's
//! operators over in-memory layers yield rarely: a hash aggregate polls its input until
//! the input is exhausted, and the input batches are always ready. Measured on the demo
//! export, an hourly question kept computing ~3 s after its 25 ms deadline had passed and
//! its task had been aborted. So every leaf of the physical plan is wrapped in
//! [`CancelExec`], whose stream checks the request's [`Cancel`] before each batch it hands
//! up and ends the query with an error once it is cancelled: the operators above stop
//! within one batch of work.
//!
//! The query pool sets the [`Cancel`] of a request as a task-local ([`scope`]); the plan
//! is guarded where it is executed ([`collect`]), so code that plans queries needs no
//! parameter for it.
//!
//! What cannot be interrupted is a synchronous step already under way: physical
//! planning, or one batch of an operator. A query past its deadline stops at the end of
//! that step.
//!
//! What cannot be interrupted is a synchronous step already under way: physical
//! planning, or one batch of an operator. A query past its deadline stops at the end of
//! that step.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use datafusion::{
    arrow::record_batch::RecordBatch,
    common::tree_node::{Transformed, TreeNode, TreeNodeRecursion},
    error::{DataFusionError, Result},
    execution::{SendableRecordBatchStream, TaskContext},
    physical_expr::PhysicalExpr,
    physical_plan::{
        DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
        stream::RecordBatchStreamAdapter,
    },
    prelude::DataFrame,
};
use futures::StreamExt;

/// Whether the request a query runs for has ended.
#[derive(Debug, Clone)]
pub struct Cancel {
    deadline: Instant,
    flag: Arc<AtomicBool>,
}

impl Cancel {
    /// Ends at `deadline`, or earlier through [`Cancel::cancel`].
    pub fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            flag: Arc::default(),
        }
    }

    /// Ends it now (the caller went away).
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether it has ended.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

tokio::task_local! {
    static CURRENT: Cancel;
}

/// Runs `work` with `cancel` as the cancellation of every plan it collects.
pub async fn scope<F: Future>(cancel: Cancel, work: F) -> F::Output {
    CURRENT.scope(cancel, work).await
}

/// The cancellation of the request being served by this task, if any.
pub fn current() -> Option<Cancel> {
    CURRENT.try_with(Cancel::clone).ok()
}

/// Runs `df` to the end like [`DataFrame::collect`], stopping within a batch of work
/// once the task's [`Cancel`] (if any) has ended.
pub async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>> {
    let cancelled = || {
        current().is_some_and(|c| c.is_cancelled()).then(|| {
            DataFusionError::Execution("the query was cancelled: its request ended".into())
        })
    };
    // Physical planning is synchronous (about a second for an hourly question over the
    // demo export in a debug build): not started for a request already over.
    if let Some(e) = cancelled() {
        return Err(e);
    }
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    if let Some(e) = cancelled() {
        return Err(e);
    }
    let plan = match current() {
        Some(cancel) => guard(plan, &cancel)?,
        None => plan,
    };
    datafusion::physical_plan::collect(plan, task_ctx).await
}

/// `plan` with every leaf wrapped in a [`CancelExec`] of `cancel`.
pub fn guard(plan: Arc<dyn ExecutionPlan>, cancel: &Cancel) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.children().is_empty() {
            let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CancelExec {
                properties: node.properties().clone(),
                input: node,
                cancel: cancel.clone(),
            });
            Ok(Transformed::yes(wrapped))
        } else {
            Ok(Transformed::no(node))
        }
    })
    .map(|t| t.data)
}

/// Passes its input's batches on until its [`Cancel`] ends, then fails the query.
#[derive(Debug)]
pub struct CancelExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    cancel: Cancel,
}

impl DisplayAs for CancelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CancelExec")
    }
}

impl ExecutionPlan for CancelExec {
    fn name(&self) -> &str {
        "CancelExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input]: [Arc<dyn ExecutionPlan>; 1] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("CancelExec takes exactly one child".into()))?;
        Ok(Arc::new(Self {
            properties: input.properties().clone(),
            input,
            cancel: self.cancel.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let cancel = self.cancel.clone();
        let guarded = stream.map(move |batch| {
            if cancel.is_cancelled() {
                Err(DataFusionError::Execution(
                    "the query was cancelled: its request ended".into(),
                ))
            } else {
                batch
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, guarded)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::{
        arrow::{array::Int64Array, datatypes::Schema},
        prelude::SessionContext,
    };

    use super::*;

    fn df(ctx: &SessionContext) -> DataFrame {
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from_iter_values(0..1000)) as _,
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let batches = vec![batch; 50];
        let schema: Arc<Schema> = batches[0].schema();
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
            .unwrap_or_else(|e| panic!("{e}"));
        ctx.read_table(Arc::new(table))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_cancelled_plan_fails_and_a_live_one_answers() {
        let ctx = SessionContext::new();
        let live = Cancel::new(Instant::now() + Duration::from_secs(60));
        let rows: usize = scope(live, collect(df(&ctx)))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 50_000);
        let ended = Cancel::new(Instant::now() + Duration::from_secs(60));
        ended.cancel();
        let r = scope(ended, collect(df(&ctx))).await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("cancelled")),
            "{r:?}"
        );
        // Outside a request scope nothing is guarded.
        assert!(collect(df(&ctx)).await.is_ok());
    }
}
