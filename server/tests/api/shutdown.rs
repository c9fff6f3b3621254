//! Shutdown with a deadline, on the real process: after SIGTERM health says NOT_SERVING
//! at once (to a `Check`, on a connection opened before the signal), new calls are
//! refused with UNAVAILABLE, a call in flight still gets its answer within the grace
//! period, and then a `Health/Watch` stream and an HTTP/2 client that never lets the
//! server write are cut, and the process exits 0 within the grace period plus a margin.

use std::time::{Duration, Instant};

use bedrock_attribution_client::{Client, proto};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    common::{range, small_export},
    process::ServerProcess,
};

const GRACE: Duration = Duration::from_secs(2);

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// HPACK "literal header field without indexing, new name", no Huffman coding: enough
/// for a request's few short headers without an encoder.
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    for s in [name, value] {
        block.push(u8::try_from(s.len()).unwrap_or_else(|e| panic!("{e}")));
        block.extend(s.as_bytes());
    }
}

/// A raw HTTP/2 connection that advertises a zero initial stream window (the server can
/// send headers but no DATA) and makes a `Health/Check` on stream 1: its answer waits
/// for a WINDOW_UPDATE this client sends only when told to. It never acknowledges the
/// server's SETTINGS nor answers its PINGs.
async fn zero_window_check(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let mut bytes = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
    bytes.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let mut block = Vec::new();
    literal(&mut block, ":method", "POST");
    literal(&mut block, ":scheme", "http");
    literal(&mut block, ":path", "/grpc.health.v1.Health/Check");
    literal(&mut block, ":authority", &addr.to_string());
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    // HEADERS with END_HEADERS, then the empty HealthCheckRequest with END_STREAM.
    bytes.extend(frame(0x1, 0x4, 1, &block));
    bytes.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    tcp.write_all(&bytes)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    tcp
}

/// Reads frames until the response headers of stream 1: the server has taken the call
/// (its answer waits for the window).
async fn answer_started(tcp: &mut TcpStream) {
    loop {
        let (kind, _, stream, _) = read_frame(tcp)
            .await
            .unwrap_or_else(|| panic!("the connection closed before the answer started"));
        if kind == 0x1 && stream == 1 {
            return;
        }
    }
}

/// One frame: type, flags, stream id, payload; `None` when the connection closes.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Opens stream 1's window and reads frames until the stream ends: the gRPC message
/// bytes it carried, and whether it ended with END_STREAM (rather than a reset, a
/// GOAWAY with an error, or the connection closing).
async fn open_window_and_read(tcp: &mut TcpStream) -> (Vec<u8>, bool) {
    tcp.write_all(&frame(0x8, 0, 1, &65_535u32.to_be_bytes()))
        .await
        .unwrap_or_else(|e| panic!("window update: {e}"));
    let mut data = Vec::new();
    loop {
        let Some((kind, flags, stream, payload)) = read_frame(tcp).await else {
            return (data, false);
        };
        match (kind, stream) {
            (0x0, 1) => {
                data.extend(&payload);
                if flags & 0x1 != 0 {
                    return (data, true);
                }
            }
            // The trailers (or a trailers-only answer) end the stream.
            (0x1, 1) if flags & 0x1 != 0 => return (data, true),
            (0x3, 1) => return (data, false),
            // GOAWAY with an error code other than NO_ERROR.
            (0x7, _) if payload.get(4..8) != Some(&[0, 0, 0, 0]) => return (data, false),
            _ => {}
        }
    }
}

/// The number after `name=` in a text log line.
fn field(line: &str, name: &str) -> Option<usize> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_sigterm_refuses_new_calls_finishes_those_in_flight_and_cuts_the_rest_at_the_deadline() {
    let mut server = ServerProcess::start(
        small_export(),
        &["--shutdown-grace", &format!("{}s", GRACE.as_secs())],
    )
    .await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let check = || HealthCheckRequest {
        service: "bedrock.attribution.v1.AttributionService".into(),
    };
    let before = health
        .check(check())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before.get_ref().status, ServingStatus::Serving as i32);
    // A Watch on a connection of its own, which the server cannot close gracefully.
    let mut watching = HealthClient::new(server.channel().await);
    let mut watch = watching
        .watch(check())
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"))
        .into_inner();
    let first = watch.next().await.map(|m| m.map(|m| m.status));
    assert_eq!(
        first.map(|m| m.ok()),
        Some(Some(ServingStatus::Serving as i32))
    );
    // Two calls whose answers wait for the client's flow-control window: one client
    // opens it during the grace period, the other never does.
    let mut stalled = zero_window_check(server.addr).await;
    let mut in_flight = zero_window_check(server.addr).await;
    // Connections are accepted in order, so the stalled one is in too.
    answer_started(&mut in_flight).await;

    let signalled = Instant::now();
    server.sigterm();
    let begun = server
        .log_line("shutting down: health NOT_SERVING", Duration::from_secs(5))
        .await;
    // The Watch and the two waiting Checks.
    assert_eq!(field(&begun, "calls"), Some(3), "{begun}");
    // A Check right after the signal, on the connection opened before it.
    match health.check(check()).await {
        Ok(answer) => assert_eq!(
            answer.get_ref().status,
            ServingStatus::NotServing as i32,
            "health after SIGTERM"
        ),
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
    }
    // A new API call on that connection is refused.
    let refused = Client::from_channel(channel.clone())
        .raw()
        .list_models(proto::ListModelsRequest {
            time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
            ..Default::default()
        })
        .await;
    let e = refused.expect_err("a call after SIGTERM is refused");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // The Watch saw the change too.
    let changed = tokio::time::timeout(GRACE, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no NOT_SERVING on the watch"));
    assert_eq!(
        changed.map(|m| m.map(|m| m.status).ok()),
        Some(Some(ServingStatus::NotServing as i32))
    );
    // The call in flight gets its whole answer (SERVING, computed before the signal)
    // within the grace period.
    let (data, ended) = tokio::time::timeout(GRACE, open_window_and_read(&mut in_flight))
        .await
        .unwrap_or_else(|_| panic!("the call in flight was not answered within the grace"));
    assert!(ended, "the call in flight ended without its trailers");
    assert_eq!(
        data,
        [0, 0, 0, 0, 2, 0x08, ServingStatus::Serving as u8],
        "length-prefixed HealthCheckResponse {{ status: SERVING }}"
    );
    assert!(
        signalled.elapsed() < GRACE,
        "answered after the grace: {:?}",
        signalled.elapsed()
    );

    let status = server.exited(GRACE + Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took >= GRACE, "exited before the grace ran out: {took:?}");
    assert!(took < GRACE + Duration::from_secs(3), "exit took {took:?}");
    // The stalled client and the watch were what the deadline cut.
    let cut = server
        .log_line("shutdown grace period over", Duration::from_secs(5))
        .await;
    // The calls still open were the stalled Check and the Watch; the connections are
    // theirs, and the one that answered in flight if it waited for a PING answer.
    assert_eq!(field(&cut, "calls"), Some(2), "{cut}");
    assert!(field(&cut, "connections").is_some_and(|n| n >= 2), "{cut}");
    // The cut itself closed them: the accept loop did not have to be aborted.
    let after = server.rest_of_log(Duration::from_secs(5)).await;
    assert!(
        !after.iter().any(|l| l.contains("still open after the cut")),
        "{after:?}"
    );
    // The watch ends with the process, having said nothing but NOT_SERVING since.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.next().await {
                Some(Ok(m)) if m.status == ServingStatus::NotServing as i32 => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the watch stream did not end"));
    assert!(
        !matches!(ended, Some(Ok(_))),
        "the watch went on: {ended:?}"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the stalled connection was not closed"
    );
}
