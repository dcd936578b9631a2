#!/usr/bin/env node
/** The `visionllama` command. Subcommands arrive with the models and training. */
import * as path from 'path';
import { backendInfo, cpuInfo } from '../runtime';
import { VisionLlamaError } from '../errors';

const usage = `usage: visionllama <command>

commands:
  info        the addon build, CPU features, thread count and CUDA status
  --version   the package version
`;

function info(): void {
  const cpu = cpuInfo();
  const b = backendInfo();
  console.log(`cpu:  isa ${cpu.isa} (supported: ${cpu.supportedIsas.join(', ')}), avx512_bf16 ${cpu.avx512bf16 ? 'yes' : 'no'}, ${cpu.threads} threads`);
  console.log(`cuda: ${b.cuda.available ? `${b.cuda.deviceCount} device(s)` : `unavailable: ${b.cuda.reason}`}`);
}

function main(argv: string[]): number {
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
  process.stderr.write(cmd && cmd !== '--help' && cmd !== '-h' ? `unknown command '${cmd}'\n\n${usage}` : usage);
  return cmd && cmd !== '--help' && cmd !== '-h' ? 2 : 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`visionllama: ${err instanceof VisionLlamaError ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
