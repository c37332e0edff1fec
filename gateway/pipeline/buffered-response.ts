/**
 * A subgraph's response read whole, so it can be handed out again: to a retry policy that looks
 * at it before deciding, or to every caller sharing one fetch. Subgraph answers are JSON documents
 * the data source reads whole anyway; reading them here only moves the read inside the deadline.
 */
export interface BufferedResponse {
  readonly body: ArrayBuffer;
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
}

export async function buffer(response: Response): Promise<BufferedResponse> {
  return { body: await response.arrayBuffer(), status: response.status, statusText: response.statusText, headers: response.headers };
}

/** A fresh Response of the buffered one (a body can be read once per Response; the constructor copies the bytes). */
export function replay(buffered: BufferedResponse): Response {
  // These statuses may not carry a body (the Response constructor throws).
  const bodiless = buffered.status === 204 || buffered.status === 205 || buffered.status === 304;
  return new Response(bodiless ? null : buffered.body, { status: buffered.status, statusText: buffered.statusText, headers: buffered.headers });
}
