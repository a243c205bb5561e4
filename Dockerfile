# meshplane in a container: built with the `dist` profile, run as a user without privileges
# on Debian slim. UNTESTED: no Docker engine is available where meshplane is developed; the
# build steps are the ones CI runs (`cargo build --profile dist -p meshplane`).
#
#   docker build -t meshplane .
#   docker run -p 8080:8080 -v meshplane-data:/var/lib/meshplane meshplane
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile dist -p meshplane && cp target/dist/meshplane /meshplane

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/meshplane --create-home --uid 10001 meshplane
COPY --from=build /meshplane /usr/local/bin/meshplane
USER meshplane
WORKDIR /var/lib/meshplane
EXPOSE 8080
# The store and the embedded lake live in the volume; give --database-url postgres://... and
# --platform for a real platform.
ENTRYPOINT ["meshplane"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
