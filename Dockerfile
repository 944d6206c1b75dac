# The skybridge binary (gateway, federator, ca, CLI) and the gateway-only skybridge-gateway
# (what the gateway Deployment runs: less resident code) in a minimal non-root image.
#   docker build -t registry.example.com/skybridge:0.1.0 .
# Build stage: the workspace's pinned toolchain floor (rust-version 1.95) on Debian bookworm,
# whose glibc matches the runtime image.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p skybridge-cli \
 && install -D -m 0755 target/release/skybridge /out/skybridge \
 && install -D -m 0755 target/release/skybridge-gateway /out/skybridge-gateway

# Runtime: distroless glibc base with CA certificates (for cloud APIs) and no shell or package
# manager; 65532 is its "nonroot" user, which the Kubernetes manifests also pin.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/skybridge /out/skybridge-gateway /usr/local/bin/
USER 65532:65532
# Gateway: 15443/udp tunnel, 15001 SNI, 15080 HTTP, 15021 admin. Federator: 15010 control, 8080 API.
EXPOSE 15443/udp 15443/tcp 15001 15080 15021 15010 8080
# checkov:skip=CKV_DOCKER_2:Liveness is the orchestrator's job (Kubernetes probes /healthz and /readyz on the admin or API port, which differ by role); the image has no shell or HTTP client for a HEALTHCHECK to run.
ENTRYPOINT ["/usr/local/bin/skybridge"]
