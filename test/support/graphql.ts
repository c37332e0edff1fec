/** A plain HTTP GraphQL client for tests: what a web or mobile app sends, nothing more. */
export interface GraphQLResponse<TData = Record<string, any>> {
  status: number;
  data?: TData | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, any> }[];
}

export interface GraphQLRequest {
  query: string;
  variables?: Record<string, unknown>;
  token?: string;
  headers?: Record<string, string>;
}

export async function graphql<TData = Record<string, any>>(url: string, request: GraphQLRequest): Promise<GraphQLResponse<TData>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(request.token ? { authorization: `Bearer ${request.token}` } : {}),
      ...request.headers,
    },
    body: JSON.stringify({ query: request.query, variables: request.variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<TData>, 'status'>;
  return { status: response.status, ...body };
}

/** The `extensions.code` of every error, for assertions that read as the client branches. */
export const errorCodes = (response: GraphQLResponse) => (response.errors ?? []).map((error) => error.extensions?.code);

/**
 * What a well-behaved client does with a retryable refusal: sends the same request again (a
 * mutation with the same idempotency key) after the `Retry-After` it was given, while the answer
 * is SERVICE_OVERLOADED. For tests whose subject is not overload, on a machine that may be busy.
 */
export async function graphqlRetryingOverload<TData = Record<string, any>>(url: string, request: GraphQLRequest, attempts = 10): Promise<GraphQLResponse<TData>> {
  for (let attempt = 1; ; attempt++) {
    const response = await graphql<TData>(url, request);
    const overloaded = response.errors?.find((error) => error.extensions?.code === 'SERVICE_OVERLOADED');
    if (!overloaded || attempt >= attempts) return response;
    const retryAfterSeconds = Number(overloaded.extensions?.retryAfter ?? 1);
    await new Promise((resolve) => setTimeout(resolve, (Number.isFinite(retryAfterSeconds) ? retryAfterSeconds : 1) * 1_000));
  }
}
