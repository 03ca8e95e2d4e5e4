# syntax=docker/dockerfile:1
#
# The ByteOr admission service image: admission-server and admissionctl on Debian slim,
# running as an unprivileged user. Mount the config directory (examples/production.toml and
# the files it names) at /etc/admission:
#
#   docker build -t byteor/admission .
#   docker run --read-only -v /srv/admission:/etc/admission:ro -p 50051:50051 -p 9090:9090 \
#     -e ADMISSION_DB_PASSWORD byteor/admission
#
# Base images are pinned by version tag; a release pipeline should also pin their digests.

FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binaries are copied out of the
# cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p admission-server -p admission-client \
    && install -D -m 0755 -t /out target/release/admission-server target/release/admissionctl

FROM debian:12.12-slim
LABEL org.opencontainers.image.title="admission-server" \
      org.opencontainers.image.description="ByteOr admission service: mTLS gRPC admission decisions with a tamper-evident audit trail" \
      org.opencontainers.image.source="https://github.com/byteor/admission" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid, so Kubernetes runAsNonRoot can check it and mounted keys can be granted
# to it; /var/lib/admission is the only writable directory (SQLite, when used).
RUN groupadd --system --gid 10001 admission \
    && useradd --system --uid 10001 --gid admission --home-dir /var/lib/admission \
       --no-create-home --shell /usr/sbin/nologin admission \
    && install -d -m 0755 /etc/admission \
    && install -d -m 0750 -o admission -g admission /var/lib/admission
# Root certificates from the builder, so the runtime stage needs no package manager run.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/admission-server /out/admissionctl /usr/local/bin/
COPY LICENSE examples/production.toml /usr/share/doc/admission-server/
ENV ADMISSION_CONFIG=/etc/admission/admission.toml
WORKDIR /var/lib/admission
USER 10001:10001
# 50051: the mTLS gRPC API. 9090: the operations listener ([ops] listen), plain HTTP.
EXPOSE 50051/tcp 9090/tcp
# Healthy while /readyz on the operations listener answers 200; the config needs
# [ops] listen on port 9090 (examples/production.toml has it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["admission-server", "healthcheck"]
# SIGTERM finishes the calls in flight, then exits; SIGHUP reloads the config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["admission-server"]
