//! One structured audit event per call (tracing target `audit`): who asked what, and
//! what came back. The RPC layer ([`crate::telemetry::rpc`]) opens a record per
//! request and emits it when the call ends, with the code and duration it already
//! measures; the auth layer adds the caller, the handler the range, filters and rows.
//! Credentials never enter it.

use std::{
    fmt::Write as _,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    account::AccountId,
    query::{Filter, QuerySpec},
};

/// The audit record of one call, shared by the layers and the handler.
#[derive(Debug, Default)]
pub struct Audit {
    fields: Mutex<Fields>,
}

#[derive(Debug, Default)]
struct Fields {
    caller: Option<String>,
    range: Option<String>,
    filters: Option<String>,
    rows: Option<usize>,
}

tokio::task_local! {
    static CURRENT: Arc<Audit>;
}

impl Audit {
    fn with(&self, f: impl FnOnce(&mut Fields)) {
        match self.fields.lock() {
            Ok(mut fields) => f(&mut fields),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Names the authenticated caller.
    pub fn set_caller(&self, name: &str) {
        self.with(|f| f.caller = Some(name.to_owned()));
    }

    /// Writes the event: `rpc` is `package.Service/Method`, `method` its last part,
    /// `code` the gRPC code's name. Also counts the call under the caller's name in
    /// [`crate::telemetry::metrics::CALLER_REQUESTS`].
    pub fn emit(&self, rpc: &str, method: &'static str, code: &'static str, elapsed: Duration) {
        self.with(|f| {
            crate::telemetry::metrics::caller_call(f.caller.as_deref(), method, code);
            tracing::info!(
                target: "audit",
                caller = f.caller.as_deref().unwrap_or("-"),
                rpc,
                range = f.range.as_deref().unwrap_or("-"),
                filters = f.filters.as_deref().unwrap_or("-"),
                rows = f.rows.map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX)),
                code,
                duration_ms = elapsed.as_millis() as u64,
                "call"
            );
        });
    }
}

/// Runs `call` with `audit` as the record the handler writes to.
pub fn scope<F: Future>(audit: Arc<Audit>, call: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(audit, call)
}

fn current(f: impl FnOnce(&mut Fields)) {
    let _ = CURRENT.try_with(|audit| audit.with(f));
}

/// Records a query's range and filters on the current call's audit record.
pub fn record_spec(spec: &QuerySpec) {
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let range = format!("{}/{}", time(spec.start), time(spec.end));
    let filters = describe(&spec.filter);
    current(|f| {
        f.range = Some(range);
        f.filters = Some(filters);
    });
}

/// Records the rows a call returns on its audit record.
pub fn record_rows(rows: usize) {
    current(|f| f.rows = Some(rows));
}

/// A filter for people, e.g. `account_ids=[210987654321];tags=[team:search|untagged]`;
/// `none` when it restricts nothing.
pub fn describe(filter: &Filter) -> String {
    let mut out = String::new();
    let mut list = |name: &str, values: &mut dyn Iterator<Item = String>| {
        let values: Vec<String> = values.collect();
        if !values.is_empty() {
            if !out.is_empty() {
                out.push(';');
            }
            let _ = write!(out, "{name}=[{}]", values.join(","));
        }
    };
    let quoted = |v: &String| format!("{v:?}");
    let account = |v: &AccountId| format!("{v:?}");
    list("account_ids", &mut filter.account_ids.iter().map(account));
    list(
        "payer_account_ids",
        &mut filter.payer_account_ids.iter().map(account),
    );
    list("principals", &mut filter.principals.iter().map(quoted));
    list("models", &mut filter.models.iter().map(quoted));
    list("regions", &mut filter.regions.iter().map(quoted));
    list(
        "line_item_types",
        &mut filter.line_item_types.iter().map(quoted),
    );
    list(
        "usage_categories",
        &mut filter.usage_categories.iter().map(|u| format!("{u:?}")),
    );
    list(
        "routings",
        &mut filter.routings.iter().map(|r| format!("{r:?}")),
    );
    list(
        "tags",
        &mut filter.tags.iter().map(|t| {
            let mut values: Vec<String> = t.values.iter().map(quoted).collect();
            if t.untagged {
                values.push("untagged".into());
            }
            format!("{:?}:{}", t.key, values.join("|"))
        }),
    );
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{query::TagFilter, rules::usage::Routing};

    #[test]
    fn filters_for_people() {
        assert_eq!(describe(&Filter::default()), "none");
        let f = Filter {
            account_ids: vec![crate::account::test_id("210987654321")],
            routings: vec![Routing::CrossRegionGeographic, Routing::InRegion],
            tags: vec![TagFilter {
                key: "team".into(),
                values: vec!["search".into()],
                untagged: true,
            }],
            ..Default::default()
        };
        assert_eq!(
            describe(&f),
            r#"account_ids=["210987654321"];routings=[CrossRegionGeographic,InRegion];tags=["team":"search"|untagged]"#
        );
    }
}
