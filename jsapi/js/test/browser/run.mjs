// Runs the browser tests (every *.test.mjs beside this file, or those whose
// names contain one of the arguments) with node's test runner, one file at a
// time, against a running cometql. scripts/browser-tests.sh starts a server
// and calls this; see lib.mjs for the environment it needs.
//
//   node test/browser/run.mjs [name ...]
//
// Exits non-zero when a test fails.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.mjs') && (!only.length || only.some((o) => f.includes(o))))
  .sort()
  .map((f) => path.join(dir, f));
if (!files.length) {
  console.error(`no test file matches ${only.join(' ')}`);
  process.exit(2);
}
if (!process.env.COMETQL_HTTP || !process.env.COMETQL_MYSQL) {
  console.error('set COMETQL_HTTP, COMETQL_MYSQL and COMETQL_PASSWORD, or run scripts/browser-tests.sh');
  process.exit(2);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
