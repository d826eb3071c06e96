# syntax=docker/dockerfile:1.7
# One image with every Podium service and tool. Each container picks its binary with `command`:
# podium-command-api, podium-query-api, podium-projector, podium-ops, podium-analyst.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t podium:"$(git rev-parse --short HEAD)" .
# And the gateway: nginx with the web app (web/), filled in from deploy/k8s/base/podium.conf.template.
#   docker build --target gateway -t podium-gateway:"$(git rev-parse --short HEAD)" .
# Not built on the project's CI machines, which have no container engine: deploy/check.sh
# validates what can be validated there (docs/deploy.md).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# librdkafka is built from source by rdkafka-sys; OpenSSL for its TLS and Redis's.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin podium-command-api --bin podium-query-api --bin podium-projector \
      --bin podium-ops --bin podium-analyst \
 && mkdir -p /out \
 && cp target/release/podium-command-api target/release/podium-query-api \
       target/release/podium-projector target/release/podium-ops target/release/podium-analyst /out/

# The web app: static files, built once, served by the gateway.
FROM node:20-${DEBIAN_RELEASE}-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM nginxinc/nginx-unprivileged:1.27 AS gateway
ARG REVISION=unknown
LABEL org.opencontainers.image.title="podium-gateway" \
      org.opencontainers.image.description="Podium's gateway: nginx in front of the APIs, serving the web app" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=web /web/dist/ /usr/share/nginx/html/
COPY deploy/k8s/base/podium.conf.template /etc/nginx/templates/podium.conf.template
ENV PODIUM_WEB_ROOT=/usr/share/nginx/html

# The services (the default target).
FROM debian:${DEBIAN_RELEASE}-slim
ARG REVISION=unknown
LABEL org.opencontainers.image.title="podium" \
      org.opencontainers.image.description="Podium: live quiz scoring and leaderboards (command API, query API, projector, ops and analyst tools)" \
      org.opencontainers.image.revision="${REVISION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin podium
COPY --from=build /out/ /usr/local/bin/
# The Avro contract for analysts and other consumers, and the CQL migrations (the binaries
# embed both; these copies are for reading).
COPY schemas/avro/ /usr/share/podium/avro/
COPY deploy/scylla/ /usr/share/podium/scylla/
ENV PODIUM_LOG_FORMAT=json
USER 10001:10001
# APIs 8080 (command) and 8081 (query); admin listeners 9464 (projector), 9465, 9466.
EXPOSE 8080 8081 9464 9465 9466
CMD ["podium-command-api", "--help"]
