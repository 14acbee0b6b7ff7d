# syntax=docker/dockerfile:1
# The operator's image: `docker build -t registry.example.com/ipfs-kit-operator:0.1.0 .`
# One image runs both containers of the Deployment (`ipfs-kit-operator run` and
# `ipfs-kit-operator dashboard`). Without a Docker daemon, `make image` builds the same layout.

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ipfs-kit-operator \
 && install -m 0755 target/release/ipfs-kit-operator /ipfs-kit-operator

# glibc, libgcc and CA certificates, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ipfs-kit-operator" \
      org.opencontainers.image.description="Runs IPFS Kubo and IPFS Cluster peers from a declared state" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /ipfs-kit-operator /usr/local/bin/ipfs-kit-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ipfs-kit-operator"]
CMD ["run"]
