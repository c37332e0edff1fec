# One image for every service (gateway, each subgraph, the one-shot `keys` job): they share the
# dependency tree and the generated Prisma clients, so building it once keeps them in lockstep.
# The default command runs the gateway; docker-compose.yml sets `command:` for the others.
FROM node:20-bookworm-slim

WORKDIR /app

# Manifests alone first, so editing source does not reinstall 600 MB of node_modules.
COPY package.json package-lock.json ./
# --ignore-scripts: the image's npm (unlike the one we develop with) would run dependency install
# scripts, and some (@prisma/engines) download native binaries. Nothing may be downloaded at
# install or run time; Prisma generation works offline through prisma/engine-stub.sh instead.
# NODE_ENV is not production yet on purpose: `npm ci` would then omit the devDependencies that
# `npm run generate` may need.
RUN npm ci --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force

COPY . .
RUN npm run generate

# /keys and /secrets/* are where the compose `keys` job mounts the key pairs' volume and the one
# volume per secret it fills (docker-compose.yml). Docker seeds an empty named volume with the
# owner of the image's directory, which lets the non-root job write into them; a volume mounted
# where the image has no directory would belong to root.
RUN mkdir -p /keys /secrets/auth-token-private /secrets/auth-token-public \
    /secrets/gateway-identity-private /secrets/gateway-identity-public /secrets/database-password \
    /secrets/grafana-admin-password \
  && chown node:node /keys /secrets/auth-token-private /secrets/auth-token-public \
    /secrets/gateway-identity-private /secrets/gateway-identity-public /secrets/database-password \
    /secrets/grafana-admin-password

ENV NODE_ENV=production

# The code stays owned by root: the services run as `node` and cannot rewrite themselves.
USER node

EXPOSE 4000
CMD ["node", "--import", "tsx", "gateway/main.ts", "--supergraph", "schema/supergraph.graphql", "--port", "4000"]
