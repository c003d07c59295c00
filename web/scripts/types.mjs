// Generates types/*.d.ts from the JSDoc: `tsc -p tsconfig.json` (checkJs,
// declaration, emitDeclarationOnly), then drops the classes' underscore
// members (fields and methods the JavaScript keeps private by convention), so
// that an application's editor and type-checker see only the public API.
//
//   node scripts/types.mjs [outDir]     (default: types; the test uses a temp dir)

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.resolve(process.argv[2] ?? path.join(WEB, 'types'));
const tsc = path.join(WEB, 'node_modules', '.bin', 'tsc');
try {
  execFileSync(tsc, ['-p', 'tsconfig.json', '--outDir', outDir], { cwd: WEB, stdio: ['ignore', 'inherit', 'inherit'] });
} catch {
  console.error('types: tsc reported errors (above)');
  process.exit(1);
}

/**
 * Remove `    _name...` class members with their doc comment. A member ends on
 * the first line where its brackets are balanced again.
 * @param {string} text
 */
export function stripPrivate(text) {
  const lines = text.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^ {4}_[A-Za-z0-9_$]*[?]?[:(<]/.test(lines[i])) {
      out.push(lines[i]);
      continue;
    }
    // Drop the doc comment just above it.
    if (out.length && /^ {5}\*\/$|^ {4}\/\*\*.*\*\/$/.test(out.at(-1))) {
      while (out.length && !/^ {4}\/\*\*/.test(out.at(-1))) out.pop();
      out.pop();
    }
    let depth = 0;
    for (; i < lines.length; i++) {
      for (const c of lines[i]) {
        if ('{[('.includes(c)) depth++;
        else if ('}])'.includes(c)) depth--;
      }
      if (depth <= 0 && /;\s*$/.test(lines[i])) break;
    }
  }
  return out.join('\n');
}

for (const f of fs.readdirSync(outDir)) {
  if (!f.endsWith('.d.ts')) continue;
  const p = path.join(outDir, f);
  fs.writeFileSync(p, stripPrivate(fs.readFileSync(p, 'utf8')));
}
