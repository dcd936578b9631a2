/** `visionllama serve`: the HTTP inference server. */
import { ArgumentError } from '../errors';
import type { ModelSpec } from '../serve/endpoint';
import { intFlag, parseDevice, parseDType, parseFlags } from './flags';

export const serveUsage = `usage: visionllama serve --model PRESET|CONFIG.json [--weights FILE] [--name NAME] [--labels FILE]
                        [--dtype f32|bf16|f16] [--device cpu|cuda|cuda:N] [--key KEY] [--resize 256] [--crop 224]
                        [--model ... (more models)]
                        [--host 127.0.0.1] [--port 8080] [--max-batch 32] [--max-wait-ms 5]
                        [--queue-size 256] [--timeout-ms 30000] [--max-body 16777216] [--overlap-decode] [--log]

  Serves classification and embeddings over HTTP. Each --model starts a model; the
  --weights, --name, --labels, --dtype, --device, --key, --resize and --crop after it are its own.
  The first model answers /v1/classify and /v1/embed; every model answers
  /v1/models/NAME/classify and /v1/models/NAME/embed (NAME: --name, else the preset or
  the config file's base name).

  POST an image as the body (Content-Type image/jpeg, image/png or image/webp; ?topk=K), or
  JSON {"image": <base64>, "topk": K}. GET /healthz, /readyz, /metrics (Prometheus), /v1/models.
  Requests are batched (up to --max-batch, waiting at most --max-wait-ms for more while the
  model is idle); past --queue-size waiting requests the answer is 429 with Retry-After.
  Images are decoded between the batches of CPU models, since both want every core
  (--overlap-decode decodes while they compute instead); a GPU model's batches always overlap decoding.
  SIGTERM or SIGINT: stop accepting, answer what was accepted, exit.
`;

const MODEL_FLAGS = ['weights', 'name', 'labels', 'dtype', 'device', 'key', 'resize', 'crop'] as const;

function modelSpecs(ordered: [string, string][]): ModelSpec[] {
  const specs: ModelSpec[] = [];
  for (const [flag, value] of ordered) {
    if (flag === 'model') {
      specs.push({ model: value });
      continue;
    }
    if (!(MODEL_FLAGS as readonly string[]).includes(flag)) continue;
    const spec = specs[specs.length - 1];
    if (!spec) throw new ArgumentError(`serve: --${flag} must follow the --model it belongs to`);
    if (flag in spec) throw new ArgumentError(`serve: --${flag} given twice for --model ${spec.model}`);
    if (flag === 'dtype') {
      spec.dtype = parseDType('serve', value);
    } else if (flag === 'device') {
      spec.device = parseDevice('serve', value);
    } else if (flag === 'resize' || flag === 'crop') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < (flag === 'crop' ? 1 : 0)) throw new ArgumentError(`serve: --${flag} must be an integer >= ${flag === 'crop' ? 1 : 0}, got '${value}'`);
      spec[flag] = n;
    } else {
      spec[flag as 'weights' | 'name' | 'labels' | 'key'] = value;
    }
  }
  return specs;
}

export async function serveCommand(argv: string[]): Promise<number> {
  const f = parseFlags('serve', argv, {
    values: ['model', ...MODEL_FLAGS, 'host', 'port', 'max-batch', 'max-wait-ms', 'queue-size', 'timeout-ms', 'max-body'],
    switches: ['log', 'overlap-decode', 'help'],
  });
  if (f.switches.has('help')) {
    process.stdout.write(serveUsage);
    return 0;
  }
  if (f.positionals.length) throw new ArgumentError(`serve: unexpected argument '${f.positionals[0]}'\n\n${serveUsage}`);
  const models = modelSpecs(f.ordered);
  if (!models.length) throw new ArgumentError(`serve: --model is required\n\n${serveUsage}`);
  // fastify loads only for this command.
  const { InferenceServer } = await import('../serve/server');
  const server = await InferenceServer.start({
    models,
    host: f.values.get('host') ?? '127.0.0.1',
    port: intFlag('serve', f, 'port', 8080, 0),
    maxBatch: intFlag('serve', f, 'max-batch', 32, 1),
    maxWaitMs: intFlag('serve', f, 'max-wait-ms', 5, 0),
    queueSize: intFlag('serve', f, 'queue-size', 256, 1),
    timeoutMs: intFlag('serve', f, 'timeout-ms', 30_000, 1),
    maxBodyBytes: intFlag('serve', f, 'max-body', 16 << 20, 1),
    logger: f.switches.has('log'),
    overlapDecode: f.switches.has('overlap-decode'),
  });
  process.stdout.write(`visionllama serve: listening on ${server.url} (models: ${server.modelNames.join(', ')})\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stdout.write(`visionllama serve: ${signal}: draining\n`);
      server.close().then(resolve, (err) => {
        process.stderr.write(`visionllama serve: shutdown: ${(err as Error).message}\n`);
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.stdout.write('visionllama serve: stopped\n');
  return 0;
}
