// Times ONNX Runtime (onnxruntime-node, CPU execution provider) on the model
// and inputs that squeeze-bench-runtime just timed, and compares ORT's outputs
// with ours. Usage:
//
//   node time_ort.js --ours=ours.json --parity_dir=DIR [--seconds=1] [--min_iterations=10] [--warmup=5]
//
// ours.json is squeeze-bench-runtime's stdout for the same --parity_dir: it
// names the model, the input and its shape, and the (threads, batch)
// configurations. Ours "threads":N maps to ORT intraOpNumThreads=N with
// interOpNumThreads=1 and sequential execution; "threads":0 (our default)
// maps to ORT's default session options. Timing matches core/eval/latency.cc:
// warm-up runs, then single runs until both the minimum count and the minimum
// timed seconds are reached; nearest-rank percentiles. ORT's times include
// the Node binding (one N-API call and the output tensor per run).
//
// The input is DIR/input.f32 (float32) or DIR/input.i64 (int64 token ids),
// as ours.json's "input_dtype" says (float32 when absent).
//
// Prints one JSON object: per configuration our p50 and ORT's p50/p95, the
// ratio ours/ORT of the p50s, the largest absolute difference between the
// two runtimes' first outputs, and that difference relative to the largest
// magnitude among ORT's outputs (max_rel_diff).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

function parseArgs(argv) {
  const args = {seconds: 1, min_iterations: 10, warmup: 5};
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`time_ort.js: unexpected argument "${arg}"`);
    args[match[1]] = match[1] === 'ours' || match[1] === 'parity_dir' ? match[2] : Number(match[2]);
  }
  if (!args.ours || !args.parity_dir) throw new Error('time_ort.js: --ours and --parity_dir are required');
  return args;
}

function readFloats(file) {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function readInt64s(file) {
  const bytes = fs.readFileSync(file);
  const copy = new Uint8Array(bytes);  // BigInt64Array needs 8-byte alignment
  return new BigInt64Array(copy.buffer, 0, copy.byteLength / 8);
}

function nearestRank(sorted, percent) {
  const rank = Math.ceil((percent / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

async function measure(session, feeds, args) {
  for (let i = 0; i < args.warmup; ++i) await session.run(feeds);
  const samples = [];
  let total = 0;
  while (samples.length < args.min_iterations || total < args.seconds) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    samples.push(seconds);
    total += seconds;
  }
  samples.sort((a, b) => a - b);
  return {
    iterations: samples.length,
    p50_ms: nearestRank(samples, 50) * 1e3,
    p95_ms: nearestRank(samples, 95) * 1e3,
    mean_ms: (total / samples.length) * 1e3,
  };
}

function sessionOptions(threads) {
  if (threads === 0) return {};
  return {intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential'};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ours = JSON.parse(fs.readFileSync(args.ours, 'utf8'));
  const int64 = ours.input_dtype === 'int64';
  const input = int64 ? readInt64s(path.join(args.parity_dir, 'input.i64'))
                      : readFloats(path.join(args.parity_dir, 'input.f32'));
  const exampleShape = ours.input_shape.slice(1);
  const exampleSize = exampleShape.reduce((a, b) => a * b, 1);
  const results = [];
  const sessions = new Map();
  for (const row of ours.results) {
    if (!sessions.has(row.threads)) {
      sessions.set(row.threads, await ort.InferenceSession.create(ours.model, sessionOptions(row.threads)));
    }
    const session = sessions.get(row.threads);
    const tensor = new ort.Tensor(int64 ? 'int64' : 'float32', input.subarray(0, row.batch * exampleSize),
                                  [row.batch, ...exampleShape]);
    const feeds = {[ours.input]: tensor};
    const output = (await session.run(feeds))[session.outputNames[0]].data;
    const expected = readFloats(path.join(args.parity_dir, `output_t${row.threads}_b${row.batch}.f32`));
    if (output.length !== expected.length) {
      throw new Error(`time_ort.js: ${ours.model} batch ${row.batch}: ORT gave ${output.length} ` +
                      `output values, ours ${expected.length}`);
    }
    let maxAbsDiff = 0;
    let maxAbsOrt = 0;
    for (let i = 0; i < output.length; ++i) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(output[i] - expected[i]));
      maxAbsOrt = Math.max(maxAbsOrt, Math.abs(output[i]));
    }
    const stats = await measure(session, feeds, args);
    results.push({
      threads: row.threads,
      batch: row.batch,
      ours_p50_ms: row.p50_ms,
      ours_p95_ms: row.p95_ms,
      ort_iterations: stats.iterations,
      ort_p50_ms: stats.p50_ms,
      ort_p95_ms: stats.p95_ms,
      ratio: row.p50_ms / stats.p50_ms,
      max_abs_diff: maxAbsDiff,
      max_rel_diff: maxAbsOrt > 0 ? maxAbsDiff / maxAbsOrt : maxAbsDiff,
    });
  }
  console.log(JSON.stringify({
    model: ours.model,
    ort_version: ort.env.versions.common,
    seed: ours.seed,
    results,
  }));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
