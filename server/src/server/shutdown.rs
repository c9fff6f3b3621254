//! Stopping: the signal, and shutdown with a deadline.
//!
//! tonic's graceful shutdown stops accepting and then waits, without a bound, for every
//! connection to close. A client holding a `Health/Watch` stream, or one that advertised
//! a zero flow-control window and never reads, kept the process alive 40-60 s after
//! SIGTERM, past Kubernetes' 30 s terminationGracePeriod (so the pod was SIGKILLed and
//! nothing was flushed). [`Drain`] bounds it: from the signal, calls that are not health
//! probes are refused with UNAVAILABLE ([`DrainLayer`]) while those in flight get the
//! grace period; at its end every connection still open is closed under hyper
//! ([`Tracked`] fails its reads and writes), which ends the streams and the stalled
//! connections with it, and the process goes on to flush and exit.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
};
use tonic::transport::server::Connected;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Health probes stay answered while draining: they report NOT_SERVING, which is what
/// tells load balancers and kubelet to stop sending work here.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The shared state of one server's shutdown: whether it is draining, the switch that
/// cuts every connection, and what is still open (for the log line at the deadline).
#[derive(Debug, Clone)]
pub struct Drain {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    draining: AtomicBool,
    cut: watch::Sender<bool>,
    connections: AtomicUsize,
    calls: AtomicUsize,
}

/// What was still open when the grace period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Connections closed by the server.
    pub connections: usize,
    /// Calls (streams included) that had not finished.
    pub calls: usize,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A server that is not draining.
    pub fn new() -> Self {
        Self {
            state: Arc::new(State {
                draining: AtomicBool::new(false),
                cut: watch::channel(false).0,
                connections: AtomicUsize::new(0),
                calls: AtomicUsize::new(0),
            }),
        }
    }

    /// From now on, new calls other than health probes are refused with UNAVAILABLE.
    pub fn begin(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Drain::begin`] was called.
    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::SeqCst)
    }

    /// Calls in flight now (streams included).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Closes every tracked connection (their next read or write fails) and says what
    /// was still open.
    pub fn cut(&self) -> Cut {
        let cut = Cut {
            connections: self.connections(),
            calls: self.calls(),
        };
        self.state.cut.send_replace(true);
        cut
    }

    /// `io`, closed when [`Drain::cut`] is called.
    pub fn track<IO>(&self, io: IO) -> Tracked<IO> {
        self.state.connections.fetch_add(1, Ordering::SeqCst);
        let mut cut = self.state.cut.subscribe();
        Tracked {
            io,
            cut: Some(Box::pin(async move {
                let _ = cut.wait_for(|cut| *cut).await;
            })),
            _open: Counted::new(&self.state, |s| &s.connections),
        }
    }

    /// The layer refusing new calls while draining and counting those in flight.
    pub fn layer(&self) -> DrainLayer {
        DrainLayer {
            drain: self.clone(),
        }
    }
}

/// Decrements one of [`State`]'s counters when dropped.
#[derive(Debug)]
struct Counted {
    state: Arc<State>,
    counter: fn(&State) -> &AtomicUsize,
}

impl Counted {
    /// The guard of an increment the caller has just made.
    fn new(state: &Arc<State>, counter: fn(&State) -> &AtomicUsize) -> Self {
        Self {
            state: state.clone(),
            counter,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.state).fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection that fails its reads and writes once the drain cuts it, so that hyper
/// ends the connection task (tonic spawns one per connection; aborting the accept loop
/// alone leaves them running).
pub struct Tracked<IO> {
    io: IO,
    /// Resolves at the cut; `None` once it has (a finished future must not be polled
    /// again).
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _open: Counted,
}

impl<IO> std::fmt::Debug for Tracked<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

impl<IO> Tracked<IO> {
    /// An error once cut; polling also registers the task to be woken by the cut.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(cut) = self.cut.as_mut() {
            if cut.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.cut = None;
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the shutdown grace period is over",
        ))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing after the cut needs no orderly shutdown: the socket is dropped.
        self.check(cx)?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Tracked<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Refuses calls other than health probes with UNAVAILABLE while draining, and counts
/// the calls in flight until their answer (or stream) ends. Add it innermost: it
/// answers with the inner service's body type.
#[derive(Debug, Clone)]
pub struct DrainLayer {
    drain: Drain,
}

impl<S> tower_layer::Layer<S> for DrainLayer {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService {
            inner,
            drain: self.drain.clone(),
        }
    }
}

/// A service behind [`DrainLayer`].
#[derive(Debug, Clone)]
pub struct DrainService<S> {
    inner: S,
    drain: Drain,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for DrainService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if self.drain.is_draining() && !request.uri().path().starts_with(HEALTH_PREFIX) {
            let refused = tonic::Status::unavailable(
                "the server is shutting down; retry, another replica will answer",
            )
            .into_http::<ResBody>();
            return Box::pin(std::future::ready(Ok(
                refused.map(|inner| CallBody { inner, _call: None })
            )));
        }
        let state = &self.drain.state;
        state.calls.fetch_add(1, Ordering::SeqCst);
        let call = Counted::new(state, |s| &s.calls);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| CallBody {
                inner,
                _call: Some(call),
            }))
        })
    }
}

/// A response body counted as a call in flight until it is dropped.
#[derive(Debug)]
pub struct CallBody<B> {
    inner: B,
    _call: Option<Counted>,
}

/// An empty answer body, for the layers outside that answer refusals of their own.
impl<B: Default> Default for CallBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            _call: None,
        }
    }
}

impl<B: Body + Unpin> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_cut_fails_the_reads_and_writes_of_every_open_connection() {
        let drain = Drain::new();
        let (a, mut peer) = tokio::io::duplex(64);
        let mut tracked = drain.track(a);
        assert_eq!(drain.connections(), 1);
        peer.write_all(b"ping")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 4];
        tracked
            .read_exact(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf, b"ping", "an uncut connection passes data through");
        // A read waiting for data that never comes is woken by the cut.
        let waiting = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let read = tracked.read(&mut buf).await;
            (read.map_err(|e| e.kind()), tracked)
        });
        tokio::task::yield_now().await;
        assert_eq!(
            drain.cut(),
            Cut {
                connections: 1,
                calls: 0
            }
        );
        let (read, mut tracked) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap_or_else(|_| panic!("the cut did not wake the read"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, Err(io::ErrorKind::ConnectionAborted));
        let write = tracked.write(b"late").await.map_err(|e| e.kind());
        assert_eq!(write, Err(io::ErrorKind::ConnectionAborted));
        drop(tracked);
        assert_eq!(
            drain.connections(),
            0,
            "a dropped connection is not counted"
        );
    }
}
