//! The tonic adapter: validate, convert to domain types, query, convert back. No query
//! logic lives here. Each handler records its range, grouping and rows on the RPC's
//! span ([`telemetry::rpc`]); answer-cache lookups, admission (waits, sheds) and rows
//! scanned are counted here, around the calls that decide them.

pub mod admission;
pub mod anomalies;
pub mod budget_watch;
mod budgets;
pub mod convert;
pub mod deadline;
pub mod pool;
pub mod status;

use std::{sync::Arc, time::Duration};

use bedrock_attribution::v1::{self as pb, attribution_service_server::AttributionService};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{
    auth::{Caller, Scope, audit, caller_of},
    budgets::store::BudgetStore,
    catalog::Catalog,
    error::Error,
    period::BillingPeriod,
    query::{
        self, Dimension, QuerySpec,
        cache::AnswerCache,
        discovery,
        page::{self, PageKeys},
        tag_notes,
    },
    snapshot::Snapshot,
    telemetry::{self, rpc::record_rows, rpc::record_spec},
};

/// Answers the `AttributionService` RPCs from the catalog's current snapshot.
#[derive(Debug, Clone)]
pub struct AttributionApi {
    catalog: Arc<Catalog>,
    query_timeout: Duration,
    answers: Arc<AnswerCache>,
    admission: Arc<admission::Admission>,
    /// Layer rows up to which a query never waits (not counted as waiting).
    small_rows: usize,
    /// Authenticates page tokens.
    page_keys: Arc<PageKeys>,
    /// The longest time range a request may span (`--max-range`).
    max_range: Duration,
    /// Where queries run, apart from the serving runtime.
    pool: Arc<pool::QueryPool>,
    /// Budget definitions (none, and nowhere to keep new ones, unless configured).
    budgets: Arc<BudgetStore>,
    /// Most budgets a caller other than an admin may create (`--max-budgets-per-caller`).
    budget_quota: usize,
    /// Open WatchBudgets streams.
    watches: Arc<budget_watch::WatchSlots>,
    /// Turns true at shutdown: long-lived streams end then, so that they do not hold
    /// the drain open.
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// The callers file, when access control is on: open streams end when their
    /// caller's entry changes.
    auth_file: Option<Arc<crate::auth::AuthFile>>,
}

/// The parts shared by the three grouped answers.
struct Grouped {
    rows: Vec<pb::Row>,
    next_page_token: String,
    totals: Vec<pb::Money>,
    total_tokens: pb::Tokens,
    info: pb::AnswerInfo,
    cache_savings: Vec<pb::Money>,
}

/// The longest time range a request may span unless `--max-range` says otherwise: five
/// years (of 366 days, so any five calendar years fit).
pub const DEFAULT_MAX_RANGE: Duration = Duration::from_secs(5 * 366 * 86_400);

/// The key of a request's answer in the cache and in its page tokens: the RPC, the
/// request without its paging fields, and the caller's scope, so that two scopes never
/// share an answer or a page token. A cryptographic hash, so that no request can be
/// crafted to collide with another caller's.
fn fingerprint<M: Message + Clone>(
    rpc: &str,
    message: &M,
    scope: &Scope,
    clear: impl FnOnce(&mut M),
) -> u64 {
    use sha2::{Digest, Sha256};
    let mut m = message.clone();
    clear(&mut m);
    let mut h = Sha256::new();
    for part in [rpc.as_bytes(), &m.encode_to_vec(), &scope.canonical()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Remarks on periods in the range that lack columns the dimensions need.
fn notes(snapshot: &Snapshot, spec: &QuerySpec) -> Vec<String> {
    let (start, end) = (spec.start.timestamp_micros(), spec.end.timestamp_micros());
    let lacking = |column: &str| -> Vec<String> {
        snapshot
            .periods
            .iter()
            .filter(|p| p.overlaps(start, end) && p.missing_columns.iter().any(|c| c == column))
            .map(|p| p.period.to_string())
            .collect()
    };
    let mut notes = Vec::new();
    let uncovered = uncovered_months(snapshot, start, end);
    if !uncovered.is_empty() {
        let shown: Vec<&str> = uncovered.iter().take(6).map(String::as_str).collect();
        let more = uncovered.len().saturating_sub(shown.len());
        notes.push(format!(
            "no billing period of the exports covers {}{}: the answer holds no spend for {}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more months")
            } else {
                String::new()
            },
            if uncovered.len() == 1 { "it" } else { "them" }
        ));
    }
    let principals = spec
        .dimensions
        .iter()
        .any(|d| matches!(d, Dimension::Principal(_)))
        || !spec.filter.principals.is_empty();
    let caller_less = lacking("line_item_iam_principal");
    if principals && !caller_less.is_empty() {
        notes.push(format!(
            "billing periods {} have no caller identity column; their spend is UNATTRIBUTED",
            caller_less.join(", ")
        ));
    }
    let tags = spec
        .dimensions
        .iter()
        .any(|d| matches!(d, Dimension::Tag(_)))
        || !spec.filter.tags.is_empty();
    let tag_less = lacking("tags");
    if tags && !tag_less.is_empty() {
        notes.push(format!(
            "billing periods {} have no tags column; their spend is UNTAGGED",
            tag_less.join(", ")
        ));
    }
    notes
}

/// The calendar months touching `[start, end)` (µs) that no period of the snapshot, served
/// or unavailable, is named after.
fn uncovered_months(snapshot: &Snapshot, start: i64, end: i64) -> Vec<String> {
    let known = |period: BillingPeriod| {
        snapshot.periods.iter().any(|p| p.period == period)
            || snapshot
                .unavailable
                .iter()
                .any(|u| u.period == Some(period))
    };
    let mut out = Vec::new();
    let mut month = BillingPeriod::containing(start);
    while let Some(period) = month.filter(|p| p.span_micros().0 < end && out.len() < 1200) {
        if !known(period) {
            out.push(period.to_string());
        }
        month = period.next();
    }
    out
}

impl AttributionApi {
    /// An API over `catalog`; each query gets at most `query_timeout` (or the caller's
    /// shorter deadline), waiting included, and large ones run within `limits`; page
    /// tokens are authenticated with `page_keys`; queries run on `pool`.
    pub fn new(
        catalog: Arc<Catalog>,
        query_timeout: Duration,
        limits: admission::Limits,
        page_keys: PageKeys,
        pool: Arc<pool::QueryPool>,
    ) -> Self {
        Self {
            pool,
            catalog,
            query_timeout,
            answers: Arc::default(),
            admission: Arc::new(admission::Admission::new(limits)),
            small_rows: limits.small_rows,
            page_keys: Arc::new(page_keys),
            max_range: DEFAULT_MAX_RANGE,
            budgets: BudgetStore::open(None, crate::budgets::store::StateFile::Nowhere),
            budget_quota: usize::from(crate::budgets::DEFAULT_BUDGETS_PER_CALLER),
            watches: Arc::default(),
            shutdown: None,
            auth_file: None,
        }
    }

    /// Ends long-lived streams when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Holds open streams to the callers of `file` as it is reloaded.
    pub fn with_auth_file(mut self, file: Option<Arc<crate::auth::AuthFile>>) -> Self {
        self.auth_file = file;
        self
    }

    /// Serves the budgets of `store`.
    pub fn with_budgets(mut self, store: Arc<BudgetStore>) -> Self {
        self.budgets = store;
        self
    }

    /// Lets each caller other than an admin create at most `quota` budgets
    /// (`--max-budgets-per-caller`).
    pub fn with_budget_quota(mut self, quota: usize) -> Self {
        self.budget_quota = quota;
        self
    }

    /// Bounds the answer cache to `bytes` (`--answer-cache-bytes`, estimated).
    pub fn with_answer_cache_bytes(mut self, bytes: usize) -> Self {
        self.answers = Arc::new(AnswerCache::with_max_bytes(bytes));
        self
    }

    /// The answer cache, for the server to empty when a new snapshot is served.
    pub fn answer_cache(&self) -> Arc<AnswerCache> {
        self.answers.clone()
    }

    /// Refuses time ranges longer than `max_range` (`--max-range`).
    pub fn with_max_range(mut self, max_range: Duration) -> Self {
        self.max_range = max_range;
        self
    }

    /// The domain spec of a request (the handler records it on the RPC's span once final).
    /// The domain spec of a request, held to the scope of its caller (the handler
    /// records it on the RPC's span once final). A filter reaching outside the scope is
    /// refused.
    fn spec(
        &self,
        caller: Option<&Caller>,
        range: Option<&pb::TimeRange>,
        filter: Option<&pb::Filter>,
        metric: i32,
        granularity: i32,
        dimensions: Vec<Dimension>,
    ) -> Result<QuerySpec, Error> {
        let (start, end) = convert::time_range(range, self.max_range)?;
        let mut spec = QuerySpec {
            start,
            end,
            filter: convert::filter(filter)?,
            metric: convert::metric(metric)?,
            granularity: convert::granularity(granularity)?,
            dimensions,
            allocation: false,
            efficiency: false,
            scope: Scope::default(),
        };
        audit::record_spec(&spec);
        if let Some(caller) = caller {
            caller.scope.check(&spec.filter, &caller.name)?;
            spec.scope = caller.scope.clone();
        }
        Ok(spec)
    }

    /// Runs `work` on the query pool, after admission, within the request's deadline
    /// (the caller's `grpc-timeout` or `--query-timeout`, whichever is shorter; waiting
    /// in line included). At the deadline the work is aborted and DEADLINE_EXCEEDED
    /// returned; work finishing after it is not answered.
    async fn on_pool<T, R, F, Fut>(
        &self,
        request: &Request<R>,
        snapshot: &Arc<Snapshot>,
        spec: &QuerySpec,
        work: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(datafusion::prelude::SessionContext, Arc<Snapshot>, QuerySpec) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send,
    {
        let deadline = tokio::time::Instant::now()
            + deadline::effective(request.metadata(), self.query_timeout);
        let caller = admission::caller_key(request.extensions());
        let rows = query::plan::rows_to_scan(snapshot, spec)?;
        let (admission, small_rows) = (self.admission.clone(), self.small_rows);
        let (ctx, snapshot, spec) = (
            self.catalog.session().clone(),
            snapshot.clone(),
            spec.clone(),
        );
        self.pool
            .run(deadline, async move {
                let _admitted = admit(&admission, small_rows, rows, &caller).await?;
                count_scan(&snapshot, &spec, rows);
                work(ctx, snapshot, spec).await
            })
            .await
    }

    async fn grouped<T>(
        &self,
        request: &Request<T>,
        spec: QuerySpec,
        page_size: i32,
        page_token: &str,
        fingerprint: u64,
        per_million: bool,
    ) -> Result<Grouped, Error> {
        let snapshot = self.catalog.require_snapshot()?;
        let caller = admission::caller_key(request.extensions());
        let page = self.page_keys.request(
            page_size,
            page_token,
            snapshot.version,
            fingerprint,
            &caller,
        )?;
        let answer = self.answer(request, &snapshot, &spec, fingerprint).await?;
        let mut notes = notes(&snapshot, &spec);
        notes.extend(
            self.tag_key_notes(request, &snapshot, &spec, &answer)
                .await?,
        );
        let rows = page::slice(&answer.rows, page)
            .iter()
            .map(|group| {
                let mut row = convert::row(group, &spec);
                if per_million {
                    let all = group.tokens.total();
                    row.cost_per_million_tokens = group
                        .cost
                        .per_million_tokens(all)
                        .map(|a| convert::money(&group.currency, a));
                }
                if spec.efficiency {
                    convert::efficiency(&mut row, group);
                }
                row
            })
            .collect();
        Ok(Grouped {
            rows,
            next_page_token: self.page_keys.next_token(
                page,
                answer.rows.len(),
                snapshot.version,
                fingerprint,
                &caller,
            ),
            totals: answer
                .totals
                .iter()
                .map(|(c, a)| convert::money(c, *a))
                .collect(),
            total_tokens: convert::tokens(answer.tokens),
            info: pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes,
            },
            cache_savings: answer
                .cache_savings
                .iter()
                .map(|(c, a)| convert::money(c, a.rounded()))
                .collect(),
        })
    }

    /// Notes for the tag keys of `spec` that `answer` found no value of (see
    /// [`query::tag_notes`]); the range's keys are looked up only then.
    async fn tag_key_notes<T>(
        &self,
        request: &Request<T>,
        snapshot: &Arc<Snapshot>,
        spec: &QuerySpec,
        answer: &query::Answer,
    ) -> Result<Vec<String>, Error> {
        let unfound = tag_notes::unfound_keys(spec, answer);
        if unfound.is_empty() {
            return Ok(Vec::new());
        }
        let range = tag_notes::range_spec(spec);
        let (keys, _) = self
            .on_pool(request, snapshot, &range, |ctx, snapshot, spec| async move {
                discovery::tag_keys(&ctx, &snapshot, &spec).await
            })
            .await?;
        Ok(tag_notes::notes(spec, &unfound, &keys))
    }

    async fn run_discovery<T>(
        &self,
        request: &Request<T>,
        spec: &QuerySpec,
        fingerprint: u64,
    ) -> Result<(Arc<Snapshot>, Arc<query::Answer>), Error> {
        let snapshot = self.catalog.require_snapshot()?;
        let answer = self.answer(request, &snapshot, spec, fingerprint).await?;
        Ok((snapshot, answer))
    }

    /// The whole answer of a spec on a snapshot: from the cache when an earlier page of
    /// the same request computed it, else run within the request's deadline.
    async fn answer<T>(
        &self,
        request: &Request<T>,
        snapshot: &Arc<Snapshot>,
        spec: &QuerySpec,
        fingerprint: u64,
    ) -> Result<Arc<query::Answer>, Error> {
        let cached = self.answers.get(snapshot.version, fingerprint);
        telemetry::metrics::answer_cache(cached.is_some());
        if let Some(answer) = cached {
            return Ok(answer);
        }
        let answer = self
            .on_pool(request, snapshot, spec, |ctx, snapshot, spec| async move {
                query::run(&ctx, &snapshot, &spec).await
            })
            .await?;
        // Only an answer within its deadline gets here, so only those are kept.
        let answer = Arc::new(answer);
        self.answers
            .put(snapshot.version, fingerprint, answer.clone());
        Ok(answer)
    }
}

/// Admission of a query reading `rows` layer rows, counted: a large query's wait
/// (however it ends), a refusal as shed, and the query as running while the returned
/// guard lives.
async fn admit(
    admission: &admission::Admission,
    small_rows: usize,
    rows: usize,
    caller: &str,
) -> Result<(admission::Ticket, telemetry::metrics::Running), Error> {
    let waiting = (rows > small_rows).then(telemetry::metrics::Waiting::start);
    let admitted = admission.admit(rows, caller).await;
    drop(waiting);
    match admitted {
        Ok(ticket) => Ok((ticket, telemetry::metrics::Running::start())),
        Err(e) => {
            if let Error::Overloaded { .. } | Error::CallerOverloaded { .. } = e {
                telemetry::metrics::shed();
            }
            Err(e)
        }
    }
}

/// Counts the layer rows a query reads, in all and by grain.
fn count_scan(snapshot: &Snapshot, spec: &QuerySpec, rows: usize) {
    let used = query::plan::layer_use(snapshot, spec).unwrap_or_default();
    telemetry::metrics::rows_scanned(rows, used.fine, used.daily, used.monthly);
}

/// Refuses a non-admin caller. The auth layer already does, by path; this keeps the
/// rule true for any other way the service is mounted.
fn require_admin<T>(request: &Request<T>, rpc: &str) -> Result<(), Error> {
    match caller_of(request) {
        Some(caller) if !caller.admin => Err(Error::PermissionDenied {
            what: rpc.to_owned(),
            reason: format!(
                "needs an admin caller, and caller {} is not one",
                caller.name
            ),
        }),
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl AttributionService for AttributionApi {
    async fn cost_by_principal(
        &self,
        request: Request<pb::CostByPrincipalRequest>,
    ) -> Result<Response<pb::CostByPrincipalResponse>, Status> {
        let r = request.get_ref();
        let grouping = convert::grouping("grouping", r.grouping)?;
        let mut dimensions = vec![Dimension::Principal(grouping)];
        dimensions.extend(convert::dimensions(
            "also_group_by",
            &r.also_group_by,
            "also_group_by_tag_key",
            &r.also_group_by_tag_key,
            grouping,
        )?);
        let mut spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            r.cost_metric,
            r.granularity,
            dimensions,
        )?;
        spec.allocation = convert::allocation(r.allocation, &spec)?;
        record_spec(&spec);
        let fp = fingerprint("CostByPrincipal", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let g = self
            .grouped(&request, spec, r.page_size, &r.page_token, fp, false)
            .await?;
        record_rows("CostByPrincipal", g.rows.len());
        Ok(Response::new(pb::CostByPrincipalResponse {
            rows: g.rows,
            next_page_token: g.next_page_token,
            totals: g.totals,
            total_tokens: Some(g.total_tokens),
            info: Some(g.info),
        }))
    }

    async fn cost_by_tag(
        &self,
        request: Request<pb::CostByTagRequest>,
    ) -> Result<Response<pb::CostByTagResponse>, Status> {
        let r = request.get_ref();
        let grouping = convert::grouping("principal_grouping", r.principal_grouping)?;
        let mut dimensions = vec![Dimension::Tag(convert::tag_key("tag_key", &r.tag_key)?)];
        dimensions.extend(convert::dimensions(
            "also_group_by",
            &r.also_group_by,
            "also_group_by_tag_key",
            &r.also_group_by_tag_key,
            grouping,
        )?);
        if dimensions.iter().filter(|d| **d == dimensions[0]).count() > 1 {
            return Err(Error::invalid(
                "also_group_by_tag_key",
                "repeats tag_key; name a different key or drop DIMENSION_TAG",
            )
            .into());
        }
        let mut spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            r.cost_metric,
            r.granularity,
            dimensions,
        )?;
        spec.allocation = convert::allocation(r.allocation, &spec)?;
        record_spec(&spec);
        let fp = fingerprint("CostByTag", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let g = self
            .grouped(&request, spec, r.page_size, &r.page_token, fp, false)
            .await?;
        record_rows("CostByTag", g.rows.len());
        Ok(Response::new(pb::CostByTagResponse {
            rows: g.rows,
            next_page_token: g.next_page_token,
            totals: g.totals,
            total_tokens: Some(g.total_tokens),
            info: Some(g.info),
        }))
    }

    async fn token_usage(
        &self,
        request: Request<pb::TokenUsageRequest>,
    ) -> Result<Response<pb::TokenUsageResponse>, Status> {
        let r = request.get_ref();
        let grouping = convert::grouping("principal_grouping", r.principal_grouping)?;
        let dimensions =
            convert::dimensions("group_by", &r.group_by, "tag_key", &r.tag_key, grouping)?;
        let spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            r.cost_metric,
            r.granularity,
            dimensions,
        )?;
        let spec = QuerySpec {
            efficiency: r.efficiency,
            ..spec
        };
        record_spec(&spec);
        let fp = fingerprint("TokenUsage", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let g = self
            .grouped(&request, spec, r.page_size, &r.page_token, fp, true)
            .await?;
        record_rows("TokenUsage", g.rows.len());
        Ok(Response::new(pb::TokenUsageResponse {
            rows: g.rows,
            next_page_token: g.next_page_token,
            totals: g.totals,
            total_tokens: Some(g.total_tokens),
            info: Some(g.info),
            total_cache_read_savings: g.cache_savings,
        }))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let r = request.get_ref();
        let grouping = convert::grouping("grouping", r.grouping)?;
        let spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            0,
            0,
            vec![Dimension::Principal(grouping)],
        )?;
        record_spec(&spec);
        let fp = fingerprint("ListPrincipals", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let (snapshot, answer) = self.run_discovery(&request, &spec, fp).await?;
        let caller = admission::caller_key(request.extensions());
        let page =
            self.page_keys
                .request(r.page_size, &r.page_token, snapshot.version, fp, &caller)?;
        let all = discovery::by_first_key(&answer);
        let principals = page::slice(&all, page)
            .iter()
            .map(|(key, s)| pb::PrincipalSummary {
                principal: Some(convert::principal(key.as_deref(), grouping)),
                cost: convert::moneys(&s.cost),
                tokens: Some(convert::tokens(s.tokens)),
                line_items: s.line_items,
            })
            .collect::<Vec<_>>();
        record_rows("ListPrincipals", principals.len());
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals,
            next_page_token: self.page_keys.next_token(
                page,
                all.len(),
                snapshot.version,
                fp,
                &caller,
            ),
            info: Some(pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes: notes(&snapshot, &spec),
            }),
        }))
    }

    async fn list_tag_keys(
        &self,
        request: Request<pb::ListTagKeysRequest>,
    ) -> Result<Response<pb::ListTagKeysResponse>, Status> {
        let r = request.get_ref();
        let spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            0,
            0,
            Vec::new(),
        )?;
        let key_prefix = convert::key_prefix(&r.key_prefix)?;
        record_spec(&spec);
        let fp = fingerprint("ListTagKeys", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let snapshot = self.catalog.require_snapshot()?;
        let caller = admission::caller_key(request.extensions());
        let page =
            self.page_keys
                .request(r.page_size, &r.page_token, snapshot.version, fp, &caller)?;
        let (keys, total) = self
            .on_pool(&request, &snapshot, &spec, |ctx, snapshot, spec| async move {
                discovery::tag_keys(&ctx, &snapshot, &spec).await
            })
            .await?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|(k, _)| k.starts_with(key_prefix))
            .collect();
        let tag_keys = page::slice(&keys, page)
            .iter()
            .map(|(key, reach)| pb::TagKeySummary {
                key: key.clone(),
                line_items: reach.line_items,
                cost: convert::moneys(&reach.cost),
                distinct_values: reach.values.len() as i64,
            })
            .collect::<Vec<_>>();
        record_rows("ListTagKeys", tag_keys.len());
        Ok(Response::new(pb::ListTagKeysResponse {
            tag_keys,
            next_page_token: self.page_keys.next_token(
                page,
                keys.len(),
                snapshot.version,
                fp,
                &caller,
            ),
            total_line_items: total,
            info: Some(pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes: notes(
                    &snapshot,
                    &QuerySpec {
                        dimensions: vec![Dimension::Tag(String::new())],
                        ..spec
                    },
                ),
            }),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let r = request.get_ref();
        let spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            0,
            0,
            vec![Dimension::Model],
        )?;
        record_spec(&spec);
        let fp = fingerprint("ListModels", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let (snapshot, answer) = self.run_discovery(&request, &spec, fp).await?;
        let caller = admission::caller_key(request.extensions());
        let page =
            self.page_keys
                .request(r.page_size, &r.page_token, snapshot.version, fp, &caller)?;
        let all = discovery::by_first_key(&answer);
        let models = page::slice(&all, page)
            .iter()
            .map(|(model, s)| pb::ModelSummary {
                model: model.clone().unwrap_or_default(),
                cost: convert::moneys(&s.cost),
                tokens: Some(convert::tokens(s.tokens)),
                line_items: s.line_items,
            })
            .collect::<Vec<_>>();
        record_rows("ListModels", models.len());
        Ok(Response::new(pb::ListModelsResponse {
            models,
            next_page_token: self.page_keys.next_token(
                page,
                all.len(),
                snapshot.version,
                fp,
                &caller,
            ),
            info: Some(pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes: notes(&snapshot, &spec),
            }),
        }))
    }

    async fn data_status(
        &self,
        request: Request<pb::DataStatusRequest>,
    ) -> Result<Response<pb::DataStatusResponse>, Status> {
        require_admin(&request, "DataStatus")?;
        let snapshot = self.catalog.require_snapshot()?;
        let periods = status::periods(&snapshot, chrono::Utc::now());
        record_rows("DataStatus", periods.len());
        let schema_notes = snapshot
            .periods
            .iter()
            .filter(|p| !p.missing_columns.is_empty())
            .map(|p| {
                format!(
                    "{} {}: no {} column (read as NULL)",
                    p.source,
                    p.period,
                    p.missing_columns.join(", ")
                )
            })
            .collect();
        let allocation = snapshot
            .periods
            .iter()
            .flat_map(|p| {
                p.allocation
                    .iter()
                    .map(move |a| convert::allocation_summary(p, a))
            })
            .collect();
        Ok(Response::new(pb::DataStatusResponse {
            allocation,
            sources: snapshot.sources.clone(),
            periods,
            total_line_items: snapshot.line_items() as i64,
            last_refresh: Some(convert::time(snapshot.built_at)),
            problems: snapshot
                .problems
                .iter()
                .map(status::problem)
                .chain(self.budgets.problems().iter().map(budgets::problem))
                .collect(),
            snapshot_version: snapshot.version,
            schema_notes,
            degraded: status::degraded(&snapshot),
            periods_reread: snapshot.stats.reread as i64,
            periods_reused: snapshot.stats.reused as i64,
            refresh_duration_ms: snapshot.stats.duration_ms as i64,
            resident_bytes: (snapshot.layer_bytes() + snapshot.dicts.heap_bytes()) as i64,
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        require_admin(&request, "Refresh")?;
        let started = std::time::Instant::now();
        let snapshot = self.catalog.refresh().await?;
        Ok(Response::new(pb::RefreshResponse {
            snapshot_version: snapshot.version,
            periods: snapshot.periods.len() as i64,
            line_items: snapshot.line_items() as i64,
            problems: snapshot.problems.iter().map(status::problem).collect(),
            duration_ms: started.elapsed().as_millis() as i64,
            periods_reread: snapshot.stats.reread as i64,
            periods_reused: snapshot.stats.reused as i64,
            periods_failed: snapshot.stats.failed as i64,
        }))
    }

    async fn create_budget(
        &self,
        request: Request<pb::CreateBudgetRequest>,
    ) -> Result<Response<pb::CreateBudgetResponse>, Status> {
        self.create_budget_rpc(request).await
    }

    async fn list_budgets(
        &self,
        request: Request<pb::ListBudgetsRequest>,
    ) -> Result<Response<pb::ListBudgetsResponse>, Status> {
        self.list_budgets_rpc(request).await
    }

    async fn delete_budget(
        &self,
        request: Request<pb::DeleteBudgetRequest>,
    ) -> Result<Response<pb::DeleteBudgetResponse>, Status> {
        self.delete_budget_rpc(request).await
    }

    async fn budget_status(
        &self,
        request: Request<pb::BudgetStatusRequest>,
    ) -> Result<Response<pb::BudgetStatusResponse>, Status> {
        self.budget_status_rpc(request).await
    }

    async fn spend_anomalies(
        &self,
        request: Request<pb::SpendAnomaliesRequest>,
    ) -> Result<Response<pb::SpendAnomaliesResponse>, Status> {
        self.find_anomalies(request).await
    }

    type WatchBudgetsStream = budget_watch::EventStream;

    async fn watch_budgets(
        &self,
        request: Request<pb::WatchBudgetsRequest>,
    ) -> Result<Response<Self::WatchBudgetsStream>, Status> {
        self.watch_budgets_rpc(request).await
    }
}
