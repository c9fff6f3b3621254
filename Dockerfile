# syntax=docker/dockerfile:1
#
# The bedrock-attribution image: the server (entry point) and the `bedrock-attribution`
# CLI, built from the locked dependencies, run as a non-root user on distroless (glibc,
# CA certificates, no shell, no package manager).
#
#   docker build -t bedrock-attribution:0.1.0 .
#   docker run --rm -p 50051:50051 bedrock-attribution:0.1.0 --demo --allow-unauthenticated
#   docker run --rm --entrypoint bedrock-attribution bedrock-attribution:0.1.0 --help
#
# The image listens on 0.0.0.0 (a container's loopback is unreachable through -p), and
# off loopback the server refuses to start without --auth-file: the demo, whose data is
# generated and belongs to nobody, says --allow-unauthenticated explicitly. Real data
# needs --auth-file (docs/access-control.md). server/tests/api/sources.rs runs the
# binary with these demo arguments and the ENV below.
#
# The builder and the runtime are the same Debian release (12, bookworm), so the binaries
# link against the glibc they run on. Needs BuildKit (the default builder since Docker
# 23) for the cache mounts.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Release binaries without their symbol tables (panic messages stay; backtraces lose
# function names): about half the size.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
COPY . .
# protoc comes from the protoc-bin-vendored crate: no system packages needed. target/
# is a cache mount, so the binaries are copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p bedrock-attribution-server -p bedrock-attribution-client \
 && mkdir -p /out \
 && cp target/release/bedrock-attribution-server target/release/bedrock-attribution /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/bedrock-attribution-server /out/bedrock-attribution /usr/local/bin/
# nonroot is uid/gid 65532 with HOME /home/nonroot: the default layer cache
# (~/.cache/bedrock-attribution/layers) and --demo-dir (./demo-data) are writable there.
# On Kubernetes the root filesystem is read-only and both point at emptyDir volumes.
USER 65532:65532
WORKDIR /home/nonroot
ENV BEDROCK_ATTRIBUTION_LISTEN=0.0.0.0:50051 \
    RUST_LOG=info
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/bedrock-attribution-server"]
