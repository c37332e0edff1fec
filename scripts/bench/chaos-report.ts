/**
 * The chaos benchmark's report: one row per fault (client errors by code, recovery, what became
 * of the orders placed during it), the invariants over every order, what the subscribers heard,
 * and the goals of issue 10 with PASS/FAIL. Orders, TIMEOUT cancellations, violations and missed
 * subscription events are attributed to the phase in which the order was placed (the change was
 * stored, for a missed event), so a row tells which fault caused them.
 */
import type { InvariantReport, PlatformFacts, SubscriptionReport } from './chaos-invariants.ts';
import { violationKinds } from './chaos-invariants.ts';
import { machineLine, printTable } from './support.ts';

/** The recovery goal of issue 10. */
export const recoveryGoalMs = 10_000;

export interface PhaseResult {
  name: string;
  /** Wall-clock ms the phase began (the fault was injected). */
  from: number;
  calls: number;
  errors: Map<string, number>;
  /** Wall-clock ms the fault ended (recovery is timed from here); the warm-up's start for it. */
  endedAt: number;
  /** Undefined for the warm-up; `undefined` recovery on a fault means never within the bound. */
  recoveredMs: number | undefined;
  /** From the fault's end until /ready said `ready` for good; or that it never said otherwise, or there is none. */
  readyMs: number | undefined | 'no /ready' | 'ready throughout';
  notes: string[];
  isFault: boolean;
}

export interface ReportInput {
  settings: string;
  phases: PhaseResult[];
  facts: PlatformFacts;
  invariants: InvariantReport;
  subscriptions: SubscriptionReport;
  subscriberErrors: Map<string, number>;
  quiesce: { quiet: boolean; ms: number; pending: number; unpublished: number };
  acknowledged: number;
  abandoned: number;
  restartsByBenchmark: number;
}

export const seconds = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`);

export const codesLine = (errors: ReadonlyMap<string, number>) =>
  [...errors]
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`)
    .join(', ') || '–';

function table(headers: string[], rows: (string | number)[][]): string[] {
  const lines: string[] = [];
  const log = console.log;
  console.log = (line: string) => lines.push(line);
  try {
    printTable(headers, rows);
  } finally {
    console.log = log;
  }
  return lines;
}

export function formatReport(input: ReportInput): string[] {
  const { phases, invariants, subscriptions: heard } = input;
  const phaseAt = (at: number) => [...phases].reverse().find((phase) => phase.from <= at)?.name ?? 'setup';
  const placedAt = new Map(input.facts.orders.filter((o) => o.events.length > 0).map((o) => [o.orderId, Math.min(...o.events.map((e) => e.occurredAt))]));
  const count = (names: (string | undefined)[]) => names.reduce((m, name) => m.set(name ?? 'setup', (m.get(name ?? 'setup') ?? 0) + 1), new Map<string, number>());
  const ordersIn = count([...placedAt.values()].map(phaseAt));
  const timeoutsIn = count(invariants.timedOut.map((id) => phaseAt(placedAt.get(id) ?? 0)));
  const violationsIn = count(invariants.violations.map((v) => (placedAt.has(v.subject) ? phaseAt(placedAt.get(v.subject)!) : 'unattributed')));
  const missedIn = count(heard.missedWhileSubscribed.map((m) => phaseAt(m.at)));
  // The order flow is back, as a customer sees it, when an order placed after the fault's end is
  // confirmed: that needs the gateway, orders and the saga's round trip over the bus.
  const placedAndConfirmed = input.facts.orders.flatMap((o) => {
    const confirmed = o.events.find((e) => e.type === 'OrderConfirmed');
    return confirmed && placedAt.has(o.orderId) ? [{ placed: placedAt.get(o.orderId)!, confirmed: confirmed.occurredAt }] : [];
  });
  const confirmingAgainAfter = (p: PhaseResult) => {
    const first = Math.min(...placedAndConfirmed.filter((o) => o.placed >= p.endedAt).map((o) => o.confirmed));
    return Number.isFinite(first) ? seconds(first - p.endedAt) : 'never';
  };

  const lines = [`chaos benchmark, ${machineLine()}`, input.settings, ''];
  lines.push(
    ...table(
      ['fault', 'calls', 'failed calls by code', 'recovered after', '/ready after', 'a new order confirmed after', 'orders placed / TIMEOUT / violations / events missed', 'note'],
      phases.map((p) => [
        p.name,
        p.calls,
        codesLine(p.errors),
        p.isFault ? seconds(p.recoveredMs) : '–',
        typeof p.readyMs === 'string' ? p.readyMs : p.isFault ? seconds(p.readyMs) : '–',
        p.isFault ? confirmingAgainAfter(p) : '–',
        [ordersIn, timeoutsIn, violationsIn, missedIn].map((m) => m.get(p.name) ?? 0).join(' / '),
        p.notes.join('; '),
      ]),
    ),
  );
  lines.push('');
  const { quiesce } = input;
  lines.push(
    `quiesce: ${quiesce.quiet ? `quiet after ${seconds(quiesce.ms)}` : `NOT quiet after ${seconds(quiesce.ms)} (${quiesce.pending} orders PENDING, ${quiesce.unpublished} outbox rows unpublished)`}; ` +
      `${input.acknowledged} orders acknowledged to clients, ${input.abandoned} given up after 20 attempts; platform started again by the benchmark ${input.restartsByBenchmark} time(s)`,
  );
  lines.push(`orders by status: ${[...invariants.byStatus].map(([status, n]) => `${status} ${n}`).join(', ')} (${invariants.orders} in all)`);
  const ofKind = (kind: string) => invariants.violations.filter((v) => v.kind === kind);
  const example = (subject: string, detail: string) => `${subject.slice(0, 8)}: ${detail}`;
  lines.push(
    ...table(
      ['invariant', 'violations', 'first examples'],
      [
        ...violationKinds.map((kind) => [kind, ofKind(kind).length, ofKind(kind).slice(0, 2).map((v) => example(v.subject, v.detail)).join(' | ') || '–']),
        ['subscriptions: missed while subscribed', heard.missedWhileSubscribed.length, heard.missedWhileSubscribed.slice(0, 2).map((m) => example(m.orderId, `${m.status} not heard by ${m.subscriber}`)).join(' | ') || '–'],
        ['subscriptions: older status after the final one', heard.staleLast.length, heard.staleLast.slice(0, 2).map((m) => example(m.orderId, `${m.subscriber} heard ${m.heard} after ${m.final}`)).join(' | ') || '–'],
      ],
    ),
  );
  lines.push(
    `subscriptions: ${heard.expected} status changes expected; missed while the client was away (not judged: no client-side resume), by why it was away: ${codesLine(heard.missedWhileAway)}; ` +
      `${heard.duplicates} heard twice; subscriber errors and closes: ${codesLine(input.subscriberErrors)}`,
  );
  lines.push(`orders cancelled as TIMEOUT: ${invariants.timedOut.length}`);
  lines.push('');
  const violations = invariants.violations.length + heard.missedWhileSubscribed.length + heard.staleLast.length;
  const slow = phases.filter((p) => p.isFault && (p.recoveredMs === undefined || p.recoveredMs > recoveryGoalMs));
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  lines.push(`goal 0 invariant violations: ${verdict(violations === 0 && quiesce.quiet)} (${violations}${quiesce.quiet ? '' : ', and the platform did not quiesce'})`);
  lines.push(`goal 0 orders cancelled by the platform's own outage (TIMEOUT): ${verdict(invariants.timedOut.length === 0)} (${invariants.timedOut.length})`);
  lines.push(`goal recovery within ${recoveryGoalMs / 1000} s of each fault's end: ${verdict(slow.length === 0)}${slow.length ? ` (${slow.map((p) => `${p.name} ${seconds(p.recoveredMs)}`).join(', ')})` : ''}`);
  return lines;
}
