/**
 * The two pages of the development explorer, and their Content-Security-Policy. Neither page has
 * an inline script: configuration travels in `data-` attributes and the scripts are files of our
 * own origin, so the policy can say `script-src 'self'` (plus Sandbox's CDN on the landing page).
 */

/** Where Apollo Sandbox's embed comes from, and the frame it opens. */
export const sandboxOrigins = {
  script: 'https://embeddable-sandbox.cdn.apollographql.com',
  frame: 'https://sandbox.embed.apollographql.com',
} as const;

/** The embed's major version, as Apollo Server 5's own landing page loads it. */
const sandboxScriptUrl = `${sandboxOrigins.script}/v2/embeddable-sandbox.umd.production.min.js`;

function attribute(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function policy(directives: Record<string, string>): string {
  return Object.entries(directives)
    .map(([name, value]) => `${name} ${value}`)
    .join('; ');
}

const common = { 'default-src': "'none'", 'base-uri': "'none'", 'form-action': "'none'", 'frame-ancestors': "'none'", 'object-src': "'none'" };

/**
 * The gateway's own WebSocket origin, for `connect-src`: CSP's `'self'` covers ws: in current
 * browsers, but not in all of them. Only a plain host[:port] is echoed, never anything else a
 * client put in its Host header.
 */
function webSocketSources(host: string | undefined): string {
  return host && /^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:]+\](:\d{1,5})?$/i.test(host) ? ` ws://${host} wss://${host}` : '';
}

export interface LandingPageOptions {
  /** The local explorer's URL path. */
  localExplorerPath: string;
  /** How long Sandbox's embed script may take to load before the page falls back to the local explorer. */
  sandboxTimeoutMs: number;
  /** Our landing script and stylesheet. */
  assetsPath: string;
}

/** Apollo Sandbox, embedded when its CDN answers in time; otherwise the page moves on to the local explorer. */
export function landingPage(options: LandingPageOptions): { html: string; csp: string } {
  const sandbox = {
    target: '#sandbox',
    initialState: { includeCookies: true },
    hideCookieToggle: false,
    endpointIsEditable: false,
    runTelemetry: false,
    allowDynamicStyles: false,
  };
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Commerce GraphQL</title>
<link rel="stylesheet" href="${attribute(options.assetsPath)}/explorer.css">
</head>
<body class="landing"
  data-sandbox-script="${attribute(sandboxScriptUrl)}"
  data-sandbox-config="${attribute(JSON.stringify(sandbox))}"
  data-sandbox-timeout-ms="${options.sandboxTimeoutMs}"
  data-local-explorer="${attribute(options.localExplorerPath)}">
<header class="bar">
  <strong>Commerce GraphQL</strong>
  <span id="status" role="status">Loading Apollo Sandbox…</span>
  <a id="local-explorer" href="${attribute(options.localExplorerPath)}">Local explorer (works offline)</a>
</header>
<div id="sandbox"></div>
<script src="${attribute(options.assetsPath)}/landing.js"></script>
</body>
</html>
`;
  const csp = policy({
    ...common,
    'script-src': `'self' ${sandboxOrigins.script}`,
    'style-src': "'self'",
    'img-src': "'self'",
    'connect-src': "'self'",
    'frame-src': sandboxOrigins.frame,
  });
  return { html, csp };
}

export interface ExplorerPageOptions {
  /** The GraphQL endpoint's path (queries, mutations, and graphql-ws on the same path). */
  endpointPath: string;
  /** Our scripts and stylesheet. */
  assetsPath: string;
  /** The GraphiQL bundle's versioned folder; undefined when it is not installed. */
  bundlePath: string | undefined;
  /** The request's Host header, for the WebSocket source of `connect-src`. */
  host: string | undefined;
}

/** GraphiQL from the gateway's own origin: nothing fetched from anywhere else. */
export function explorerPage(options: ExplorerPageOptions): { html: string; csp: string } {
  const body = options.bundlePath
    ? `<div id="graphiql" data-endpoint="${attribute(options.endpointPath)}" data-bundle="${attribute(options.bundlePath)}"><p class="loading">Loading the explorer…</p></div>
<script src="${attribute(options.bundlePath)}/yoga-graphiql.umd.js" defer></script>
<script src="${attribute(options.assetsPath)}/explorer.js" defer></script>`
    : `<p class="missing">The explorer's files are not installed: run <code>npm install</code> (package <code>@graphql-yoga/graphiql</code>).</p>`;
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Commerce GraphQL explorer</title>
${options.bundlePath ? `<link rel="stylesheet" href="${attribute(options.bundlePath)}/graphiql.css">` : ''}
<link rel="stylesheet" href="${attribute(options.assetsPath)}/explorer.css">
</head>
<body class="explorer">
${body}
</body>
</html>
`;
  const csp = policy({
    ...common,
    'script-src': "'self'",
    // React and Monaco set styles at run time (style attributes, <style> elements).
    'style-src': "'self' 'unsafe-inline'",
    'img-src': "'self' data:",
    'font-src': "'self' data:",
    'connect-src': `'self'${webSocketSources(options.host)}`,
    'worker-src': "'self'",
  });
  return { html, csp };
}
