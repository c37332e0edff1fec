/**
 * The driver adapter through which Prisma 6.19's wasm schema engine reaches PostgreSQL when it
 * writes or checks migration SQL (see /work/shared/prisma-offline.md). Dev tooling only: the
 * runtime uses Prisma 7's own adapter.
 */
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg-6';

/** Catalog types the adapter cannot deserialize: 19 `name`, 18 `"char"`. */
const NAME_OID = 19;
const CHAR_OID = 18;
const catalogTextTypes = new Set([NAME_OID, CHAR_OID]);
const TEXT_OID = 25;
/** `ColumnTypeEnum.Character` of @prisma/driver-adapter-utils 6.19 (a transitive dependency). */
const CHARACTER_COLUMN = 6;

type Result = { fields?: { dataTypeID: number }[]; rows?: unknown[] } | undefined;

/**
 * The positions of the `"char"` columns of a result, keyed by its rows (the adapter passes the
 * rows array on unchanged), so that `withCharColumns` can type them as characters.
 */
const charColumns = new WeakMap<object, number[]>();

/** Reports catalog columns as text; their values already arrive as strings. */
function retypeCatalogColumns<R extends Result>(result: R): R {
  const chars: number[] = [];
  (result?.fields ?? []).forEach((field, i) => {
    if (field.dataTypeID === CHAR_OID) chars.push(i);
    if (catalogTextTypes.has(field.dataTypeID)) field.dataTypeID = TEXT_OID;
  });
  if (chars.length > 0 && result?.rows) charColumns.set(result.rows, chars);
  return result;
}

type Queryable = { queryRaw(query: unknown): Promise<{ columnTypes: number[]; rows: unknown[] }> };

/**
 * The schema engine reads `pg_constraint.contype` as a single character, and panics
 * ("unreachable") when it gets text: that is, as soon as a schema has a CHECK constraint. The
 * engine's native driver reports `"char"` columns as characters; so does this.
 */
function withCharColumns<Q extends Queryable>(queryable: Q): Q {
  const queryRaw = queryable.queryRaw.bind(queryable);
  queryable.queryRaw = async (query) => {
    const result = await queryRaw(query);
    for (const i of charColumns.get(result.rows) ?? []) result.columnTypes[i] = CHARACTER_COLUMN;
    return result;
  };
  return queryable;
}

/**
 * Works around prisma/orm#27403 (open): through adapter-pg the schema engine fails with
 * "Column type 'name' could not be deserialized" (then `"char"`) when it introspects the
 * catalog. The pool hands out this client, which relabels those columns as text.
 */
export class CatalogTextClient extends pg.Client {
  // pg's `query` has many overloads; this override forwards every form unchanged.
  override query(...args: any[]): any {
    const last = args.length - 1;
    if (typeof args[last] === 'function') {
      const callback = args[last] as (error: Error | null, result: Result) => void;
      args[last] = (error: Error | null, result: Result) =>
        callback(error, error ? result : retypeCatalogColumns(result));
      return (super.query as (...a: unknown[]) => unknown)(...args);
    }
    const returned = (super.query as (...a: unknown[]) => unknown)(...args);
    return returned instanceof Promise ? returned.then(retypeCatalogColumns) : returned;
  }
}

function adapterFor(databaseUrl: string): PrismaPg {
  // allowExitOnIdle: otherwise the CLI lingers ~10 s on idle pooled connections.
  return new PrismaPg({ connectionString: databaseUrl, Client: CatalogTextClient, allowExitOnIdle: true });
}

/**
 * An adapter factory for the schema engine. Its "shadow database" is one the caller created
 * (and will drop): adapter-pg's own shadow handling drops while still connected and leaks
 * `prisma_migrate_shadow_db_*` databases.
 */
export function migrationAdapter(databaseUrl: string, shadowDatabaseUrl: string) {
  const main = adapterFor(databaseUrl);
  const shadow = adapterFor(shadowDatabaseUrl);
  return {
    provider: main.provider,
    adapterName: main.adapterName,
    connect: async () => withCharColumns(await main.connect()),
    connectToShadowDb: async () => withCharColumns(await shadow.connect()),
  };
}
