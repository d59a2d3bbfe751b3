// Folds time_ort.js outputs (one JSON object per file: one model, one run)
// into one Markdown table: per model, batch and thread setting, the median
// over runs of our p50, ORT's p50 and the per-run ratio ours/ORT, and the
// largest parity difference seen in any run (absolute, and relative to the
// largest ORT output magnitude). The last column lists every run's ratio,
// so that a noisy machine shows as a spread.
//
//   node report.js run1_mlp.json run1_cnn.json run2_mlp.json ...
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const kGoalRatio = 1.5;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const rows = new Map();
for (const file of process.argv.slice(2)) {
  const run = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const result of run.results) {
    const key = `${run.model}\t${result.batch}\t${result.threads}`;
    if (!rows.has(key)) {
      rows.set(key, {model: path.basename(run.model), batch: result.batch, threads: result.threads,
                     ours: [], ort: [], ratio: [], diff: 0, rel: 0});
    }
    const row = rows.get(key);
    row.ours.push(result.ours_p50_ms);
    row.ort.push(result.ort_p50_ms);
    row.ratio.push(result.ratio);
    // null (NaN in JSON) poisons the row on purpose: parity failed.
    row.diff = result.max_abs_diff === null ? NaN : Math.max(row.diff, result.max_abs_diff);
    row.rel = result.max_rel_diff === null ? NaN : Math.max(row.rel, result.max_rel_diff ?? 0);
  }
}

const runs = Math.max(0, ...[...rows.values()].map((row) => row.ratio.length));
console.log(`| model | batch | threads | ours p50 ms | ORT p50 ms | ours/ORT | ≤ ${kGoalRatio}× | max abs diff | max rel diff | runs' ratios |`);
console.log('| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |');
for (const row of rows.values()) {
  const ratio = median(row.ratio);
  console.log(`| ${row.model} | ${row.batch} | ${row.threads === 0 ? 'default' : row.threads} | ` +
              `${median(row.ours).toFixed(3)} | ${median(row.ort).toFixed(3)} | ` +
              `${ratio.toFixed(2)}× | ${ratio <= kGoalRatio ? 'yes' : 'no'} | ` +
              `${row.diff.toExponential(1)} | ${row.rel.toExponential(1)} | ` +
              `${row.ratio.map((r) => r.toFixed(2)).join(' ')} |`);
}
console.log(`(medians of ${runs} run${runs === 1 ? '' : 's'}; max abs/rel diff: largest over runs; rel = abs / max |ORT output|)`);
