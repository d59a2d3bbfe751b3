// Runs one ONNX model in ONNX Runtime (onnxruntime-node, CPU) on a raw
// float32 input and writes its first output as raw float32. Used by
// scripts/check-exports.sh to check that exported QDQ models load and run in
// ORT and agree with Squeeze's runtime on the same inputs. Usage:
//
//   node run_ort.js MODEL.onnx INPUT.f32 SHAPE OUTPUT.f32 [--batch=N] [--optimization=all]
//
// SHAPE is the input's shape, comma-separated ("10000,1,28,28"); the input
// feeds the model's first input. The model runs --batch rows of the first
// dimension at a time (default: all at once) with one intra-op thread, at
// graph optimization level --optimization (disabled, basic, extended or
// all; default all, where ORT fuses QDQ patterns into integer kernels).
// Prints one JSON line: the model, ORT's version, the output's shape and the
// optimization level.
'use strict';

const fs = require('node:fs');
const ort = require('onnxruntime-node');

async function main() {
  const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const flags = Object.fromEntries(process.argv.slice(2).filter((a) => a.startsWith('--'))
    .map((a) => a.slice(2).split('=')));
  if (positional.length !== 4) {
    throw new Error('usage: node run_ort.js MODEL.onnx INPUT.f32 SHAPE OUTPUT.f32 [--batch=N]');
  }
  const [model, inputPath, shapeText, outputPath] = positional;
  const shape = shapeText.split(',').map(Number);
  const bytes = fs.readFileSync(inputPath);
  const input = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
  if (input.length !== shape[0] * rowSize) {
    throw new Error(`run_ort.js: ${inputPath} holds ${input.length} floats, shape ${shapeText} wants ${shape[0] * rowSize}`);
  }
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: flags.optimization || 'all'});
  const batch = Number(flags.batch || shape[0]);
  const chunks = [];
  let outShape = null;
  for (let begin = 0; begin < shape[0]; begin += batch) {
    const rows = Math.min(batch, shape[0] - begin);
    const tensor = new ort.Tensor('float32', input.subarray(begin * rowSize, (begin + rows) * rowSize),
                                  [rows, ...shape.slice(1)]);
    const output = (await session.run({[session.inputNames[0]]: tensor}))[session.outputNames[0]];
    if (output.type !== 'float32') throw new Error(`run_ort.js: output is ${output.type}, want float32`);
    chunks.push(Buffer.from(output.data.buffer, output.data.byteOffset, output.data.byteLength));
    outShape = outShape ? [outShape[0] + output.dims[0], ...output.dims.slice(1)] : [...output.dims];
  }
  fs.writeFileSync(outputPath, Buffer.concat(chunks));
  console.log(JSON.stringify({model, ort_version: ort.env.versions.common, output_shape: outShape,
                               optimization: flags.optimization || 'all'}));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
