//! The server binary as a child process, for what is process-wide and so cannot be
//! observed on an in-process server shared with concurrent tests: the Prometheus
//! recorder and the tracing subscriber. It binds `127.0.0.1:0`; the addresses come from
//! its own log lines (text or JSON), and readiness from the health service's Watch
//! stream.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use bedrock_attribution_client::Client;
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long a child may take to bind, load the small export, or exit.
const BOUND: Duration = Duration::from_secs(60);

/// A running server process; killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The metrics address, when asked for.
    pub metrics: Option<SocketAddr>,
    /// Its stderr, line by line, after the listening lines.
    pub log: mpsc::Receiver<String>,
    /// The lines before them (start-up warnings).
    pub early: Vec<String>,
}

impl ServerProcess {
    /// Starts the server over the local `export` with `extra` flags and waits until it
    /// serves.
    pub async fn start(export: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(export, extra, &[]).await
    }

    /// [`ServerProcess::start`] with environment variables.
    pub async fn start_with_env(export: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Self::serve_with_env(&[format!("file://{}", export.display())], &extra, env).await
    }

    /// Starts the server over `sources` (any URLs) with `extra` flags and waits until
    /// it serves.
    pub async fn serve(sources: &[String], extra: &[String]) -> Self {
        Self::serve_with_env(sources, extra, &[]).await
    }

    async fn serve_with_env(sources: &[String], extra: &[String], env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_bedrock-attribution-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--refresh-interval",
                "0",
                "--no-cache",
            ])
            .args(sources.iter().flat_map(|s| ["--source", s.as_str()]))
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the server: {e}"));
        let wants_metrics = extra.iter().any(|a| a == "--metrics-listen");
        Self::adopt_child(child, wants_metrics).await
    }

    /// Takes over a server started by the caller with its stderr piped: waits for its
    /// listening line and for SERVING.
    pub async fn adopt(child: Child) -> Self {
        Self::adopt_child(child, false).await
    }

    async fn adopt_child(mut child: Child, wants_metrics: bool) -> Self {
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("server: {line}");
                // Read to the end even when nobody listens any more, so that the
                // child never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut metrics) = (None, None);
        let mut early = Vec::new();
        while addr.is_none() || (wants_metrics && metrics.is_none()) {
            let line = log
                .recv_timeout(BOUND)
                .unwrap_or_else(|e| panic!("no listening line from the server: {e}"));
            if let Some(a) = listening(&line, "metrics listening") {
                metrics = Some(a);
            } else if let Some(a) = listening(&line, "listening") {
                addr = Some(a);
            } else {
                early.push(line);
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("no address"));
        let server = Self {
            child: Some(child),
            addr,
            metrics,
            log,
            early,
        };
        server.serving().await;
        server
    }

    /// Waits (bounded) for the API to report SERVING, on the health Watch stream.
    async fn serving(&self) {
        let mut health = HealthClient::new(self.channel().await);
        let watch = async {
            let mut stream = health
                .watch(HealthCheckRequest {
                    service: "bedrock.attribution.v1.AttributionService".into(),
                })
                .await
                .unwrap_or_else(|e| panic!("watch: {e}"))
                .into_inner();
            while let Some(status) = stream.next().await {
                let status = status.unwrap_or_else(|e| panic!("watch: {e}"));
                if status.status == ServingStatus::Serving as i32 {
                    return;
                }
            }
            panic!("the health stream ended before SERVING");
        };
        tokio::time::timeout(BOUND, watch)
            .await
            .unwrap_or_else(|_| panic!("not SERVING within {BOUND:?}"));
    }

    /// A raw channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap_or_else(|e| panic!("{e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// The typed client.
    pub async fn client(&self) -> Client {
        Client::connect(format!("http://{}", self.addr))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit. The wait runs aside, so that
    /// this runtime keeps answering the server's connections while it drains (HTTP/2's
    /// graceful close waits for the caller's PING answer).
    pub async fn terminate(mut self) {
        self.sigterm();
        let status = self.exited(BOUND).await;
        assert!(status.success(), "the server exited with {status}");
    }

    /// Sends SIGTERM, without waiting.
    pub fn sigterm(&mut self) {
        let child = self.child.as_ref().unwrap_or_else(|| panic!("no child"));
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit, at most `within` (then kills it and panics), aside
    /// from this runtime; its exit status.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap_or_else(|| panic!("no child"));
        let pid = child.id().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
            child
        });
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(Ok(status))) => status,
            other => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("the server did not exit within {within:?}: {other:?}")
            }
        }
    }

    /// The log lines not read yet, up to the end of its stderr (the process exited), at
    /// most `within`.
    pub async fn rest_of_log(&self, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            match self.log.try_recv() {
                Ok(line) => lines.push(line),
                Err(mpsc::TryRecvError::Disconnected) => return lines,
                Err(mpsc::TryRecvError::Empty) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    panic!("the log did not end within {within:?}: {lines:?}")
                }
            }
        }
    }

    /// The log lines that arrive within `within` (the process keeps running).
    pub async fn log_for(&self, within: Duration) -> Vec<String> {
        tokio::time::sleep(within).await;
        self.log.try_iter().collect()
    }

    /// The next log line containing `text`, waiting at most `within` without blocking
    /// this runtime; the lines before it are dropped.
    pub async fn log_line(&self, text: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.log.try_recv() {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Empty) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("no log line with {text:?} within {within:?}: {e:?}"),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `addr` field of a log line whose message is `message`, as text or JSON.
fn listening(line: &str, message: &str) -> Option<SocketAddr> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        if json["message"] != message {
            return None;
        }
        return json["addr"].as_str()?.parse().ok();
    }
    let at = line.find(&format!("{message} addr="))?;
    let rest = &line[at + message.len() + " addr=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        response
    };
    let response = tokio::time::timeout(BOUND, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} took more than {BOUND:?}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}
