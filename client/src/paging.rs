//! Following `next_page_token` to the end.
//!
//! Seven RPCs page their answers the same way; [`Paged`] names the few fields that
//! differ so one loop ([`collect_pages`]) serves them all. The three grouped queries
//! share a shape, collected into [`AllRows`].

use std::future::Future;

use crate::{Error, proto};

/// Every row of a grouped answer (CostByPrincipal, CostByTag or TokenUsage), fetched
/// page by page, with the totals that the first page reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllRows {
    /// The rows of all pages, in the server's order.
    pub rows: Vec<proto::Row>,
    /// One amount per currency over everything that matched.
    pub totals: Vec<proto::Money>,
    /// Token totals over everything that matched.
    pub total_tokens: Option<proto::Tokens>,
    /// How the answer was produced (snapshot version, notes).
    pub info: Option<proto::AnswerInfo>,
}

macro_rules! all_rows_from {
    ($($response:ty),+) => {$(
        impl From<$response> for AllRows {
            fn from(response: $response) -> Self {
                AllRows {
                    rows: response.rows,
                    totals: response.totals,
                    total_tokens: response.total_tokens,
                    info: response.info,
                }
            }
        }
    )+};
}

all_rows_from!(
    proto::CostByPrincipalResponse,
    proto::CostByTagResponse,
    proto::TokenUsageResponse
);

/// A request whose answer comes in pages.
pub(crate) trait Paged: Clone {
    /// The answer to one page.
    type Response;
    /// One entry of a page.
    type Item;
    /// Asks for the page after `token`.
    fn set_page_token(&mut self, token: String);
    /// The entries of a page and its `next_page_token`.
    fn page(response: &mut Self::Response) -> (&mut Vec<Self::Item>, &mut String);
}

macro_rules! paged {
    ($($request:ty => $response:ty, $items:ident, $item:ty;)+) => {$(
        impl Paged for $request {
            type Response = $response;
            type Item = $item;
            fn set_page_token(&mut self, token: String) {
                self.page_token = token;
            }
            fn page(response: &mut $response) -> (&mut Vec<$item>, &mut String) {
                (&mut response.$items, &mut response.next_page_token)
            }
        }
    )+};
}

paged! {
    proto::CostByPrincipalRequest => proto::CostByPrincipalResponse, rows, proto::Row;
    proto::CostByTagRequest => proto::CostByTagResponse, rows, proto::Row;
    proto::TokenUsageRequest => proto::TokenUsageResponse, rows, proto::Row;
    proto::ListPrincipalsRequest => proto::ListPrincipalsResponse, principals, proto::PrincipalSummary;
    proto::ListTagKeysRequest => proto::ListTagKeysResponse, tag_keys, proto::TagKeySummary;
    proto::ListModelsRequest => proto::ListModelsResponse, models, proto::ModelSummary;
    proto::SpendAnomaliesRequest => proto::SpendAnomaliesResponse, anomalies, proto::SpendAnomaly;
}

/// Calls `call` for the first page and for every `next_page_token` after it, and
/// returns the first response holding the entries of all pages (and an empty
/// `next_page_token`). Totals and info are the first page's.
pub(crate) async fn collect_pages<R, F, Fut>(
    mut request: R,
    mut call: F,
) -> Result<R::Response, Error>
where
    R: Paged,
    F: FnMut(R) -> Fut,
    Fut: Future<Output = Result<R::Response, Error>>,
{
    let mut first = call(request.clone()).await?;
    let mut token = std::mem::take(R::page(&mut first).1);
    let mut pages = 1_usize;
    while !token.is_empty() {
        request.set_page_token(token.clone());
        let mut page = call(request.clone()).await?;
        pages += 1;
        let (items, next) = R::page(&mut page);
        if *next == token {
            return Err(Error::invalid_response(format!(
                "page {pages} returned its own page token again"
            )));
        }
        R::page(&mut first).0.append(items);
        token = std::mem::take(next);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn row(model: &str) -> proto::Row {
        proto::Row {
            model: model.to_owned(),
            ..Default::default()
        }
    }

    fn page(models: &[&str], next: &str, total: &str) -> proto::TokenUsageResponse {
        proto::TokenUsageResponse {
            rows: models.iter().map(|m| row(m)).collect(),
            next_page_token: next.to_owned(),
            totals: vec![proto::Money {
                currency_code: "USD".to_owned(),
                exact: total.to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Runs `collect_pages` against canned pages, recording the tokens asked for.
    fn run(
        pages: Vec<proto::TokenUsageResponse>,
    ) -> (Result<proto::TokenUsageResponse, Error>, Vec<String>) {
        let mut pages = VecDeque::from(pages);
        let mut asked = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let result = runtime.block_on(collect_pages(
            proto::TokenUsageRequest {
                page_size: 2,
                ..Default::default()
            },
            |req: proto::TokenUsageRequest| {
                asked.push(req.page_token.clone());
                let next = pages
                    .pop_front()
                    .ok_or_else(|| Error::from(tonic::Status::out_of_range("no more pages")));
                async move { next }
            },
        ));
        (result, asked)
    }

    #[test]
    fn follows_tokens_and_keeps_first_totals() {
        let (result, asked) = run(vec![
            page(&["a", "b"], "t1", "3"),
            page(&["c", "d"], "t2", "999"),
            page(&["e"], "", "999"),
        ]);
        let all = AllRows::from(result.expect("ok"));
        let models: Vec<_> = all.rows.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["a", "b", "c", "d", "e"]);
        assert_eq!(all.totals[0].exact, "3");
        assert_eq!(asked, ["", "t1", "t2"]);
    }

    #[test]
    fn single_page() {
        let (result, asked) = run(vec![page(&["a"], "", "1")]);
        let response = result.expect("ok");
        assert_eq!(response.rows.len(), 1);
        assert!(response.next_page_token.is_empty());
        assert_eq!(asked, [""]);
    }

    #[test]
    fn stops_on_a_repeated_token() {
        let (result, _) = run(vec![page(&["a"], "t1", "1"), page(&["b"], "t1", "1")]);
        let err = result.expect_err("loop");
        assert_eq!(err.code(), tonic::Code::Internal);
    }

    #[test]
    fn passes_errors_through() {
        let (result, _) = run(vec![page(&["a"], "t1", "1")]);
        assert_eq!(result.expect_err("fails").code(), tonic::Code::OutOfRange);
    }
}
