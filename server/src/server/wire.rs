//! Codes for requests that never reach a handler. tonic answers a request body that is
//! not the RPC's protobuf message with INTERNAL and the parser's words, and a message
//! over the size limit with OUT_OF_RANGE; for a caller the first is their mistake
//! (INVALID_ARGUMENT) and the second a limit (RESOURCE_EXHAUSTED), and neither should
//! show parser internals. This layer rewrites those statuses, in the headers of a
//! trailers-only response or in the trailers of an answer (an answer too large to
//! encode), and leaves every other status as it is. The original goes to the log.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

/// The layer: add it inside [`crate::telemetry::rpc::RpcLayer`] so that metrics and
/// spans see the rewritten codes.
#[derive(Debug, Clone, Copy)]
pub struct WireCodesLayer {
    /// The largest request message accepted, in bytes (named in the message).
    pub max_request_bytes: usize,
}

impl<S> tower_layer::Layer<S> for WireCodesLayer {
    type Service = WireCodes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WireCodes {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// A service whose transport-level statuses are rewritten by [`WireCodesLayer`].
#[derive(Debug, Clone)]
pub struct WireCodes<S> {
    inner: S,
    max_request_bytes: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for WireCodes<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<WireBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = self.inner.call(request);
        let max = self.max_request_bytes;
        Box::pin(async move {
            let mut response = call.await?;
            rewrite(response.headers_mut(), max);
            Ok(response.map(|inner| WireBody { inner, max }))
        })
    }
}

/// The caller's status for a transport-level one, or `None` to keep it.
pub fn remap(status: &Status, max_request_bytes: usize) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal
            if message.starts_with("failed to decode Protobuf message")
                || message.starts_with("protocol error")
                || message.starts_with("Unexpected EOF decoding stream")
                || message.starts_with("Error decompressing") =>
        {
            Some(Status::invalid_argument(
                "the request body is not a valid message of this RPC; build it from the published proto (bedrock/attribution/v1/attribution.proto) or use the client crate",
            ))
        }
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            Some(Status::resource_exhausted(format!(
                "the request is larger than the server accepts ({max_request_bytes} bytes); send fewer or shorter filter values"
            )))
        }
        Code::ResourceExhausted if message.starts_with("Error decompressing: size limit") => {
            Some(Status::resource_exhausted(format!(
                "the request is larger than the server accepts ({max_request_bytes} bytes) once decompressed; send fewer or shorter filter values"
            )))
        }
        Code::OutOfRange if message.starts_with("Error, encoded message length too large") => {
            Some(Status::resource_exhausted(
                "the answer is larger than the server sends in one message; ask for a smaller page_size",
            ))
        }
        _ => None,
    }
}

fn rewrite(headers: &mut http::HeaderMap, max: usize) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(new) = remap(&status, max) else {
        return;
    };
    tracing::debug!(code = ?status.code(), message = status.message(), "transport-level status rewritten to {:?}", new.code());
    headers.remove("grpc-status-details-bin");
    if new.add_header(headers).is_err() {
        tracing::warn!("cannot rewrite a transport-level status");
    }
}

/// A response body whose trailers are rewritten like the headers.
#[derive(Debug)]
pub struct WireBody<B> {
    inner: B,
    max: usize,
}

impl<B: Body + Unpin> Body for WireBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let max = self.max;
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    rewrite(trailers, max);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_statuses_get_the_callers_codes() {
        let decode = Status::internal("failed to decode Protobuf message: buffer underflow");
        let remapped = remap(&decode, 10).map(|s| (s.code(), s.message().to_owned()));
        assert!(
            remapped
                .as_ref()
                .is_some_and(|(c, m)| *c == Code::InvalidArgument && !m.contains("underflow")),
            "{remapped:?}"
        );
        let large = Status::out_of_range(
            "Error, decoded message length too large: found 99 bytes, the limit is: 10 bytes",
        );
        assert_eq!(
            remap(&large, 10).map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        // The server's own statuses stay.
        for kept in [
            Status::internal("the query failed inside the server; the error is in the server log"),
            Status::out_of_range("anything else"),
            Status::invalid_argument("invalid page_size"),
        ] {
            assert!(remap(&kept, 10).is_none(), "{kept:?}");
        }
        let mut headers = http::HeaderMap::new();
        let _ = decode.add_header(&mut headers);
        rewrite(&mut headers, 10);
        assert_eq!(
            Status::from_header_map(&headers).map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
    }
}
