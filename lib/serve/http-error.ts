/** An error answered with its status and a JSON body `{error, code}`. */
export class HttpError extends Error {
  constructor(readonly statusCode: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Fastify's own errors (body limit, content type, JSON) as our codes. */
const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_request'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'bad_request'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'bad_request'],
};

/** Status, code and message for any error a request can end with. */
export function describeHttpError(err: unknown): { status: number; code: string; message: string; headers: Record<string, string> } {
  if (err instanceof HttpError) return { status: err.statusCode, code: err.code, message: err.message, headers: err.headers };
  const e = err as { code?: string; statusCode?: number; message?: string };
  const known = e?.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return { status: known[0], code: known[1], message: e.message ?? known[1], headers: {} };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, code: 'bad_request', message: e.message ?? 'bad request', headers: {} };
  }
  return { status: 500, code: 'internal', message: e?.message ?? String(err), headers: {} };
}
