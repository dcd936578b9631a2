// Lets Node require lib/*.ts directly, using the TypeScript compiler's
// transpileModule (no type check; `npm test` runs tsc first). Used when running
// from the sources: child processes in tests, benches, and DataLoader workers
// started from lib/data/*.ts. The published package runs dist/*.js and never loads it.
// Outputs are cached by content hash under node_modules/.cache, so that a process
// (or worker thread) whose sources are unchanged need not load the compiler at all.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const cacheDir = path.join(__dirname, '..', 'node_modules', '.cache', 'visionllama-ts');
// Outputs depend on the source, the compiler version and this hook's options (so on this file).
const salt = `${require('typescript/package.json').version}\0${fs.readFileSync(__filename, 'utf8')}`;
let ts = null;

function transpile(source, filename) {
  ts = ts || require('typescript');
  return ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: filename,
  }).outputText;
}

require.extensions['.ts'] = function (module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const key = crypto.createHash('sha256').update(`${salt}\0${filename}\0${source}`).digest('hex');
  const cached = path.join(cacheDir, `${key}.js`);
  let out;
  try {
    out = fs.readFileSync(cached, 'utf8');
  } catch {
    out = transpile(source, filename);
    try {
      fs.mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.${require('worker_threads').threadId}`;
      fs.writeFileSync(tmp, out);
      fs.renameSync(tmp, cached); // atomic: concurrent processes never read half a file
    } catch {
      // no cache (read-only tree): still works, just slower
    }
  }
  module._compile(out, filename);
};
