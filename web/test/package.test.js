// The package as published: the sources type-check (tsc --checkJs), the
// committed declarations (types/) are what tsc generates from the JSDoc now, a
// TypeScript application compiles against them through package.json
// "exports", and `npm pack` ships exactly the intended files.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(WEB, 'node_modules', '.bin', 'tsc');
const pkg = JSON.parse(fs.readFileSync(path.join(WEB, 'package.json'), 'utf8'));

async function tsc(...args) {
  try {
    return await run(TSC, args, { cwd: WEB });
  } catch (e) {
    throw new Error(`tsc ${args.join(' ')} failed:\n${e.stdout}${e.stderr}`);
  }
}

test('sources type-check (tsc --checkJs) and types/*.d.ts are current (run `npm run types` after changing the JSDoc)', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'durablews-types-'));
  try {
    try {
      await run(process.execPath, [path.join(WEB, 'scripts', 'types.mjs'), out], { cwd: WEB });
    } catch (e) {
      throw new Error(`scripts/types.mjs (tsc --checkJs + declarations) failed:\n${e.stdout}${e.stderr}`);
    }
    const generated = fs.readdirSync(out).sort();
    assert.deepEqual(fs.readdirSync(path.join(WEB, 'types')).sort(), generated, 'types/ holds exactly the generated declarations: run `npm run types`');
    for (const f of generated) {
      const want = fs.readFileSync(path.join(out, f), 'utf8');
      const have = fs.readFileSync(path.join(WEB, 'types', f), 'utf8');
      assert.ok(have === want, `types/${f} is stale: run \`npm run types\` in web/ and commit it`);
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('a TypeScript application compiles against the package (strict), and no private member is in the declarations', async () => {
  await tsc('-p', 'test/ts/tsconfig.json');
  for (const f of fs.readdirSync(path.join(WEB, 'types'))) {
    assert.doesNotMatch(fs.readFileSync(path.join(WEB, 'types', f), 'utf8'), /^ {4}_/m, `types/${f}`);
  }
  assert.match(fs.readFileSync(path.join(WEB, 'types', 'client.d.ts'), 'utf8'), /^ {4}ready\(\): Promise<void>;$/m);
});

test('package.json: a publishable package with @stomp/stompjs as its only runtime dependency, internals not exported', () => {
  assert.equal(pkg.private, undefined, 'not private');
  assert.match(pkg.name, /^@durablews\/web$/);
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.deepEqual(Object.keys(pkg.dependencies), ['@stomp/stompjs']);
  assert.equal(pkg.types, './types/durablews.d.ts');
  assert.deepEqual(pkg.exports, {
    '.': { types: './types/durablews.d.ts', default: './durablews.js' },
    './package.json': './package.json',
  });
});

test('npm pack ships exactly the entry point, the modules beside it, their declarations, README and package.json', async () => {
  let stdout;
  try {
    ({ stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: WEB }));
  } catch (e) {
    throw new Error(`npm pack --dry-run failed:\n${e.stdout}${e.stderr}`);
  }
  const files = JSON.parse(stdout)[0].files.map((f) => f.path).sort();
  const modules = [
    'client.js',
    'defaults.js',
    'durablews.js',
    'errors.js',
    'internal.js',
    'leader.js',
    'receipts.js',
    'session.js',
    'shared-transport.js',
    'subscription.js',
    'tab.js',
    'transport.js',
    'typedefs.js',
  ];
  assert.deepEqual(files, ['README.md', 'package.json', ...modules, ...modules.map((m) => `types/${m.replace(/\.js$/, '.d.ts')}`)].sort());
  // Every module the entry point loads is packed: nothing it needs is left out.
  const local = new Set();
  const visit = (f) => {
    if (local.has(f)) return;
    local.add(f);
    const src = fs.readFileSync(path.join(WEB, f), 'utf8');
    for (const m of src.matchAll(/^(?:import|export)\b[^;]*?from '\.\/([^']+)'/gms)) visit(m[1]);
  };
  visit('durablews.js');
  assert.deepEqual([...local].sort(), modules.filter((m) => m !== 'typedefs.js'));
});

test('the entry point exports the public API and nothing else', async () => {
  const api = await import('../durablews.js');
  assert.deepEqual(Object.keys(api).sort(), ['DEFAULTS', 'DurableClient', 'HandlerTimeoutError', 'SessionError', 'Subscription', 'memoryStorage']);
});

test('the import-map entry the README gives exists in the installed @stomp/stompjs', () => {
  const stomp = JSON.parse(fs.readFileSync(path.join(WEB, 'node_modules/@stomp/stompjs/package.json'), 'utf8'));
  assert.match(stomp.version, /^7\./);
  assert.ok(fs.existsSync(path.join(WEB, 'node_modules/@stomp/stompjs/esm6/index.js')));
});
