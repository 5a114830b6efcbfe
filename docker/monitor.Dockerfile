# syntax=docker/dockerfile:1
# tapgate-monitor: built from the whole workspace (Cargo.lock pinned), run as a non-root user
# with nothing but the binary. Build context: the repository root (see docker-compose.yml).
# /var/lib/tapgate-monitor (owned by that user, so a fresh volume mounted there is too) holds
# the session key file.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tapgate-monitor \
    && cp target/release/tapgate-monitor /usr/local/bin/tapgate-monitor

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tapgate \
    && install -d -o tapgate -g tapgate -m 0700 /var/lib/tapgate-monitor
COPY --from=build /usr/local/bin/tapgate-monitor /usr/local/bin/tapgate-monitor
EXPOSE 8080
USER tapgate
ENTRYPOINT ["/usr/local/bin/tapgate-monitor"]
