// `npm run bench -- serve [--json]`: the HTTP server under load (autocannon on
// loopback) with pyramid-S: batched (--max-batch 32) against --max-batch 1 at
// concurrency 1, 8 and 32, and --max-batch 8 at concurrency 32 against the
// model's own images/s at batch 8 in this process (measured right before and
// after it), for the server's overhead (HTTP + decode). Every request posts the
// same 320x240 JPEG. The weights are random (speed does not depend on them).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
require('../test/register-ts.js');
const vl = require('../lib/index.ts');
const { decodeImage, pixelsToChw, IMAGENET_MEAN, IMAGENET_STD } = require('../lib/data/decode.ts');

const root = path.join(__dirname, '..');
const outDir = path.join(root, 'build', 'bench');

function arg(args, name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
}

async function makeJpeg() {
  const sharp = require('sharp');
  const width = 320, height = 240;
  const raw = Buffer.alloc(width * height * 3);
  let s = 12345;
  for (let y = 0; y < height; ++y) {
    for (let x = 0; x < width; ++x) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const n = (s >>> 24) / 64;  // mild sensor-like noise: a photo-like 320x240 JPEG of about 20 KB
      const o = (y * width + x) * 3;
      raw[o] = Math.min(255, (x * 255) / width + n);
      raw[o + 1] = Math.min(255, (y * 255) / height + n);
      raw[o + 2] = Math.min(255, 128 + 60 * Math.sin(x / 17) * Math.cos(y / 23) + n);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

async function weightsFor(preset) {
  const file = path.join(outDir, `${preset}.random.safetensors`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(outDir, { recursive: true });
  vl.manualSeed(0);
  const m = vl.models.create(preset);
  await vl.io.save(file, new Map(m.namedParameters()));
  m.dispose();
  return file;
}

/** The model alone: images/s at batch 8 on one decoded image repeated. */
async function modelImagesPerSecond(preset, weights, jpeg, seconds) {
  const model = await vl.models.loadModel(preset, weights);
  const img = await decodeImage(jpeg, { resize: 256, crop: 224 });
  const B = 8;
  const all = new Float32Array(B * img.data.length);
  for (let b = 0; b < B; ++b) all.set(img.data, b * img.data.length);
  const x = vl.tensor(all, [B, 3, 224, 224]);
  const run = async () => {
    const y = model.forward(x);
    await y.data();
    y.dispose();
  };
  await run();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || n < 3) {
    await run();
    n += 1;
  }
  const ips = (n * B * 1000) / (performance.now() - t0);
  x.dispose();
  model.dispose();
  return ips;
}

function startServer(preset, weights, extra) {
  const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(path.join(root, 'test', 'register-ts.js'))});
    process.argv = ['node', 'visionllama', 'serve', '--model', ${JSON.stringify(preset)}, '--weights', ${JSON.stringify(weights)}, '--port', '0', ...${JSON.stringify(extra)}];
    require(${JSON.stringify(path.join(root, 'lib', 'cli', 'main.ts'))});`], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`bench serve: the server exited (${code}) before listening`)));
  });
  return { child, url };
}

/**
 * Preprocessing of the bench JPEG, one image at a time: ours (sharp decodes,
 * one native pass resizes, crops and normalizes) against the same transform
 * done by libvips (bicubic resize and crop in the sharp pipeline) plus the
 * JavaScript normalization. Wall and CPU milliseconds per image.
 */
async function preprocessMs(jpeg, seconds) {
  const sharp = require('sharp');
  sharp.cache(false);  // as the server runs it
  const ours = () => decodeImage(jpeg, { resize: 256, crop: 224 });
  const libvips = async () => {
    const raw = await sharp(jpeg, { failOn: 'error' }).rotate()
      .resize({ width: 341, height: 256, fit: 'fill', kernel: 'cubic' }).extract({ left: 58, top: 16, width: 224, height: 224 })
      .removeAlpha().toColourspace('srgb').raw().toBuffer();
    return pixelsToChw(raw, 224, 224, IMAGENET_MEAN, IMAGENET_STD);
  };
  const time = async (f) => {
    for (let i = 0; i < 10; ++i) await f();
    let n = 0;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000 || n < 20) {
      await f();
      n += 1;
    }
    const c = process.cpuUsage(c0);
    return { wall: (performance.now() - t0) / n, cpu: (c.user + c.system) / 1000 / n };
  };
  // Interleaved halves, so drift hits both alike.
  const a1 = await time(ours), b1 = await time(libvips), a2 = await time(ours), b2 = await time(libvips);
  return {
    ours: { wall: (a1.wall + a2.wall) / 2, cpu: (a1.cpu + a2.cpu) / 2 },
    libvips: { wall: (b1.wall + b2.wall) / 2, cpu: (b1.cpu + b2.cpu) / 2 },
  };
}

function histogram(text, name, model) {
  const get = (suffix) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}_${suffix}{model="${model}"} `));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  return { sum: get('sum'), count: get('count') };
}

/** Waits until the server holds no request: autocannon stops at its deadline with requests in flight, and their batch would delay the next run's first requests. */
async function drained(url, model) {
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`visionllama_queue_depth{model="${model}"} `));
    if (!line || Number(line.split(' ').pop()) === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function peakRssMb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

async function load(url, jpeg, connections, seconds) {
  const autocannon = require('autocannon');
  return new Promise((resolve, reject) => {
    autocannon({
      url: `${url}/v1/classify`, method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: jpeg,
      connections, duration: seconds, timeout: 60,
    }, (err, r) => (err ? reject(err) : resolve(r)));
  });
}

async function serveBench(args) {
  const json = args.includes('--json');
  const preset = arg(args, '--preset', 'pyramid-s');
  const seconds = Number(arg(args, '--seconds', 10));
  const maxWait = Number(arg(args, '--max-wait-ms', 5));
  const warmup = Number(arg(args, '--warmup', 4));
  const serverFlags = args.includes('--overlap-decode') ? ['--overlap-decode'] : [];
  const model = preset;
  const jpeg = await makeJpeg();
  const weights = await weightsFor(preset);
  const rows = [];
  const emit = (row) => {
    rows.push(row);
    if (json) console.log(JSON.stringify(row));
  };
  // The machine's speed drifts: the model alone is measured right before and
  // right after the batched concurrency-32 run, and the mean is its peer.
  const alone = async (when) => {
    const ips = await modelImagesPerSecond(preset, weights, jpeg, Math.max(3, seconds / 2));
    emit({ bench: 'serve', case: `${preset} model alone, batch 8 (${when})`, img_s: +ips.toFixed(2) });
    return ips;
  };
  const aloneRuns = [];
  const pre = await preprocessMs(jpeg, Math.max(1, seconds / 4));
  emit({ bench: 'serve', case: 'preprocess 320x240 JPEG -> 3x224x224 (decode, resize 256, crop 224, normalize), ms per image',
    ours_ms: +pre.ours.wall.toFixed(3), ours_cpu_ms: +pre.ours.cpu.toFixed(3), peer: 'libvips resize+crop, JS normalize',
    peer_ms: +pre.libvips.wall.toFixed(3), peer_cpu_ms: +pre.libvips.cpu.toFixed(3), ratio: +(pre.libvips.wall / pre.ours.wall).toFixed(3) });

  const results = {};
  const modes = [
    ['batched', ['--max-batch', '32', '--max-wait-ms', String(maxWait), ...serverFlags], [1, 8, 32]],
    ['max-batch 8', ['--max-batch', '8', '--max-wait-ms', String(maxWait), ...serverFlags], [32]],
    ['max-batch 1', ['--max-batch', '1', ...serverFlags], [1, 8, 32]],
  ];
  for (const [mode, extra, concurrencies] of modes) {
    const { child, url: urlP } = startServer(preset, weights, extra);
    const url = await urlP;
    for (const c of concurrencies) {
      // Warm-up at this concurrency: weight packing, and allocator blocks for its batch sizes.
      await load(url, jpeg, c, warmup);
      await drained(url, model);
      if (mode === 'max-batch 8') aloneRuns.push(await alone('before'));
      const before = await (await fetch(`${url}/metrics`)).text();
      const cpu0 = process.cpuUsage();
      const r = await load(url, jpeg, c, seconds);
      const cpu = process.cpuUsage(cpu0);
      await drained(url, model);
      const after = await (await fetch(`${url}/metrics`)).text();
      const hb = histogram(before, 'visionllama_model_compute_seconds', model);
      const ha = histogram(after, 'visionllama_model_compute_seconds', model);
      const sb = histogram(before, 'visionllama_batch_size', model);
      const sa = histogram(after, 'visionllama_batch_size', model);
      const batches = ha.count - hb.count;
      const batchMs = batches ? ((ha.sum - hb.sum) * 1000) / batches : NaN;
      const row = {
        bench: 'serve', case: `${mode}, concurrency ${c}`, rps: +(r.requests.total / r.duration).toFixed(2),
        p50_ms: r.latency.p50, p99_ms: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx,
        client_cpu: +((cpu.user + cpu.system) / 1e6 / r.duration).toFixed(3),
        mean_batch: batches ? +((sa.sum - sb.sum) / batches).toFixed(2) : null, batch_ms: +batchMs.toFixed(1),
      };
      if (mode === 'batched') {
        row.p99_bound_ms = +(maxWait + 2 * batchMs).toFixed(1);
        row.p99_within_bound = r.latency.p99 <= row.p99_bound_ms;
      }
      results[`${mode}:${c}`] = row;
      emit(row);
      if (mode === 'max-batch 8') aloneRuns.push(await alone('after'));
    }
    const rss = peakRssMb(child.pid);
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
    emit({ bench: 'serve', case: `${mode}: server peak RSS`, peak_rss_mb: rss });
  }
  const b = results['batched:32'], u = results['max-batch 1:32'];
  const modelIps = (aloneRuns[0] + aloneRuns[1]) / 2;
  emit({ bench: 'serve', case: 'batching gain at concurrency 32', ours_rps: b.rps, peer: '--max-batch 1', peer_rps: u.rps, ratio: +(b.rps / u.rps).toFixed(3), target: 1.2 });
  const e = results['max-batch 8:32'];
  emit({ bench: 'serve', case: 'server img/s (--max-batch 8, concurrency 32) / model img/s at batch 8', ours_rps: e.rps, peer: 'model alone, batch 8 (mean of before and after)', peer_img_s: +modelIps.toFixed(2), ratio: +(e.rps / modelIps).toFixed(3), target: 0.85 });
  emit({ bench: 'serve', case: 'preprocess ms per image / model ms per image at batch 8', ours_ms: +pre.ours.wall.toFixed(3), peer: 'model alone, batch 8', peer_ms: +(1000 / modelIps).toFixed(3), ratio: +(pre.ours.wall * modelIps / 1000).toFixed(3) });
  emit({ bench: 'serve', case: 'server img/s (--max-batch 32, concurrency 32) / model img/s at batch 8', ours_rps: b.rps, peer: 'model alone, batch 8 (mean of before and after)', peer_img_s: +modelIps.toFixed(2), ratio: +(b.rps / modelIps).toFixed(3) });
  if (!json) console.table(rows);
}

module.exports = { serveBench };
