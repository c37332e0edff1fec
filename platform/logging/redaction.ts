/**
 * What never reaches a log line, by field name: credentials and keys, wherever a logged object
 * carries them (a header map, a mutation's variables, an error's details). The value is replaced
 * by `[redacted]`, the field kept, so a reader still sees that one was sent.
 *
 * By path, with pino's `redact`, rather than by scanning every value: the paths are compiled once,
 * and a line without those fields costs nothing more. Three levels deep covers what we log
 * (`password`, `headers.authorization`, `variables.input.password`); a secret nested deeper is not
 * found, so log fields are kept flat.
 */

/** Field names whose values are secrets, as clients and our code spell them. */
export const secretFieldNames = [
  'authorization',
  'cookie',
  'set-cookie',
  'password',
  'newPassword',
  'currentPassword',
  'token',
  'accessToken',
  'refreshToken',
  'idToken',
  'paymentToken',
  'privateKey',
  'secret',
  'clientSecret',
  'apiKey',
] as const;

const key = (name: string) => (/^[A-Za-z_$][\w$]*$/.test(name) ? name : `["${name}"]`);
const join = (prefix: string, name: string) => (key(name).startsWith('[') ? `${prefix}${key(name)}` : `${prefix}.${name}`);

/** pino `redact` paths: each secret field at the top of a line's fields and one or two objects down. */
export const redactedPaths: string[] = secretFieldNames.flatMap((name) => [key(name), join('*', name), join('*.*', name)]);

export const redactionCensor = '[redacted]';
