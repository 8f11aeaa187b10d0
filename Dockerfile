# syntax=docker/dockerfile:1
#
# callauth: one image with the three binaries (callauth-gateway,
# callauth-settlement, callauthctl). docs/deployment.md "The image".
#
#   docker build -t registry.example.com/telephony/callauth:0.1.0 .
#
# Builder: the toolchain the project is developed with (rustc 1.95).
# protobuf is compiled by protox inside build.rs, so no protoc is needed; the
# ledger migrations are embedded at compile time (sqlx::migrate!).
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and the target directory between
# builds; the binaries are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/callauth-gateway target/release/callauth-settlement target/release/callauthctl /out/

# Runtime: glibc and libgcc only (the binaries link nothing else: TLS is
# rustls on ring, compiled in), the distroless CA bundle for the system trust
# store, no shell, no package manager; user 65532
# ("nonroot") — the chart runs it with a read-only root filesystem.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/callauth-gateway /out/callauth-settlement /out/callauthctl /usr/local/bin/
USER 65532:65532
# gRPC and HTTP (/metrics, /healthz, /readyz) of the gateway and the worker.
EXPOSE 50051 9090 50052 9091
# Inside a container the listeners must not be loopback-only.
ENV CALLAUTH_GRPC_LISTEN=0.0.0.0:50051 \
    CALLAUTH_HTTP_LISTEN=0.0.0.0:9090 \
    CALLAUTH_SETTLEMENT_GRPC_LISTEN=0.0.0.0:50052 \
    CALLAUTH_SETTLEMENT_HTTP_LISTEN=0.0.0.0:9091
ENTRYPOINT ["/usr/local/bin/callauth-gateway"]
