// Loads GGUF files in llama.cpp (node-llama-cpp's prebuilt CPU binary, no
// download or build: build "never", skipDownload) and compares it with our
// side as squeeze-gguf-reference wrote it (bench/llama_cpp/gguf_reference.cc):
//   - tokenization: llama.cpp's ids for each reference sentence (no BOS, no
//     special tokens) must equal our BPE ids;
//   - next-token predictions on the held-out windows: llama.cpp's top-1 at
//     every position against our fp32 runtime's and against our runtime on
//     the same file's dequantized weights (the reference run named by the
//     file's path), and perplexity from llama.cpp's probabilities;
//   - greedy generation (temperature 0, token by token through llama.cpp's
//     KV cache) from the reference prompts against our greedy continuations
//     on the same weights: how many generations are equal and how many
//     leading tokens agree.
// Prints one JSON line per file; exits 1 when a file fails to load or
// evaluate (the thresholds are scripts/check-gguf.sh's).
//
//   node bench/llama_cpp/check_gguf.mjs REF.json A.gguf [B.gguf ...]
//     [--kv_type=F32|F16] (llama.cpp's KV cache type; F32 by default so that
//     the comparison sees the weights' format, not the cache's)
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const args = process.argv.slice(2);
const kvType = (args.find((a) => a.startsWith("--kv_type=")) ?? "--kv_type=F32").split("=")[1];
const [referencePath, ...files] = args.filter((a) => !a.startsWith("--"));
if (!referencePath || files.length === 0) {
  console.error("usage: node check_gguf.mjs REF.json A.gguf [B.gguf ...] [--kv_type=F32|F16]");
  process.exit(2);
}
const reference = JSON.parse(readFileSync(referencePath, "utf8"));
const ours = new Map(reference.runs.map((run) => [run.name, run]));
const fp32 = ours.get("fp32");

const llama = await getLlama({
  build: "never", skipDownload: true, usePrebuiltBinaries: true, gpu: false,
  progressLogs: false, logLevel: LlamaLogLevel.error,
});

async function check(file) {
  const model = await llama.loadModel({modelPath: file, gpuLayers: 0});
  const result = {file, llama_cpp: `${llama.llamaCppRelease.release} (${llama.buildType})`,
                  kv_type: kvType};
  try {
    // Tokenization.
    let same = 0;
    const mismatches = [];
    for (const {text, ids} of reference.sentences) {
      const theirs = Array.from(model.tokenize(text, false));
      let first = 0;
      while (first < ids.length && theirs[first] === ids[first]) ++first;
      if (first === ids.length && theirs.length === ids.length) {
        ++same;
      } else if (mismatches.length < 3) {
        mismatches.push({text: text.slice(0, 80), first_difference: first,
                         ours: ids.slice(first, first + 8), llama_cpp: theirs.slice(first, first + 8)});
      }
    }
    result.sentences = reference.sentences.length;
    result.tokenization_equal = same;
    if (mismatches.length) result.tokenization_mismatches = mismatches;

    // Next-token predictions, one window at a time from an empty cache.
    const context = reference.windows[0].length - 1;
    const ctx = await model.createContext({
      // One spare cell: with a full cache node-llama-cpp shifts the context
      // before the last token, which then sees a shorter history.
      contextSize: context + 1, batchSize: context, sequences: 1, threads: 1,
      experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
    });
    const sequence = ctx.getSequence();
    const sim = ours.get(file);
    let positions = 0, agreeFp32 = 0, agreeSim = 0, nll = 0, maxLogprobDiff = 0, sumLogprobDiff = 0;
    for (let w = 0; w < reference.windows.length; ++w) {
      const window = reference.windows[w];
      await sequence.clearHistory();
      const input = window.slice(0, context).map((t) => [t, {generateNext: {probabilities: true}}]);
      const out = await sequence.controlledEvaluate(input);
      for (let p = 0; p < context; ++p) {
        const probabilities = out[p].next.probabilities;
        const top = probabilities.keys().next().value;
        const logprob = Math.log(probabilities.get(window[p + 1]) ?? 0);
        ++positions;
        nll -= logprob;
        if (top === fp32.argmax[w][p]) ++agreeFp32;
        if (sim) {
          if (top === sim.argmax[w][p]) ++agreeSim;
          const diff = Math.abs(logprob - sim.target_logprob[w][p]);
          maxLogprobDiff = Math.max(maxLogprobDiff, diff);
          sumLogprobDiff += diff;
        }
      }
    }

    // Greedy generation from each reference prompt.
    const promptTokens = reference.prompt_tokens;
    let equalGenerations = 0, leadingAgree = 0, generatedTokens = 0;
    let sample = "";
    for (let g = 0; g < (sim?.generated ?? fp32.generated).length; ++g) {
      const want = (sim ?? fp32).generated[g];
      const prompt = reference.windows[g].slice(0, promptTokens);
      await sequence.clearHistory();
      const got = [];
      for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        got.push(token);
        if (got.length === want.length) break;
      }
      let lead = 0;
      while (lead < want.length && got[lead] === want[lead]) ++lead;
      if (lead === want.length) ++equalGenerations;
      leadingAgree += lead;
      generatedTokens += want.length;
      if (g === 0) sample = model.detokenize(prompt) + " \u2192 " + model.detokenize(got);
    }
    await ctx.dispose();
    const perplexity = (run) => Math.exp(-run.target_logprob.flat().reduce((a, b) => a + b, 0) / positions);
    result.positions = positions;
    result.top1_agree_ours_fp32 = +(agreeFp32 / positions).toFixed(4);
    result.top1_differ_ours_fp32 = positions - agreeFp32;
    result.perplexity_llama_cpp = +Math.exp(nll / positions).toFixed(3);
    result.perplexity_ours_fp32 = +perplexity(fp32).toFixed(3);
    if (sim) {
      result.top1_agree_ours_same_weights = +(agreeSim / positions).toFixed(4);
      result.top1_differ_ours_same_weights = positions - agreeSim;
      result.perplexity_ours_same_weights = +perplexity(sim).toFixed(3);
      result.target_logprob_abs_diff_max = +maxLogprobDiff.toFixed(5);
      result.target_logprob_abs_diff_mean = +(sumLogprobDiff / positions).toFixed(6);
    }
    result.generations = (sim ?? fp32).generated.length;
    result.generations_equal = equalGenerations;
    result.generated_tokens = generatedTokens;
    result.generated_tokens_before_first_difference = leadingAgree;
    result.sample = sample;
    result.loaded = true;
  } finally {
    await model.dispose();
  }
  return result;
}

let failed = false;
for (const file of files) {
  try {
    console.log(JSON.stringify(await check(file)));
  } catch (error) {
    console.log(JSON.stringify({file, loaded: false, error: String(error?.message ?? error)}));
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
