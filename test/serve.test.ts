// `visionllama serve` over real HTTP on 127.0.0.1: results against
// model.forward, every error answer, queueing, time limits, shutdown, memory.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as vl from '../lib';
import { InferenceServer, ServerOptions } from '../lib/serve';
import { loadImageBatch } from '../lib/data/image';
import { loadModel } from '../lib/models/load';
import { maxAbsDiff, repoRoot, settleGc } from './helpers';

const fixtures = path.join(__dirname, 'fixtures', 'models');
const pyramidTiny = { model: path.join(fixtures, 'pyramid-tiny.json'), weights: path.join(fixtures, 'pyramid-tiny.weights.safetensors'), resize: 72, crop: 64 };
const plainTiny = { model: path.join(fixtures, 'plain-tiny.json'), weights: path.join(fixtures, 'plain-tiny.weights.pth'), resize: 72, crop: 64 };

/** Noise images of assorted sizes and formats, from a fixed seed. */
async function makeImages(n: number, seed = 1): Promise<{ body: Buffer; type: string }[]> {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24);
  const out: { body: Buffer; type: string }[] = [];
  for (let i = 0; i < n; ++i) {
    const width = 64 + (i % 5) * 9, height = 64 + (i % 3) * 13;
    const raw = Buffer.alloc(width * height * 3);
    for (let j = 0; j < raw.length; ++j) raw[j] = next();
    const img = sharp(raw, { raw: { width, height, channels: 3 } });
    const fmt = ['png', 'jpeg', 'webp'][i % 3] as 'png' | 'jpeg' | 'webp';
    out.push({ body: await img.toFormat(fmt).toBuffer(), type: `image/${fmt}` });
  }
  return out;
}

async function post(url: string, body: Buffer | string, type: string): Promise<{ status: number; headers: Headers; json: any }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, headers: r.headers, json };
}

/** Keeps the CPU stream busy for a while: later model batches queue behind it. */
function occupyStream(matmuls: number): vl.Tensor {
  const a = vl.randn([2048, 2048], { seed: 3 });
  let last!: vl.Tensor;
  for (let i = 0; i < matmuls; ++i) {
    last?.dispose();
    last = vl.ops.matmul(a, a);
  }
  a.dispose();
  return last;
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

async function withServer<T>(options: Partial<ServerOptions>, fn: (s: InferenceServer) => Promise<T>): Promise<T> {
  const server = await InferenceServer.start({ models: [pyramidTiny], port: 0, ...options });
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

describe('serve', () => {
  test('64 concurrent clients get what model.forward gives for their images, batched', async () => {
    const images = await makeImages(64);
    const ref = await loadModel(pyramidTiny.model, pyramidTiny.weights);
    const batch = await loadImageBatch(images.map((i) => i.body), { resize: 72, crop: 64 });
    expect(batch.failed).toEqual([]);
    const [probs, pooled] = vl.tidy(() => {
      const p = ref.forwardPooled(batch.images!);
      return [vl.ops.softmax(ref.forward(batch.images!)), p];
    });
    const [pv, ev] = await Promise.all([probs.data(), pooled.data()]);
    const dim = pooled.shape[1];
    await withServer({ maxBatch: 16, maxWaitMs: 10 }, async (server) => {
      const answers = await Promise.all(images.map((img, i) => {
        if (i % 4 === 3) return post(`${server.url}/v1/embed`, img.body, img.type);
        if (i % 4 === 2) return post(`${server.url}/v1/classify`, JSON.stringify({ image: img.body.toString('base64'), topk: 3 }), 'application/json');
        return post(`${server.url}/v1/models/pyramid-tiny/classify?topk=3`, img.body, img.type);
      }));
      answers.forEach((a, i) => {
        expect(a.status).toBe(200);
        expect(a.json.model).toBe('pyramid-tiny');
        if (i % 4 === 3) {
          expect(a.json.dim).toBe(dim);
          expect(maxAbsDiff(a.json.embedding, ev.subarray(i * dim, (i + 1) * dim))).toBeLessThan(1e-4);
        } else {
          const row = Array.from(pv.subarray(i * 10, (i + 1) * 10));
          const want = row.map((p, k) => [p, k]).sort((x, y) => y[0] - x[0]).slice(0, 3);
          expect(a.json.predictions.map((p: any) => p.index)).toEqual(want.map((w) => w[1]));
          expect(a.json.predictions.map((p: any) => p.label)).toEqual(want.map((w) => String(w[1])));
          expect(maxAbsDiff(a.json.predictions.map((p: any) => p.prob), want.map((w) => w[0]))).toBeLessThan(1e-5);
        }
      });
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const batches = metricValue(metrics, 'visionllama_batch_size_count{model="pyramid-tiny"}');
      expect(metricValue(metrics, 'visionllama_batch_size_sum{model="pyramid-tiny"}')).toBe(64);
      expect(batches).toBeLessThan(64);  // requests shared batches
      expect(metricValue(metrics, 'visionllama_http_requests_total{route="/v1/embed",status="200"}')).toBe(16);
      expect(metricValue(metrics, 'visionllama_queue_depth{model="pyramid-tiny"}')).toBe(0);
      expect(metrics).toMatch(/visionllama_model_compute_seconds_count\{model="pyramid-tiny"\} \d+/);
      expect(metrics).toMatch(/visionllama_http_request_duration_seconds_bucket\{route="\/v1\/classify",le="\+Inf"\} 16/);
    });
    probs.dispose();
    pooled.dispose();
    batch.images!.dispose();
    ref.dispose();
  });

  test('bad requests get a status and JSON {error, code} that say what was expected', async () => {
    const [img] = await makeImages(1, 7);
    await withServer({ maxBodyBytes: 65536 }, async (server) => {
      const u = server.url;
      const cases: [Promise<{ status: number; json: any }>, number, string, RegExp][] = [
        [post(`${u}/v1/classify`, Buffer.alloc(70000, 1), 'image/png'), 413, 'payload_too_large', /limit of 65536 bytes/],
        [post(`${u}/v1/classify`, 'hello', 'text/plain'), 415, 'unsupported_media_type', /'text\/plain' is not accepted; send the image file as the body with Content-Type image\/jpeg/],
        [post(`${u}/v1/classify`, Buffer.from('not an image at all'), 'image/jpeg'), 400, 'bad_image', /not a readable image/],
        [post(`${u}/v1/classify`, img.body.subarray(0, 60), img.type), 400, 'bad_image', /not a readable image/],
        [post(`${u}/v1/classify`, Buffer.alloc(0), 'image/png'), 400, 'bad_image', /empty/],
        [post(`${u}/v1/classify`, '{"image": 12', 'application/json'), 400, 'bad_request', /not valid JSON/],
        [post(`${u}/v1/classify`, '{"picture": "abc"}', 'application/json'), 400, 'bad_request', /needs "image"/],
        [post(`${u}/v1/classify`, '{"image": "@@@"}', 'application/json'), 400, 'bad_request', /not valid base64/],
        [post(`${u}/v1/classify`, '[1, 2]', 'application/json'), 400, 'bad_request', /must be an object/],
        [post(`${u}/v1/classify?topk=11`, img.body, img.type), 400, 'bad_request', /topk must be an integer from 1 to 10/],
        [post(`${u}/v1/classify?topk=two`, img.body, img.type), 400, 'bad_request', /topk/],
        [post(`${u}/v1/models/resnet/classify`, img.body, img.type), 404, 'model_not_found', /no model named 'resnet'; this server has 'pyramid-tiny'/],
        [post(`${u}/v2/classify`, img.body, img.type), 404, 'not_found', /no route POST \/v2\/classify/],
      ];
      for (const [answer, status, code, message] of cases) {
        const a = await answer;
        expect({ status: a.status, code: a.json.code }).toEqual({ status, code });
        expect(a.json.error).toMatch(message);
      }
      const noBody = await fetch(`${u}/v1/embed`, { method: 'POST' });
      expect(noBody.status).toBe(415);
      expect(((await noBody.json()) as any).code).toBe('unsupported_media_type');
      // The server is still fine.
      expect((await post(`${u}/v1/classify`, img.body, img.type)).status).toBe(200);
      const metrics = await (await fetch(`${u}/metrics`)).text();
      expect(metricValue(metrics, 'visionllama_http_requests_total{route="/v1/classify",status="400"}')).toBeGreaterThanOrEqual(9);
      expect(metricValue(metrics, 'visionllama_queue_depth{model="pyramid-tiny"}')).toBe(0);
    });
  });

  test('a full queue answers 429 with Retry-After and /readyz says not ready; the admitted requests still complete', async () => {
    const images = await makeImages(4, 3);
    await withServer({ queueSize: 2, maxBatch: 1 }, async (server) => {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      const busy = occupyStream(12);
      const admitted = [post(`${server.url}/v1/classify`, images[0].body, images[0].type), post(`${server.url}/v1/classify`, images[1].body, images[1].type)];
      await new Promise((r) => setTimeout(r, 150));
      const rejected = await post(`${server.url}/v1/classify`, images[2].body, images[2].type);
      expect(rejected.status).toBe(429);
      expect(rejected.json.code).toBe('queue_full');
      expect(Number(rejected.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as any).reason).toMatch(/queue full: pyramid-tiny/);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      for (const a of await Promise.all(admitted)) expect(a.status).toBe(200);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      busy.dispose();
    });
  });

  test('a request not answered within timeoutMs gets 503; its batch-mates and later requests are unaffected', async () => {
    const [a, b] = await makeImages(2, 5);
    await withServer({ timeoutMs: 300 }, async (server) => {
      const busy = occupyStream(12);
      const late = await post(`${server.url}/v1/classify`, a.body, a.type);
      expect(late.status).toBe(503);
      expect(late.json.code).toBe('timeout');
      expect(late.json.error).toMatch(/did not finish within 300 ms/);
      await busy.data();
      busy.dispose();
      const ok = await post(`${server.url}/v1/classify`, b.body, b.type);
      expect(ok.status).toBe(200);
    });
  });

  test('several models by name, f32 and bf16, with class names; the first is the default', async () => {
    const [img] = await makeImages(1, 11);
    const labels = path.join(os.tmpdir(), `vl-serve-labels-${process.pid}.txt`);
    fs.writeFileSync(labels, `${Array.from({ length: 10 }, (_, i) => `class ${i}`).join('\n')}\n`);
    const models = [{ ...pyramidTiny, name: 'pyr', labels }, plainTiny, { ...plainTiny, name: 'plain-bf16', dtype: 'bf16' as const }];
    await withServer({ models }, async (server) => {
      expect(server.modelNames).toEqual(['pyr', 'plain-tiny', 'plain-bf16']);
      const list = (await (await fetch(`${server.url}/v1/models`)).json()) as any;
      expect(list.models.map((m: any) => [m.name, m.arch, m.dtype, m.default])).toEqual([
        ['pyr', 'pyramid', 'f32', true], ['plain-tiny', 'plain', 'f32', false], ['plain-bf16', 'plain', 'bf16', false]]);
      const pyr = await post(`${server.url}/v1/classify`, img.body, img.type);
      expect(pyr.json.model).toBe('pyr');
      expect(pyr.json.predictions.map((p: any) => p.label)).toEqual(pyr.json.predictions.map((p: any) => `class ${p.index}`));
      const plain = await post(`${server.url}/v1/models/plain-tiny/embed`, img.body, img.type);
      expect(plain.json.model).toBe('plain-tiny');
      expect(plain.json.dim).toBe(64);
      // bf16 weights: the same classes, probabilities within bf16 rounding of f32.
      const f32 = await post(`${server.url}/v1/models/plain-tiny/classify?topk=10`, img.body, img.type);
      const bf16 = await post(`${server.url}/v1/models/plain-bf16/classify?topk=10`, img.body, img.type);
      const byIndex = (a: any) => Object.fromEntries(a.json.predictions.map((p: any) => [p.index, p.prob]));
      const pf = byIndex(f32), pb = byIndex(bf16);
      for (let k = 0; k < 10; ++k) expect(Math.abs(pf[k] - pb[k])).toBeLessThan(0.02);
    });
    fs.writeFileSync(labels, 'just one\n');
    await expect(InferenceServer.start({ models: [{ ...pyramidTiny, labels }], port: 0 })).rejects.toThrow(/names 1 classes but model 'pyramid-tiny' has 10/);
    fs.unlinkSync(labels);
    await expect(InferenceServer.start({ models: [pyramidTiny, pyramidTiny], port: 0 })).rejects.toThrow(/two models are named 'pyramid-tiny'/);
    await expect(InferenceServer.start({ models: [{ ...pyramidTiny, weights: plainTiny.weights }], port: 0 })).rejects.toThrow(/missing|unexpected/);
  });

  test('close() under load answers every accepted request, then refuses connections', async () => {
    const images = await makeImages(24, 9);
    const server = await InferenceServer.start({ models: [pyramidTiny], port: 0, maxBatch: 4 });
    const url = server.url;
    const busy = occupyStream(8);
    const answers = images.map((img) => post(`${url}/v1/classify`, img.body, img.type));
    await new Promise((r) => setTimeout(r, 150));  // all admitted; their batches wait behind the busy stream
    const closed = server.close();
    for (const a of await Promise.all(answers)) expect(a.status).toBe(200);
    await closed;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    busy.dispose();
  });

  test('memory counters stay flat over 1000 requests', async () => {
    const images = await makeImages(8, 13);
    await withServer({ maxBatch: 8 }, async (server) => {
      const send = (i: number) => post(`${server.url}/v1/${i % 2 ? 'embed' : 'classify'}`, images[i % 8].body, images[i % 8].type);
      for (const a of await Promise.all(Array.from({ length: 16 }, (_, i) => send(i)))) expect(a.status).toBe(200);
      await vl.synchronize();
      await settleGc(() => vl.memory().cpu.gcReleased);  // tensors other tests left to the GC are gone before counting
      const before = vl.memory().cpu;
      let next = 0;
      const client = async () => {
        while (next < 1000) {
          const a = await send(next++);
          expect(a.status).toBe(200);
        }
      };
      await Promise.all(Array.from({ length: 16 }, client));
      await vl.synchronize();
      const after = vl.memory().cpu;
      expect(after.tensors).toBe(before.tensors);
      expect(after.bytes).toBe(before.bytes);
      expect(after.allocatedBytes).toBe(before.allocatedBytes);
    });
  });

  test('the serve command: SIGTERM under load answers every accepted request and exits 0', async () => {
    const images = await makeImages(40, 17);
    const { url, child, exited, output } = await serveCommand(['--model', pyramidTiny.model, '--weights', pyramidTiny.weights,
      '--crop', '224', '--port', '0', '--max-batch', '1']);
    const answers = images.map((img) => post(`${url}/v1/classify`, img.body, img.type));
    // Wait until the server holds every request (answered or queued) while most are still queued.
    const depthSeries = 'visionllama_queue_depth{model="pyramid-tiny"}';
    for (let i = 0; i < 500; ++i) {
      const m = await (await fetch(`${url}/metrics`)).text();
      const done = metricValue(m, 'visionllama_http_requests_total{route="/v1/classify",status="200"}') || 0;
      if (metricValue(m, depthSeries) + done === images.length) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGTERM');
    const statuses = (await Promise.all(answers)).map((a) => a.status);
    expect(statuses).toEqual(images.map(() => 200));
    expect(await exited).toBe(0);
    expect(output()).toMatch(/SIGTERM: draining[\s\S]*stopped/);
  });

  test('--device: a model on another device answers as on the CPU; its tensors are counted there', async () => {
    // A second CPU device (VLLAMA_CPU_DEVICES) takes the paths a GPU would: batches go to it, results come back.
    const { url, child, exited } = await serveCommand(['--model', pyramidTiny.model, '--weights', pyramidTiny.weights, '--name', 'here',
      '--crop', '64', '--model', pyramidTiny.model, '--weights', pyramidTiny.weights, '--name', 'there', '--device', 'cpu:1', '--crop', '64',
      '--port', '0'], { VLLAMA_CPU_DEVICES: '2' });
    try {
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { models: { name: string; device: string }[] };
      expect(models.models.map((m) => [m.name, m.device])).toEqual([['here', 'cpu'], ['there', 'cpu:1']]);
      for (const img of await makeImages(4, 5)) {
        const [a, b] = await Promise.all(['here', 'there'].map((name) => post(`${url}/v1/models/${name}/classify?topk=3`, img.body, img.type)));
        expect([a.status, b.status]).toEqual([200, 200]);
        expect(b.json.predictions).toEqual(a.json.predictions);
      }
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metricValue(metrics, 'visionllama_tensor_bytes{device="cpu:1"}')).toBeGreaterThan(0);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

/** `visionllama serve ARGS` in a child process; resolves once it listens. */
async function serveCommand(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, 'register-ts.js'))});
    process.argv = ['node', 'visionllama', 'serve', ...${JSON.stringify(args)}];
    require(${JSON.stringify(path.join(repoRoot, 'lib', 'cli', 'main.ts'))});`], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)));
  });
  return { url, child, exited, output: () => stdout };
}
