//! The one DataFusion session of the process: configuration, runtime and caches.

use std::{num::NonZeroUsize, sync::Arc};

use datafusion::{
    execution::{
        SessionStateBuilder,
        cache::cache_manager::CacheManagerConfig,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::{GreedyMemoryPool, TrackConsumersPool},
        runtime_env::{RuntimeEnv, RuntimeEnvBuilder},
    },
    optimizer::{
        optimize_projections::OptimizeProjections, push_down_filter::PushDownFilter,
        simplify_expressions::SimplifyExpressions,
    },
    physical_optimizer::{
        combine_partial_final_agg::CombinePartialFinalAggregate, ensure_coop::EnsureCooperative,
        ensure_requirements::EnsureRequirements, projection_pushdown::ProjectionPushdown,
        sanity_checker::SanityCheckPlan,
    },
    prelude::{SessionConfig, SessionContext},
};

/// The DataFusion cache settings of the session: every file cache off.
///
/// DataFusion 55 caches directory listings (forever, by default), parquet footers and
/// file statistics, validating the last two by size and modification time only. Export
/// files are rewritten in place under the same key, and S3 modification times have
/// whole seconds, so a same-size rewrite within a second would be served from a footer
/// of the previous content. The catalog reads a file only when its fingerprint (ETag,
/// size, time) changed, so the caches would save at most one footer read per changed
/// file; correctness wins.
pub fn cache_config() -> CacheManagerConfig {
    CacheManagerConfig::default()
        .with_list_files_cache(None)
        .with_list_files_cache_limit(0)
        .with_file_statistics_cache(None)
        .with_file_statistics_cache_limit(0)
        .with_file_metadata_cache(None)
        .with_metadata_cache_limit(0)
}

/// The one DataFusion session of the process, shared by every request so that its
/// object store registry lives as long as the server.
pub fn session() -> SessionContext {
    session_with(None)
}

/// [`session`] with `partitions` (default: one per core) for each query plan.
pub fn session_with(partitions: Option<usize>) -> SessionContext {
    let mut config = SessionConfig::new().with_information_schema(false);
    if let Some(n) = partitions {
        config = config.with_target_partitions(n.max(1));
    }
    // A file is read by one task, in file order: the load runs files in parallel
    // instead, and line items without an id get the same fallback id on every read
    // (allocation ties are broken by id).
    config.options_mut().optimizer.repartition_file_scans = false;
    // Query plans are small and built per request: one optimizer pass finds what the
    // rules find (pushing filters and projections into the layer scans), and the passes
    // after it only confirmed nothing changed, at a tenth of a request's CPU each.
    config.options_mut().optimizer.max_passes = 1;
    // Plain Utf8 keeps the normalize step's casts cheap; views buy nothing there.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let runtime: Arc<RuntimeEnv> = RuntimeEnvBuilder::new()
        .with_cache_manager(cache_config())
        .build_arc()
        .unwrap_or_else(|e| {
            // Building a runtime from these settings does not fail; keep serving with
            // DataFusion's defaults rather than not at all, and say so.
            tracing::error!("cannot build the DataFusion runtime with caches off: {e}");
            Default::default()
        });
    with_narrow(config, runtime)
}

/// A session of `config` on `runtime`, with its [`NarrowSession`] on the same runtime
/// (so that both share object stores and the query memory pool).
fn with_narrow(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let narrow = narrow_session(config.clone(), runtime.clone());
    let config = config.with_extension(Arc::new(NarrowSession(narrow)));
    SessionContext::new_with_config_rt(config, runtime)
}

/// `base` (its settings and object stores) with a memory pool of `bytes` shared by
/// every query, or `base` itself when `bytes` is 0. Queries over in-memory layers have
/// nothing worth spilling to disk, so spilling is off: an operator that needs more than
/// the pool has fails the query with DataFusion's ResourcesExhausted, which the service
/// answers with RESOURCE_EXHAUSTED. The pool names the three largest consumers in that
/// error (logged).
pub fn with_query_memory(base: &SessionContext, bytes: usize) -> SessionContext {
    if bytes == 0 {
        return base.clone();
    }
    let top = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    let runtime = RuntimeEnvBuilder::from_runtime_env(&base.runtime_env())
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(bytes),
            top,
        )))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc();
    match runtime {
        Ok(runtime) => with_narrow(base.copied_config(), runtime),
        Err(e) => {
            tracing::error!("cannot cap query memory, queries run without a cap: {e}");
            base.clone()
        }
    }
}

/// The session for plans that read few layer rows, kept in the main session's config
/// (see [`narrow`]). It plans for one partition, so no repartition and no second
/// aggregation step, and it runs only the optimizer rules such plans gain from.
///
/// Planning was two thirds of the CPU of a typical answer under load: DataFusion's
/// full rule lists walk every plan for joins to reorder, distributions to enforce and
/// statistics to compute, little of which applies to a plan in one partition whose
/// joins build on the side the planner picks for one partition. What is kept:
/// expression simplification, filter merging and column pruning (logical); the
/// distribution each operator requires (a union of layer pieces has a partition per
/// piece, which an aggregation or a join must see merged), one aggregation step instead
/// of two, projections into the scans, cooperative yielding and the sanity check
/// (physical).
pub struct NarrowSession(SessionContext);

impl std::fmt::Debug for NarrowSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NarrowSession")
            .field(&self.0.session_id())
            .finish()
    }
}

fn narrow_session(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(config.with_target_partitions(1))
        .with_runtime_env(runtime)
        .with_default_features()
        .with_optimizer_rules(vec![
            Arc::new(SimplifyExpressions::new()),
            Arc::new(PushDownFilter::new()),
            Arc::new(OptimizeProjections::new()),
        ])
        .with_physical_optimizer_rules(vec![
            Arc::new(EnsureRequirements::new()),
            Arc::new(CombinePartialFinalAggregate::new()),
            Arc::new(ProjectionPushdown::new()),
            Arc::new(EnsureCooperative::new()),
            Arc::new(SanityCheckPlan::new()),
        ])
        .build();
    SessionContext::new_with_state(state)
}

/// The one-partition session made with `ctx` by [`session_with`], if `ctx` has one.
pub fn narrow(ctx: &SessionContext) -> Option<SessionContext> {
    let state = ctx.state_ref();
    let state = state.read();
    let narrow = state.config().get_extension::<NarrowSession>()?;
    Some(narrow.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_caches_no_listing_footer_or_statistics() {
        let ctx = session();
        let caches = &ctx.runtime_env().cache_manager;
        assert!(caches.get_list_files_cache().is_none());
        assert!(caches.get_file_statistic_cache().is_none());
        assert_eq!(caches.get_metadata_cache_limit(), 0);
    }
}
