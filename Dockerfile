# syntax=docker/dockerfile:1
# Fulcrum in a container: the single binary on a minimal glibc base, running as non-root.
#   docker build -t fulcrum .            (or: npm run docker)
#   docker run -p 8080:8080 -v "$PWD/conf:/etc/fulcrum:ro" fulcrum
# /etc/fulcrum holds fulcrum.yaml and any plugin .ts files it names.

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
ARG FULCRUM_COMMIT=unknown
RUN FULCRUM_COMMIT=$FULCRUM_COMMIT ./compile.sh --outfile /out/fulcrum && /out/fulcrum version

# distroless/cc: glibc and nothing else to attack; `ldd fulcrum` shows glibc is all it needs.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/fulcrum /usr/local/bin/fulcrum
WORKDIR /etc/fulcrum
VOLUME ["/etc/fulcrum"]
USER nonroot:nonroot
EXPOSE 8080 9090
# The admin listener must be reachable inside the container (admin.listen: 127.0.0.1:9090 is fine).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/fulcrum", "healthcheck", "--url", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["/usr/local/bin/fulcrum"]
CMD ["run", "--config", "/etc/fulcrum/fulcrum.yaml"]
