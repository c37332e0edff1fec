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

# /keys is where the compose `keys` volume is mounted. Docker seeds an empty named volume with the
# owner of the image's directory, which lets the non-root `keys` job write into it.
RUN mkdir -p /keys && chown node:node /keys

ENV NODE_ENV=production

# The code stays owned by root: the services run as `node` and cannot rewrite themselves.
USER node

EXPOSE 4000
CMD ["node", "--import", "tsx", "gateway/main.ts", "--supergraph", "schema/supergraph.graphql", "--port", "4000"]
