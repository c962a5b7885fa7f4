# EdgeProxy container image: the build stage runs README.md's build (same command, same pinned Package.resolved) plus
# --static-swift-stdlib, because the runtime stage is slim Debian without a Swift toolchain; the runtime stage has
# only the shared C libraries. Built and smoke-tested without a Docker engine by scripts/container-test (buildah),
# which the test suite runs.
#
#   docker build -t edgeproxy .
#   docker run -p 8443:8443 edgeproxy                       # built-in page on https://localhost:8443/
#   docker run -p 8443:8443 -v $PWD/certs:/certs:ro edgeproxy \
#       --upstream http://origin:8080 --cert /certs/c.pem --key /certs/k.pem
#
# The entrypoint is `edgeproxy run --config /etc/edgeproxy/edgeproxy.toml` (contrib/docker/edgeproxy.toml: listen on
# 0.0.0.0:8443, admin API on the container's loopback, a drain that fits docker stop's 10 s grace); arguments given
# to `docker run` are flags that override it. A --config of your own replaces that file (set [timeouts] drain below
# your stop grace period there). The HEALTHCHECK is `edgeproxy health`: it reads the state file the proxy writes
# when ready, so it works whatever flags were given and needs no admin listener.

# --- build: Swift 6.3 with the -dev packages -------------------------------------------------------------------
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libnghttp2-dev libhiredis-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift Package.resolved ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product edgeproxy --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/edgeproxy" /out/edgeproxy
COPY policies /out/policies
COPY edgeproxy.example.toml /out/edgeproxy.example.toml
COPY contrib/docker/edgeproxy.toml /out/edgeproxy.toml

# --- runtime: slim Debian with the shared libraries only ---------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libnghttp2-14 libhiredis0.14 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin edgeproxy
COPY --from=build /out/edgeproxy /usr/local/bin/edgeproxy
COPY --from=build /out/policies /etc/edgeproxy/policies
COPY --from=build /out/edgeproxy.example.toml /etc/edgeproxy/edgeproxy.example.toml
COPY --from=build /out/edgeproxy.toml /etc/edgeproxy/edgeproxy.toml
USER edgeproxy
WORKDIR /etc/edgeproxy
# Where the proxy records its pid and addresses once ready; `edgeproxy health` reads it.
ENV EDGEPROXY_STATE_FILE=/tmp/edgeproxy.state
# Only the TLS listener: the admin API listens on the container's loopback (reach it with `docker exec`).
EXPOSE 8443
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/edgeproxy", "health"]
ENTRYPOINT ["/usr/local/bin/edgeproxy", "run", "--config", "/etc/edgeproxy/edgeproxy.toml"]
