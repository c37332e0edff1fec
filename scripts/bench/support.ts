/** Shared by the benchmarks: throwaway databases, timing and percentiles, a table printer. */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { withDatabase } from '../../platform/config.ts';
import type { ContextName } from '../../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';

/** The server benchmarks create their databases on: BENCH_DATABASE_URL, TEST_DATABASE_URL or the local one. */
export const benchServerUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const benchNatsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

export class ThrowawayDatabases {
  private readonly urls: string[] = [];
  private readonly prefix = `bench_${randomBytes(4).toString('hex')}`;

  /** A new database, migrated as `context`'s when given. */
  async create(name: string, context?: ContextName): Promise<string> {
    const url = withDatabase(benchServerUrl, `${this.prefix}_${name}`);
    this.urls.push(url);
    await ensureDatabase(url);
    if (context) await applyMigrations({ databaseUrl: url, migrationsDir: migrationsDirOf(context) });
    return url;
  }

  async dropAll(): Promise<void> {
    for (const url of this.urls) await dropDatabase(url).catch(() => {});
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function summarize(samples: number[]): { p50: number; p99: number; max: number; n: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN, n: sorted.length };
}

export const ms = (value: number) => `${value.toFixed(1)} ms`;

export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((row) => row.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(headers));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of cells.slice(1)) console.log(line(row));
}

export function machineLine(): string {
  return `${new Date().toISOString().slice(0, 10)}, node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'})`;
}

export const sleep = (msToWait: number) => new Promise((resolve) => setTimeout(resolve, msToWait));

/** Cleanups run last-in first-out; each one runs even when an earlier one failed. */
export class Cleanups {
  readonly #steps: { what: string; run: () => Promise<unknown> }[] = [];
  add(what: string, run: () => Promise<unknown>): void {
    this.#steps.push({ what, run });
  }
  async runAll(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (error) {
        console.error(`cleanup: ${step.what} failed: ${(error as Error).message}`);
      }
    }
  }
}
