# Leadflow's container image: one image, every role (`leadflow all|api|worker|scheduler|
# migrate`), chosen by the command. Multi-stage: the build stage has the Rust toolchain,
# the runtime stage only the binary, CA certificates and a non-root user.
#
#   docker build -t leadflow .
#   docker run --rm -p 8080:8080 -e LEADFLOW_DATABASE_URL=… -e LEADFLOW_REDIS_URL=… \
#     -e LEADFLOW_MASTER_KEY_FILE=/run/secrets/master_key leadflow
#
# scripts/docker-check builds and runs it on machines that cannot pull base images.

# The toolchain scripts/docker-check proves the build with (the crate's MSRV is older).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Manifests first, with empty targets: the dependency build is its own layer, reused
# until Cargo.lock or a manifest changes.
COPY Cargo.toml Cargo.lock ./
COPY api/Cargo.toml api/
COPY worker/Cargo.toml worker/
COPY scheduler/Cargo.toml scheduler/
COPY shared/Cargo.toml shared/
COPY providers/Cargo.toml providers/
COPY bench/Cargo.toml bench/
COPY testkit/Cargo.toml testkit/
RUN for crate in api worker scheduler shared providers bench testkit; do mkdir -p $crate/src && echo '' > $crate/src/lib.rs; done \
 && echo 'fn main() {}' > bench/src/main.rs && mkdir -p src tests/e2e \
 && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs && echo 'fn main() {}' > tests/e2e/main.rs \
 && cargo build --release --locked --bin leadflow \
 && rm -rf api/src worker/src scheduler/src shared/src providers/src bench/src testkit/src src tests
COPY . .
# The real sources are newer than the placeholders' build: touch them so cargo rebuilds
# the workspace crates (and only them).
# Line tables stay (a panic's backtrace names file and line), compressed: a third the size.
RUN find api worker scheduler shared providers src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin leadflow \
 && objcopy --compress-debug-sections=zlib target/release/leadflow /usr/local/bin/leadflow

FROM debian:bookworm-slim
# ca-certificates: every outbound call (AI, providers, postbacks) is HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 leadflow \
 && useradd --system --uid 10001 --gid leadflow --home-dir /var/lib/leadflow --create-home leadflow
COPY --from=build /usr/local/bin/leadflow /usr/local/bin/leadflow
USER leadflow
WORKDIR /var/lib/leadflow
# Inside a container the listeners face the container's network, not its loopback.
ENV LEADFLOW_HTTP_ADDR=0.0.0.0:8080 \
    LEADFLOW_OPS_ADDR=0.0.0.0:9464 \
    LEADFLOW_DATA_DIR=/var/lib/leadflow \
    LEADFLOW_LOG_FORMAT=json
EXPOSE 8080 9464
# /readyz of the API port; a worker or scheduler container overrides it with
# `leadflow healthcheck --url http://127.0.0.1:9464/readyz` (compose.yaml does).
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
  CMD ["leadflow", "healthcheck"]
ENTRYPOINT ["leadflow"]
CMD ["all"]
