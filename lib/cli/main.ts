#!/usr/bin/env node
/** The `visionllama` command. */
import * as path from 'path';
import { backendInfo, cpuInfo } from '../runtime';
import { VisionLlamaError } from '../errors';
import { convertCommand } from './convert';
import { forwardCommand } from './forward';
import { predictCommand } from './predict';
import { serveCommand } from './serve';
import { demoCommand, trainCommand } from './train';

const usage = `usage: visionllama <command>

commands:
  info        the addon build, CPU features, thread count and CUDA status
  convert     IN.pth OUT.safetensors [--key model] [--dtype f32|bf16]: a PyTorch
              checkpoint to safetensors, without running anything from the file
  forward     --model M --weights W --input X.npy --output Y.npy [--dtype f32|bf16|f16]: logits
              of float32 images, for conformance checks
  predict     --model M --weights W [--labels L] [--json] IMAGE...: top-5 classes of images
  serve       --model M [--weights W] [--port 8080] [--max-batch 32] ...: HTTP inference server
              with dynamic batching (see visionllama serve --help)
  train       --model M --data fashion-mnist|DIR [--epochs N] [--batch B] [--lr LR] [--opt adamw|lamb|sgd]
              [--out DIR] [--resume] ...: train a model (see visionllama train --help)
  demo        train a small VisionLLaMA on Fashion-MNIST, report its test accuracy, classify a few images
  --version   the package version
`;

function info(): void {
  const cpu = cpuInfo();
  const b = backendInfo();
  console.log(`cpu:  isa ${cpu.isa} (supported: ${cpu.supportedIsas.join(', ')}), avx512_bf16 ${cpu.avx512bf16 ? 'yes' : 'no'}, ${cpu.threads} threads`);
  console.log(`cuda: ${b.cuda.available ? `${b.cuda.deviceCount} device(s)` : `unavailable: ${b.cuda.reason}`}`);
}

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0];
  if (cmd === '--version' || cmd === '-v') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    console.log(require(path.join(__dirname, '..', '..', 'package.json')).version);
    return 0;
  }
  if (cmd === 'info') {
    info();
    return 0;
  }
  if (cmd === 'convert') return convertCommand(argv.slice(1));
  if (cmd === 'forward') return forwardCommand(argv.slice(1));
  if (cmd === 'predict') return predictCommand(argv.slice(1));
  if (cmd === 'serve') return serveCommand(argv.slice(1));
  if (cmd === 'train') return trainCommand(argv.slice(1));
  if (cmd === 'demo') return demoCommand(argv.slice(1));
  process.stderr.write(cmd && cmd !== '--help' && cmd !== '-h' ? `unknown command '${cmd}'\n\n${usage}` : usage);
  return cmd && cmd !== '--help' && cmd !== '-h' ? 2 : 0;
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (err) => {
  process.stderr.write(`visionllama: ${err instanceof VisionLlamaError ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
