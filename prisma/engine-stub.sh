#!/bin/sh
# Prisma's CLI insists that a schema-engine binary exists before `prisma generate`, but never runs
# it for generation. Machines here cannot download the real one, so this stub stands in for it.
# Migrations never go through it: see scripts/prisma/ and docs/decisions.
echo "schema-engine stub: the native schema engine is not available offline" >&2
exit 1
