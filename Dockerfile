# Build: docker build -t botgate .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/botgate --create-home botgate
COPY --from=build /src/target/release/botgate /usr/local/bin/botgate
USER botgate
WORKDIR /var/lib/botgate
ENV BOTGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["botgate"]
CMD ["serve"]
