# Image of the aiplat core for the single-server deployment (docker-compose.yml).
#   docker build -t aiplat-core .
#   docker run -p 8080:8080 -e AIPLAT_ADMIN_PASSWORD=... -e AIPLAT_SECRET_KEY=... aiplat-core
# The core runs its TypeScript through tsx (a runtime dependency at the root), so the image keeps
# the full `npm ci` install rather than `npm ci --omit=dev`.

ARG NODE_IMAGE=node:20-bookworm-slim

# Stage 1: only the package manifests, so the dependency layer is rebuilt when they change and
# not on every source edit. The workspace globs (plugins/*, examples/*) are followed by `find`.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir -p /out \
 && find . -name package.json -not -path '*/node_modules/*' -exec cp --parents '{}' /out/ ';' \
 && cp package-lock.json .npmrc /out/

# Stage 2: the runtime image.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    AIPLAT_DATA_DIR=/var/lib/aiplat \
    npm_config_update_notifier=false
WORKDIR /app

COPY --from=manifests /out/ ./
RUN npm ci --no-audit --no-fund \
 && npm cache clean --force

COPY . .
# The web shell and the plugins' UI remotes, built once into the image (npm start would build them
# on first start, but the code is read-only to the runtime user).
RUN node scripts/build-ui.mjs

# The data folder (embedded database, installed plugins, lock file) belongs to the unprivileged
# `node` user (uid 1000) that the official Node image provides; the code stays root-owned, read-only to it.
RUN mkdir -p /var/lib/aiplat \
 && chown node:node /var/lib/aiplat
VOLUME ["/var/lib/aiplat"]
USER node

EXPOSE 8080

# The slim image has no curl: probe with Node's fetch. /api/v1/health answers 503 when the
# database is unreachable, which marks the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/api/v1/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Same as `npm start`, without npm in between so SIGTERM reaches the core (it stops gracefully).
CMD ["node", "--import", "tsx", "core/src/main.ts"]
