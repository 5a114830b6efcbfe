# syntax=docker/dockerfile:1
# tapgate-bridge: built from the whole workspace (Cargo.lock pinned), run as a non-root user
# with nothing but the binary. Build context: the repository root (see docker-compose.yml).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tapgate-bridge \
    && cp target/release/tapgate-bridge /usr/local/bin/tapgate-bridge

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tapgate
COPY --from=build /usr/local/bin/tapgate-bridge /usr/local/bin/tapgate-bridge
EXPOSE 9464
USER tapgate
ENTRYPOINT ["/usr/local/bin/tapgate-bridge"]
