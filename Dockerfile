# EdgeProxy container image. Build steps mirror README.md's quick start (Docker cannot run on our build machines,
# so keep the two in step by hand).
#
#   docker build -t edgeproxy .
#   docker run -p 8443:8443 edgeproxy                       # built-in page on https://localhost:8443/
#   docker run -p 8443:8443 edgeproxy --listen 0.0.0.0:8443 --upstream http://origin:8080 --cert /certs/c.pem --key /certs/k.pem

# --- build: Swift 6.3 with the -dev packages -------------------------------------------------------------------
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libnghttp2-dev libhiredis-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product edgeproxy --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/edgeproxy" /out/edgeproxy
COPY policies /out/policies
COPY edgeproxy.example.toml /out/edgeproxy.example.toml

# --- runtime: slim Debian with the shared libraries only ---------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libnghttp2-14 libhiredis0.14 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin edgeproxy
COPY --from=build /out/edgeproxy /usr/local/bin/edgeproxy
COPY --from=build /out/policies /etc/edgeproxy/policies
COPY --from=build /out/edgeproxy.example.toml /etc/edgeproxy/edgeproxy.example.toml
USER edgeproxy
WORKDIR /etc/edgeproxy
EXPOSE 8443 9443
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9443/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/edgeproxy"]
CMD ["--listen", "0.0.0.0:8443", "--admin", "127.0.0.1:9443", "--policies", "/etc/edgeproxy/policies"]
