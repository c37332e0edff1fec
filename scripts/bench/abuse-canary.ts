/**
 * A child process of `npm run bench -- abuse` (abuse.ts): the canary, an ordinary client sending
 * one request at a fixed rate, open loop (a slow answer does not delay the next request, as real
 * clients do not wait for each other). It runs in a process of its own so that the attacks, built
 * and sent by the benchmark's process, cannot delay it: what it measures is the gateway's doing.
 * Driven over IPC with scripts/bench/processes.ts's IpcWorker protocol; exits with its parent.
 */
export type CanaryCommand =
  | { type: 'start'; url: string; body: string; headers: Record<string, string>; ratePerSecond: number; timeoutMs: number }
  /** The requests sent between two wall-clock instants (ms), finished or not. */
  | { type: 'collect'; from: number; to: number }
  | { type: 'stop' };

export interface CanaryWindow {
  /** Latencies (ms) of the requests that answered 200 with data and no error. */
  latencies: number[];
  /** Requests that failed (status, error, timeout), and a few of their reasons. */
  failed: number;
  failures: string[];
  /** Requests still unanswered when collected: counted with their age so far. */
  pending: number;
}

interface Sample {
  sentAt: number;
  ms?: number;
  failure?: string;
}

const samples: Sample[] = [];
let timer: NodeJS.Timeout | undefined;

function start(command: Extract<CanaryCommand, { type: 'start' }>): void {
  const interval = 1000 / command.ratePerSecond;
  const began = performance.now();
  let sent = 0;
  const tick = () => {
    // Catch up on schedule rather than drift: the n-th request leaves at began + n × interval.
    while (began + sent * interval <= performance.now()) {
      sent++;
      void send(command);
    }
    timer = setTimeout(tick, Math.max(0, began + sent * interval - performance.now()));
  };
  tick();
}

async function send(command: Extract<CanaryCommand, { type: 'start' }>): Promise<void> {
  const sample: Sample = { sentAt: Date.now() };
  samples.push(sample);
  const since = performance.now();
  try {
    const response = await fetch(command.url, { method: 'POST', headers: command.headers, body: command.body, signal: AbortSignal.timeout(command.timeoutMs) });
    const body = (await response.json()) as { data?: unknown; errors?: { extensions?: { code?: string } }[] };
    if (response.status === 200 && body.data && !body.errors?.length) sample.ms = performance.now() - since;
    else sample.failure = `${response.status} ${body.errors?.[0]?.extensions?.code ?? 'no data'}`;
  } catch (error) {
    sample.failure = (error as Error).name === 'TimeoutError' ? 'timeout' : (error as Error).message;
  }
}

function collect(from: number, to: number): CanaryWindow {
  const window: CanaryWindow = { latencies: [], failed: 0, failures: [], pending: 0 };
  for (const sample of samples) {
    if (sample.sentAt < from || sample.sentAt > to) continue;
    if (sample.ms !== undefined) window.latencies.push(sample.ms);
    else if (sample.failure !== undefined) {
      window.failed++;
      if (window.failures.length < 3 && !window.failures.includes(sample.failure)) window.failures.push(sample.failure);
    } else {
      window.pending++;
      window.latencies.push(Date.now() - sample.sentAt);
    }
  }
  return window;
}

if (process.send) {
  process.on('message', (message: { requestId: number; command: CanaryCommand }) => {
    const { requestId, command } = message;
    let result: unknown = null;
    if (command.type === 'start') start(command);
    else if (command.type === 'collect') result = collect(command.from, command.to);
    else clearTimeout(timer);
    process.send!({ requestId, result });
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}
