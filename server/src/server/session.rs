//! The one DataFusion session of the process: configuration, runtime and caches.

use std::{num::NonZeroUsize, sync::Arc};

use datafusion::{
    execution::{
        cache::cache_manager::CacheManagerConfig,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::{GreedyMemoryPool, TrackConsumersPool},
        runtime_env::RuntimeEnvBuilder,
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
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(cache_config())
        .build_arc()
        .unwrap_or_else(|e| {
            // Building a runtime from these settings does not fail; keep serving with
            // DataFusion's defaults rather than not at all, and say so.
            tracing::error!("cannot build the DataFusion runtime with caches off: {e}");
            Default::default()
        });
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
        Ok(runtime) => SessionContext::new_with_config_rt(base.copied_config(), runtime),
        Err(e) => {
            tracing::error!("cannot cap query memory, queries run without a cap: {e}");
            base.clone()
        }
    }
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
