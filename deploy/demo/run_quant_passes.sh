#!/usr/bin/env bash
# Issue 4's quantize and qat passes through the real daemon, worker and CLI
# on the Fashion-MNIST CNN: calibration (and QAT training) on the first 2048
# Fashion-MNIST *training* images, evaluation on the first 2000 *test*
# images (disjoint), one job per spec below, seed 1. Prints one markdown row
# per job: spec, technique, baseline and variant top-1, layer bits, memory
# and artifact bytes, artifact format, seconds; then the mixed-precision
# plans and QAT notes.
#
# Usage: deploy/demo/run_quant_passes.sh [--out DIR]
# Env: SQUEEZE_BUILD_DIR (default build), FASHION_MNIST_DIR
#      (default /usr/share/datasets/fashion-mnist), ONLY (spec names to run,
#      space-separated; default all, e.g. ONLY="cast-fp16 cast-fp8-e4m3").
set -euo pipefail
cd "$(dirname "$0")/../.."
out=/tmp/squeeze-quant-passes
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "run_quant_passes.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
build="${SQUEEZE_BUILD_DIR:-build}"
bin="$build/bin"
ninja -C "$build" squeezed squeeze-worker squeeze make_fashion_mnist_dataset >/dev/null
rm -rf "$out" && mkdir -p "$out/data" "$out/specs"

# The first 2048 training images as a labelled safetensors dataset.
python3 - "${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}" 2048 "$out/calibration.safetensors" <<'PY'
import gzip, json, struct, sys
d, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
img = gzip.open(d + '/train-images-idx3-ubyte.gz').read()[16:16 + n * 784]
lab = gzip.open(d + '/train-labels-idx1-ubyte.gz').read()[8:8 + n]
inputs = struct.pack('<%df' % (n * 784), *[b / 255.0 for b in img])
labels = struct.pack('<%dq' % n, *lab)
header = {'inputs': {'dtype': 'F32', 'shape': [n, 1, 28, 28], 'data_offsets': [0, len(inputs)]},
          'labels': {'dtype': 'I64', 'shape': [n], 'data_offsets': [len(inputs), len(inputs) + len(labels)]}}
h = json.dumps(header).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
open(out, 'wb').write(struct.pack('<Q', len(h)) + h + inputs + labels)
PY
"$bin/make_fashion_mnist_dataset" --out="$out/evaluation.safetensors" --count=2000 >/dev/null

spec() { printf 'recipe { passes { %s } }\neval_task: TOP1_ACCURACY\nseed: 1\n' "$2" > "$out/specs/$1.textproto"; }
spec rtn8-pt-w8a8 'quantize { bits: 8 granularity: PER_TENSOR activation_bits: 8 }'
spec rtn4-pc 'quantize { bits: 4 }'
spec rtn4-pt 'quantize { bits: 4 granularity: PER_TENSOR }'
spec kmeans4-layer 'quantize { method: KMEANS bits: 4 granularity: PER_TENSOR }'
spec kmeans4-row 'quantize { method: KMEANS bits: 4 }'
spec kmeans3-layer 'quantize { method: KMEANS bits: 3 granularity: PER_TENSOR }'
spec rtn3-pc 'quantize { bits: 3 }'
spec mixed3.1-hessian 'quantize { mixed_precision { average_bits: 3.1 sensitivity: HESSIAN probes: 8 } }'
spec mixed3.1-fisher 'quantize { mixed_precision { average_bits: 3.1 sensitivity: FISHER } }'
# 158964 bytes: uniform int3 of the CNN with its per-channel float32 scales.
spec mixed-eq-int3 'quantize { mixed_precision { max_bytes: 158964 sensitivity: HESSIAN probes: 8 } }'
spec mixed-eq-int3-measured 'quantize { mixed_precision { max_bytes: 158964 sensitivity: MEASURED } }'
spec rtn3-pc-asym 'quantize { bits: 3 asymmetric: true }'
# 159198 bytes: uniform asymmetric int3, 158964 plus a uint8 zero point for
# each of the 234 output channels.
spec mixed-eq-int3-asym-measured 'quantize { asymmetric: true mixed_precision { max_bytes: 159198 sensitivity: MEASURED } }'
spec mixed2.5-2and4 'quantize { mixed_precision { average_bits: 2.5 sensitivity: HESSIAN probes: 8 candidate_bits: [2, 4] } }'
spec rtn2-pc 'quantize { bits: 2 }'
spec ptq-w4a8 'quantize { bits: 4 activation_bits: 8 }'
spec qat-w4a8-300 'qat { steps: 300 distill_from_float: true }'
spec qat-w4a8-300-nodistill 'qat { steps: 300 }'
spec cast-fp16 'quantize { float_format: FP16 }'
spec cast-bf16 'quantize { float_format: BF16 }'
spec cast-fp8-e4m3 'quantize { float_format: FP8_E4M3 }'
spec cast-fp8-e5m2 'quantize { float_format: FP8_E5M2 }'

. bench/private_daemon.sh
start_private_daemon "$out" "$bin"
all="rtn8-pt-w8a8 rtn4-pc rtn4-pt kmeans4-layer kmeans4-row kmeans3-layer rtn3-pc mixed3.1-hessian mixed3.1-fisher
     mixed-eq-int3 mixed-eq-int3-measured rtn3-pc-asym mixed-eq-int3-asym-measured mixed2.5-2and4 rtn2-pc ptq-w4a8 qat-w4a8-300 qat-w4a8-300-nodistill cast-fp16 cast-bf16
     cast-fp8-e4m3 cast-fp8-e5m2"
for name in ${ONLY:-$all}; do
  job=$("${squeeze[@]}" submit deploy/models/fashion_mnist_cnn.onnx --calibration "$out/calibration.safetensors" \
          --evaluation "$out/evaluation.safetensors" --spec "$out/specs/$name.textproto" 2>/dev/null | tail -1)
  start=$(date +%s)
  "${squeeze[@]}" watch "$job" >/dev/null || true
  "${squeeze[@]}" --json status "$job" > "$out/$name.json"
  echo "$name $(( $(date +%s) - start ))" >> "$out/seconds"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
notes = []
for line in open(out + '/seconds'):
    name, seconds = line.split()
    job = json.load(open('%s/%s.json' % (out, name)))
    if not job.get('variants'):
        print('| %s | %s | %s |' % (name, job.get('state'), job.get('error', {}).get('message'))); continue
    v = job['variants'][0]
    a = v['accuracy']
    bits = '/'.join(str(l.get('bits', 0)) for l in a.get('layers', []))
    print('| %s | %s | %.4f | %.4f | %+.4f | %s | %s | %s | %s | %s |' % (
        name, v['technique'], a['baseline'], a['value'], a['value'] - a['baseline'], bits,
        v['size'].get('memoryBytes'), v['size'].get('bytes'), v.get('artifactFormat'), seconds))
    notes += ['%s: %s' % (name, n) for n in v.get('notes', []) if 'plan' in n or 'qat:' in n]
print('\n'.join(notes))
PY
