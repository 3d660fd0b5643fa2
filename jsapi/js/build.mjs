// build.mjs: minifies ../static/CometServerApi.js into ../static/CometServerApi.min.js
// with terser (ES5 output) and records the sizes in SIZE.md.
// Run: cd jsapi/js && npm install && npm run build
import fs from 'node:fs';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { minify } from 'terser';

const srcPath = new URL('../static/CometServerApi.js', import.meta.url);
const minPath = new URL('../static/CometServerApi.min.js', import.meta.url);
const sizePath = new URL('./SIZE.md', import.meta.url);

const src = fs.readFileSync(srcPath, 'utf8');
const hash = crypto.createHash('sha256').update(src).digest('hex').slice(0, 16);
const impl = (/var IMPL = '([^']+)'/.exec(src) || [])[1] || 'cometql-js';

const out = await minify(src, {
  ecma: 5,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: false, preamble: `/*! ${impl} | cometql CometServerApi.js, minified from source sha256:${hash} */` },
});
const min = out.code + '\n';
fs.writeFileSync(minPath, min);

const gz = (s) => zlib.gzipSync(Buffer.from(s), { level: 9 }).length;
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const rows = [
  ['`CometServerApi.js` (source)', Buffer.byteLength(src), gz(src)],
  ['`CometServerApi.min.js` (terser, ES5)', Buffer.byteLength(min), gz(min)],
];
const table = rows.map(([n, raw, g]) => `| ${n} | ${raw} B (${kib(raw)}) | ${g} B (${kib(g)}) |`).join('\n');
fs.writeFileSync(
  sizePath,
  `# Size of the browser client

Written by \`npm run build\` (build.mjs); do not edit by hand.
Version \`${impl}\`, source sha256 \`${hash}\`.

| file | bytes | gzip -9 |
|---|---|---|
${table}

The client has no dependencies. The server sends \`/CometServerApi.js\` gzip-compressed,
so the gzip column of the file it embeds is what a browser downloads.
`,
);
console.log(fs.readFileSync(sizePath, 'utf8'));
