/** Scraping `/metrics` and reading Prometheus' text exposition format, for tests. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample of a text-format exposition (comments skipped; label values unescaped). */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!match) throw new Error(`not a sample line of the text format: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]!] = pair[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

export async function scrape(baseUrl: string): Promise<Sample[]> {
  const response = await fetch(new URL('/metrics', baseUrl));
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
  if (!/^text\/plain; version=0\.0\.4/.test(response.headers.get('content-type') ?? '')) throw new Error(`GET /metrics is not the text format: ${response.headers.get('content-type')}`);
  return parsePrometheusText(await response.text());
}

/** The value of the sample named `name` whose labels include `labels` (0 when there is none). */
export function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/**
 * The series names an exposition declares (its `# TYPE` lines), with a histogram's `_bucket`,
 * `_count` and `_sum`: what a query may name, even before a labelled series has a sample.
 */
export async function declaredSeries(baseUrl: string): Promise<Set<string>> {
  const text = await (await fetch(new URL('/metrics', baseUrl))).text();
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram' || type === 'summary') for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${name}${suffix}`);
  }
  return names;
}
