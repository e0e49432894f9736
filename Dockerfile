# nightjar agent image. Builds the eBPF object with the nightly toolchain and bpf-linker
# (scripts/setup-ebpf.sh) and the gRPC API's types with protoc, then ships only the binary on a slim Debian.
# The Kubernetes DaemonSet (deploy/) runs it as `nightjar run --config ...` (the entrypoint
# with its args) and, in the export-stdout container, its `tail` (coreutils) on the export
# file; tests/integration/kubernetes_pod.rs lays out this image's last stage on the host
# and runs both containers as the DaemonSet says.
FROM rust:1.95-bookworm AS build
RUN rustup toolchain install nightly --profile minimal && rustup component add rust-src --toolchain nightly \
 && apt-get update && apt-get install -y --no-install-recommends linux-libc-dev protobuf-compiler libprotobuf-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup-ebpf.sh && cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/nightjar /usr/local/bin/nightjar
COPY config/policies /etc/nightjar/policies
ENTRYPOINT ["/usr/local/bin/nightjar"]
CMD ["run"]
