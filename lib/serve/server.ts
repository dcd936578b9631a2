/**
 * The HTTP inference server (fastify): classification and embeddings with
 * dynamic batching, bounded queues, Prometheus metrics and graceful shutdown.
 */
import Fastify, { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import sharp from 'sharp';
import { AddressInfo } from 'net';
import { ArgumentError } from '../errors';
import { decodeImage } from '../data/decode';
import { memory } from '../runtime';
import { QueueFullError, RequestTimeoutError } from './batcher';
import { PhaseLock } from './phase-lock';
import { InferenceOutput, ModelEndpoint, ModelSpec } from './endpoint';
import { describeHttpError, HttpError } from './http-error';
import { Counter, Gauge, Histogram, PROMETHEUS_CONTENT_TYPE, Registry } from './metrics';

export interface ServerOptions {
  models: ModelSpec[];
  /** Default 127.0.0.1: reachable from this machine only unless said otherwise. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** Largest batch (default 32). */
  maxBatch?: number;
  /** How long the first request of a batch waits for more while the model is idle (default 5 ms). */
  maxWaitMs?: number;
  /** Requests admitted per model at once; more get 429 (default 256). */
  queueSize?: number;
  /** From arrival to answer; later gets 503 (default 30 s). */
  timeoutMs?: number;
  /** Largest request body in bytes; larger gets 413 (default 16 MiB). */
  maxBodyBytes?: number;
  /** fastify's request log on stdout (`--log`); default silent. */
  logger?: boolean;
  /**
   * Decode images while batches compute. Off by default: on CPU both compete
   * for the same cores and overlapping them costs more than it saves, so
   * decoding runs between batches (in parallel across requests).
   */
  overlapDecode?: boolean;
}

export const IMAGE_TYPES = ['image/jpeg', 'image/jpg', 'image/png', 'image/webp'] as const;
const DEFAULT_TOPK = 5;
// How long a batch may wait for the clients the previous one answered (it ends
// sooner once they stop arriving); longer than their round trip on a busy machine.
const LINGER_MS = 100;
const ACCEPTED_BODIES = `send the image file as the body with Content-Type ${IMAGE_TYPES.join(', ')}, or application/json {"image": <base64>, "topk": k}`;

type Kind = 'classify' | 'embed';

function positiveInt(name: string, v: number | undefined, fallback: number, min = 1): number {
  const x = v ?? fallback;
  if (!Number.isInteger(x) || x < min) throw new ArgumentError(`serve: ${name} must be an integer >= ${min}, got ${v}`);
  return x;
}

class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = this.registry.register(new Counter('visionllama_http_requests_total', 'HTTP requests by route and status.', ['route', 'status']));
  readonly latency = this.registry.register(new Histogram('visionllama_http_request_duration_seconds', 'Time from request to response.', ['route'],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]));
  readonly batchSize = this.registry.register(new Histogram('visionllama_batch_size', 'Images per model batch.', ['model'], [1, 2, 4, 8, 16, 32, 64, 128]));
  readonly compute = this.registry.register(new Histogram('visionllama_model_compute_seconds', 'Model time per batch, from launch to results read back.', ['model'],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]));
  readonly queueDepth = this.registry.register(new Gauge('visionllama_queue_depth', 'Requests admitted and not yet answered (decoding, queued or computing).', ['model']));
  readonly queueCapacity = this.registry.register(new Gauge('visionllama_queue_capacity', 'Requests admitted at most at once.', ['model']));
  readonly nativeBytes = this.registry.register(new Gauge('visionllama_tensor_bytes', 'Bytes of live tensors, by device.', ['device']));
}

export class InferenceServer {
  readonly metrics = new ServerMetrics();
  private readonly endpoints = new Map<string, ModelEndpoint>();
  private defaultEndpoint!: ModelEndpoint;
  private closing: Promise<void> | null = null;
  private readonly timeoutMs: number;
  private readonly app: FastifyInstance;
  private readonly lock: PhaseLock | null;

  private constructor(private readonly options: ServerOptions) {
    this.timeoutMs = positiveInt('timeoutMs', options.timeoutMs, 30_000);
    this.lock = options.overlapDecode ? null : new PhaseLock();
    this.app = Fastify({
      logger: options.logger ?? false,
      bodyLimit: positiveInt('maxBodyBytes', options.maxBodyBytes, 16 << 20),
      return503OnClosing: false,  // answered by the onRequest hook, in our error format
      forceCloseConnections: 'idle',
    });
  }

  /** Loads every model, then listens. */
  static async start(options: ServerOptions): Promise<InferenceServer> {
    if (!options.models?.length) throw new ArgumentError('serve: no models given (--model PRESET|CONFIG.json)');
    const server = new InferenceServer(options);
    // Every request brings a new image: libvips' operation cache only costs
    // memory and hashing here (about 5% of the decode time).
    sharp.cache(false);
    const batching = {
      maxBatch: positiveInt('maxBatch', options.maxBatch, 32),
      maxWaitMs: positiveInt('maxWaitMs', options.maxWaitMs, 5, 0),
      capacity: positiveInt('queueSize', options.queueSize, 256),
      lingerMs: LINGER_MS,
      lock: server.lock ?? undefined,
    };
    try {
      for (const spec of options.models) {
        const m = server.metrics;
        let name = '';
        const ep = await ModelEndpoint.load(spec, batching, {
          onBatch: (size, seconds) => {
            m.batchSize.observe({ model: name }, size);
            m.compute.observe({ model: name }, seconds);
          },
        });
        name = ep.name;
        if (server.endpoints.has(name)) {
          ep.dispose();
          throw new ArgumentError(`serve: two models are named '${name}'; give one a --name`);
        }
        server.endpoints.set(name, ep);
        server.metrics.queueDepth.set({ model: name }, () => ep.batcher.depth);
        server.metrics.queueCapacity.set({ model: name }, batching.capacity);
      }
      server.defaultEndpoint = server.endpoints.values().next().value!;
      for (const device of new Set(['cpu', ...[...server.endpoints.values()].map((ep) => ep.device)])) {
        server.metrics.nativeBytes.set({ device }, () => memory()[device]?.bytes ?? 0);
      }
      server.routes();
      await server.app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
    } catch (err) {
      for (const ep of server.endpoints.values()) ep.dispose();
      await server.app.close().catch(() => undefined);
      throw err;
    }
    return server;
  }

  /** http://host:port of the listening socket. */
  get url(): string {
    const a = this.app.server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  get modelNames(): string[] {
    return [...this.endpoints.keys()];
  }

  /**
   * Graceful shutdown: stop accepting connections, answer what was accepted
   * (queued batches run to the end), then free the models.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.app.close();
      await Promise.all([...this.endpoints.values()].map((ep) => ep.batcher.idle()));
      for (const ep of this.endpoints.values()) ep.dispose();
    })();
    return this.closing;
  }

  private endpoint(name: string | undefined): ModelEndpoint {
    if (name === undefined) return this.defaultEndpoint;
    const ep = this.endpoints.get(name);
    if (!ep) throw new HttpError(404, 'model_not_found', `no model named '${name}'; this server has ${this.modelNames.map((n) => `'${n}'`).join(', ')}`);
    return ep;
  }

  private routes(): void {
    const app = this.app;
    app.removeAllContentTypeParsers();
    app.addContentTypeParser([...IMAGE_TYPES], { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch (err) {
        done(new HttpError(400, 'bad_request', `the body is not valid JSON (${(err as Error).message})`), undefined);
      }
    });
    app.addHook('onRequest', async (_req, reply) => {
      if (this.closing) {
        reply.header('connection', 'close');
        throw new HttpError(503, 'shutting_down', 'the server is shutting down');
      }
    });
    app.addHook('onSend', async (_req, reply) => {
      if (this.closing) reply.header('connection', 'close');
    });
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? 'unmatched';
      this.metrics.requests.inc({ route, status: String(reply.statusCode) });
      this.metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    });
    app.setErrorHandler((err, req, reply) => {
      const d = describeHttpError(err);
      // Fastify's own wording says less than a client needs to fix the request.
      if (d.code === 'unsupported_media_type' && !(err instanceof HttpError)) d.message = `Content-Type '${req.headers['content-type'] ?? ''}' is not accepted; ${ACCEPTED_BODIES}`;
      if (d.code === 'payload_too_large') d.message = `the body is larger than this server's limit of ${this.app.initialConfig.bodyLimit} bytes`;
      if (d.status >= 500 && d.code === 'internal') req.log.error(err);
      void reply.code(d.status).headers(d.headers).send({ error: d.message, code: d.code });
    });
    app.setNotFoundHandler((req, reply) => {
      void reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'not_found' });
    });

    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async (_req, reply) => {
      const saturated = [...this.endpoints.values()].filter((ep) => ep.batcher.saturated).map((ep) => ep.name);
      if (this.closing || saturated.length) {
        void reply.code(503);
        return { ready: false, reason: this.closing ? 'shutting down' : `queue full: ${saturated.join(', ')}` };
      }
      return { ready: true, models: this.modelNames };
    });
    app.get('/metrics', async (_req, reply) => {
      void reply.type(PROMETHEUS_CONTENT_TYPE);
      return this.metrics.registry.render();
    });
    app.get('/v1/models', async () => ({
      models: [...this.endpoints.values()].map((ep) => ({
        name: ep.name, arch: ep.model.config.arch, numClasses: ep.numClasses, input: ep.imageShape, dtype: ep.model.weightDType,
        device: ep.device, default: ep === this.defaultEndpoint,
      })),
    }));
    for (const kind of ['classify', 'embed'] as const) {
      const handler = (req: FastifyRequest, reply: FastifyReply) => this.infer(kind, req, reply);
      app.post(`/v1/${kind}`, handler);
      app.post(`/v1/models/:name/${kind}`, handler);
    }
  }

  private async infer(kind: Kind, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const ep = this.endpoint((req.params as { name?: string }).name);
    const { image, topk } = requestImage(req);
    const k = kind === 'classify' ? parseTopk(topk, ep.numClasses) : 0;
    let slot;
    try {
      slot = ep.batcher.admit();
    } catch (err) {
      if (err instanceof QueueFullError) {
        throw new HttpError(429, 'queue_full', `model '${ep.name}' has ${ep.batcher.depth} requests in its queue; retry later`, { 'retry-after': String(err.retryAfterS) });
      }
      throw err;
    }
    // The decode phase ends only once the image is queued: a batch formed as
    // the phase turns must not miss a request that has just decoded.
    const release = this.lock ? await this.lock.acquire('decode') : null;
    let answer: Promise<InferenceOutput>;
    try {
      let pixels: Float32Array;
      try {
        pixels = (await decodeImage(image, ep.transform)).data;
      } catch (err) {
        slot.release();
        throw new HttpError(400, 'bad_image', (err as Error).message);
      }
      answer = ep.batcher.submit(slot, pixels, this.timeoutMs - reply.elapsedTime);
    } finally {
      release?.();
    }
    let out: InferenceOutput;
    try {
      out = await answer;
    } catch (err) {
      if (err instanceof RequestTimeoutError) throw new HttpError(503, 'timeout', `model '${ep.name}': the request did not finish within ${this.timeoutMs} ms`);
      throw err;
    }
    if (kind === 'embed') return { model: ep.name, dim: out.embedding.length, embedding: Array.from(out.embedding) };
    const order = Array.from(out.probs, (p, i) => [p, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k);
    return { model: ep.name, predictions: order.map(([prob, index]) => ({ label: ep.label(index), index, prob })) };
  }
}

/** The image bytes of a raw image body, or of JSON `{image: <base64>, topk}`. */
function requestImage(req: FastifyRequest): { image: Buffer; topk: unknown } {
  const body = req.body;
  const queryTopk = (req.query as { topk?: unknown }).topk;
  if (Buffer.isBuffer(body)) {
    if (!body.length) throw new HttpError(400, 'bad_image', 'the request body is empty; send the image file');
    return { image: body, topk: queryTopk };
  }
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const { image, topk } = body as { image?: unknown; topk?: unknown };
    if (typeof image !== 'string' || !image.length) {
      throw new HttpError(400, 'bad_request', 'a JSON body needs "image": the image file as a base64 string');
    }
    const b64 = image.replace(/^data:[^;,]*;base64,/, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64.replace(/\s+/g, ''))) {
      throw new HttpError(400, 'bad_request', '"image" is not valid base64');
    }
    return { image: Buffer.from(b64, 'base64'), topk: topk ?? queryTopk };
  }
  if (body === undefined) {
    throw new HttpError(415, 'unsupported_media_type', `no body; ${ACCEPTED_BODIES}`);
  }
  throw new HttpError(400, 'bad_request', 'a JSON body must be an object {"image": <base64>, "topk": k}');
}

function parseTopk(raw: unknown, numClasses: number): number {
  if (raw === undefined || raw === null || raw === '') return Math.min(DEFAULT_TOPK, numClasses);
  const k = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(k) || k < 1 || k > numClasses) {
    throw new HttpError(400, 'bad_request', `topk must be an integer from 1 to ${numClasses} (the model's classes), got ${JSON.stringify(raw)}`);
  }
  return k;
}
