# syntax=docker/dockerfile:1
# tapgate-admin (provisioning of broker logins): built from the whole workspace (Cargo.lock pinned), run as a non-root user
# with nothing but the binary. Build context: the repository root (see docker-compose.yml).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tapgate-admin \
    && cp target/release/tapgate-admin /usr/local/bin/tapgate-admin

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tapgate
COPY --from=build /usr/local/bin/tapgate-admin /usr/local/bin/tapgate-admin
# The folder the provisioning job writes the simulator's device list to (a named volume).
RUN mkdir /provision && chown tapgate:tapgate /provision && chmod 700 /provision
USER tapgate
ENTRYPOINT ["/usr/local/bin/tapgate-admin"]
