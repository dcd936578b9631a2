// Lets Node require lib/*.ts directly, using the TypeScript compiler's
// transpileModule (no type check; `npm test` runs tsc first). Used when running
// from the sources: child processes in tests, benches, and DataLoader workers
// started from lib/data/*.ts. The published package runs dist/*.js and never loads it.
const fs = require('fs');
const ts = require('typescript');
require.extensions['.ts'] = function (module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: filename,
  });
  module._compile(out.outputText, filename);
};
