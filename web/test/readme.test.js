// README.md's option tables against DEFAULTS (defaults.js): every default in
// the table is the object's, and every default in the object is in the table;
// likewise the `[option=default]` of the JSDoc (typedefs.js), which the
// declarations carry to an application's editor.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../durablews.js';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const README = fs.readFileSync(path.join(WEB, 'README.md'), 'utf8');

/**
 * The rows of the first table after `heading`, as {option, default}: the
 * first two cells without their backticks on the option.
 * @param {string} heading
 */
function tableAfter(heading) {
  const lines = README.split('\n');
  const start = lines.indexOf(heading);
  assert.ok(start >= 0, `README.md has no heading ${JSON.stringify(heading)}`);
  let i = start + 1;
  while (i < lines.length && !lines[i].startsWith('|')) i++;
  const rows = [];
  for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) {
    const cells = lines[i].split(' | ').map((c) => c.replace(/^\| |\s*\|$/g, '').trim());
    for (const option of cells[0].split(', ')) rows.push({ option: option.replace(/`/g, ''), default: cells[1] });
  }
  assert.ok(rows.length > 0, `no table after ${heading}`);
  return rows;
}

/** A default as the README writes it: `10000`, `'tab'`, `true`, `{initialMs: 500, maxMs: 30000}`. */
function literal(v) {
  if (typeof v === 'string') return `'${v}'`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}: ${literal(x)}`).join(', ')}}`;
  return String(v);
}

/** A cell holding one literal value (not `—`, `required ...`, or a name such as `sessionStorage`). */
const LITERAL = /^`(-?\d+|true|false|'[^']*'|\{.*\})`$/;

const TABLES = [
  ['### `new DurableClient(options)`', Object.fromEntries(Object.entries(DEFAULTS).filter(([k]) => k !== 'session' && k !== 'receipts' && k !== 'subscribe'))],
  ['### `session` options', DEFAULTS.session],
  ['### `receipts` options', DEFAULTS.receipts],
  ['### `client.subscribe(spec, handler?)` options', DEFAULTS.subscribe],
];

for (const [heading, defaults] of TABLES) {
  test(`README ${heading}: the default column is DEFAULTS`, () => {
    const rows = tableAfter(heading);
    for (const [option, value] of Object.entries(defaults)) {
      const row = rows.find((r) => r.option === option);
      assert.ok(row, `README ${heading} has no row for ${option} (DEFAULTS has ${literal(value)})`);
      assert.equal(row.default, `\`${literal(value)}\``, `README ${heading}: ${option}`);
    }
    for (const row of rows) {
      if (LITERAL.test(row.default)) assert.ok(row.option in defaults, `README ${heading}: ${row.option} has default ${row.default}, DEFAULTS has none`);
    }
  });
}

test('typedefs.js: every [option=default] of ClientOptions, SessionOptions, ReceiptOptions and SubscribeOptions is DEFAULTS', () => {
  const src = fs.readFileSync(path.join(WEB, 'typedefs.js'), 'utf8');
  const blocks = { ClientOptions: TABLES[0][1], SessionOptions: DEFAULTS.session, ReceiptOptions: DEFAULTS.receipts, SubscribeOptions: DEFAULTS.subscribe };
  let checked = 0;
  for (const [name, defaults] of Object.entries(blocks)) {
    const start = src.indexOf(`@typedef {object} ${name}\n`);
    assert.ok(start >= 0, `typedefs.js has no ${name}`);
    const end = src.indexOf('@typedef', start + 1);
    const block = src.slice(start, end < 0 ? undefined : end);
    for (const m of block.matchAll(/@property \{[^\n]*\} \[(\w+)=([^\]\s]+)\]/g)) {
      const [, option, value] = m;
      if (!LITERAL.test(`\`${value}\``)) continue; // e.g. storage=sessionStorage
      assert.ok(option in defaults, `typedefs.js ${name}: ${option} has default ${value}, DEFAULTS has none`);
      assert.equal(value, literal(defaults[option]), `typedefs.js ${name}: ${option}`);
      checked++;
    }
  }
  assert.ok(checked >= 18, `only ${checked} defaults found in typedefs.js`);
});

test('DEFAULTS is frozen through and through', () => {
  const walk = (o, where) => {
    assert.ok(Object.isFrozen(o), `${where} is not frozen`);
    for (const [k, v] of Object.entries(o)) if (v !== null && typeof v === 'object') walk(v, `${where}.${k}`);
  };
  walk(DEFAULTS, 'DEFAULTS');
  assert.throws(() => {
    'use strict';
    /** @type {any} */ (DEFAULTS.reconnect).maxMs = 1;
  }, TypeError);
});
