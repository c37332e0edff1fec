/**
 * A subgraph's readiness (`GET /ready`): whether it can serve right now, dependency by dependency
 * — its database and its event bus. `/health` stays liveness (the process answers): a load
 * balancer takes an unready subgraph out of rotation, while an orchestrator restarts only a dead
 * one; restarting a process because its database is away would not bring the database back.
 *
 * The answer names which dependency is down and why in words written here or by the bus
 * adapters, never an error message of a driver: those carry host names and user names.
 */
import type { EventBus } from '../events/bus.ts';

export interface DependencyState {
  up: boolean;
  /** Why it is down, safe to show anyone (no URL, no secret). */
  detail?: string;
}

export interface DependencyCheck {
  /** Its name in the answer, e.g. `database`. */
  name: string;
  check(): DependencyState | Promise<DependencyState>;
}

export interface DatabaseCheckOptions {
  /** No answer to `SELECT 1` within this long counts as down. @default 1_000 */
  timeoutMs?: number;
  /**
   * An answer is reused this long: probes from every load balancer and the gateway cost the
   * database at most one query per interval, and concurrent probes share it. @default 1_000
   */
  cacheMs?: number;
}

/** The database is up while `ping` (a `SELECT 1`) answers within `timeoutMs`. */
export function databaseCheck(ping: () => Promise<unknown>, options: DatabaseCheckOptions = {}): DependencyCheck {
  const { timeoutMs = 1_000, cacheMs = 1_000 } = options;
  let last: { at: number; state: Promise<DependencyState> } | undefined;
  // A ping that outlives its timeout keeps its connection attempt going: no second one beside it,
  // or probes would pile up connection attempts on a database that does not answer.
  let pending = false;
  const timedOut: DependencyState = { up: false, detail: `no answer within ${timeoutMs} ms` };
  return {
    name: 'database',
    check() {
      if (last && Date.now() - last.at < cacheMs) return last.state;
      if (pending) return timedOut;
      pending = true;
      const answer = ping().then(
        (): DependencyState => ({ up: true }),
        (): DependencyState => ({ up: false, detail: 'unreachable' }),
      ).finally(() => (pending = false));
      let timer: NodeJS.Timeout | undefined;
      const state = Promise.race([answer, new Promise<DependencyState>((resolve) => (timer = setTimeout(() => resolve(timedOut), timeoutMs)))])
        .finally(() => clearTimeout(timer));
      last = { at: Date.now(), state };
      return state;
    },
  };
}

/** The bus is up while its adapter holds a working connection (no round trip: `EventBus.health`). */
export function busCheck(bus: EventBus): DependencyCheck {
  return {
    name: 'bus',
    check() {
      const { connected, detail } = bus.health();
      return connected ? { up: true } : { up: false, ...(detail ? { detail } : {}) };
    },
  };
}

export interface Readiness {
  ready: boolean;
  body: {
    status: 'ready' | 'unavailable';
    subgraph: string;
    /** Every dependency by name: `up`, or `down` with why. */
    dependencies: Record<string, { status: 'up' | 'down'; detail?: string }>;
  };
}

/** Runs every check at once; ready when all are up. */
export async function readinessOf(subgraph: string, checks: readonly DependencyCheck[]): Promise<Readiness> {
  const states = await Promise.all(
    checks.map(async (dependency) => {
      const state = await Promise.resolve()
        .then(() => dependency.check())
        .catch((): DependencyState => ({ up: false, detail: 'check failed' }));
      return [dependency.name, state.up ? { status: 'up' as const } : { status: 'down' as const, ...(state.detail ? { detail: state.detail } : {}) }] as const;
    }),
  );
  const ready = states.every(([, state]) => state.status === 'up');
  return { ready, body: { status: ready ? 'ready' : 'unavailable', subgraph, dependencies: Object.fromEntries(states) } };
}
