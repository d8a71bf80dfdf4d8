#!/usr/bin/env bash
# One check of reslab on one GPU (see docs/gpu.md):
#
#   benchmarks/gpu_check.sh [--dry-run] DATA_DIR OUT
#
#   1. env       the GPU, driver, torch, CUDA, cuDNN                                     -> OUT/env.txt
#   2. tests     the tests marked `cuda` (tests/test_gpu.py); fails if any skipped      -> OUT/cuda-tests.{log,xml}
#   3. bench     `reslab bench train --device cuda` for resnet20 and resnet56: graphed vs eager in the same
#                rounds (and the DataLoader baseline), then RUNS_PER_GPU benchmarks at once on the one GPU
#                                                                                       -> OUT/bench/*.json
#   4. study     only when DATA_DIR holds cifar-10-python.tar.gz: the paper-protocol degradation study (plain20,
#                resnet20, plain56, resnet56; 64k iterations each), two runs at a time on the GPU, depth 20 first,
#                stopped after STUDY_SECONDS (default 480; rerunning the script resumes it)  -> OUT/study/
#   5. pack      everything but checkpoints into OUT/gpu_check.tar.gz (< 16 MiB), with OUT/summary.txt
#
# Without a GPU it says so in one line and exits 2. --dry-run runs a few iterations of every part on the CPU, on
# synthetic data (tests/test_gpu.py runs it, so the script cannot rot); it does not fail on skipped cuda tests.
# Runs from a checkout without installing (PYTHONPATH=src python3 -m reslab). Exit status: 0 all good, 1 a part
# failed (the others still ran and were packed), 2 bad usage or no GPU.
set -u -o pipefail

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
if [ $# -ne 2 ]; then
    echo "usage: benchmarks/gpu_check.sh [--dry-run] DATA_DIR OUT" >&2
    exit 2
fi
DATA_DIR=$1
OUT=$2
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
RESLAB="$PY -m reslab"
STUDY_SECONDS=${STUDY_SECONDS:-480}
RUNS_PER_GPU=${RUNS_PER_GPU:-4}
MAX_TAR_BYTES=$((16 * 1024 * 1024))

if [ $DRY = 0 ] && ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here ($($PY -c 'import torch; print("torch", torch.__version__)' 2>/dev/null \
        || echo 'torch not importable')); run it on a machine with one, or use --dry-run" >&2
    exit 2
fi
if [ ! -d "$DATA_DIR" ]; then
    echo "gpu_check: DATA_DIR $DATA_DIR is not a directory (give the folder that holds cifar-10-python.tar.gz, or" \
         "any folder to check without the study)" >&2
    exit 2
fi
mkdir -p "$OUT/bench" || exit 2
OUT=$(cd "$OUT" && pwd)
FAILED=()
note() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log"; }
fail() { FAILED+=("$1"); note "FAILED: $1"; }

if [ $DRY = 1 ]; then
    DEVICE=cpu; MODELS="resnet8"; RUNS_PER_GPU=2; AMP=none; SHARED_GRAPH_MODES="auto"
    BENCH_ARGS="--rounds 1 --steps 1 --batch-size 8 --workers 0"
else
    DEVICE=cuda; MODELS="resnet20 resnet56"; AMP=auto; SHARED_GRAPH_MODES="auto off"; BENCH_ARGS=""
fi
START=$(date +%s)
note "start: $([ $DRY = 1 ] && echo 'dry run on the CPU' || echo 'on the GPU'), data $DATA_DIR, out $OUT"

# ---- 1. env ----------------------------------------------------------------------------------------------------
{
    date -u
    git -C "$REPO" log -1 --format='reslab commit %H %s' 2>/dev/null
    $PY -c "import torch, platform; print('python', platform.python_version(), '| torch', torch.__version__,
'| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'cuda:{i}', p.name, f'capability {p.major}.{p.minor}', f'{p.total_memory / 2**30:.1f} GiB')"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; fi
} > "$OUT/env.txt" 2>&1 || fail "env"

# ---- 2. the cuda tests ------------------------------------------------------------------------------------------
note "cuda tests"
(cd "$REPO" && $PY -m pytest -q -rs -m cuda tests/test_gpu.py -p no:cacheprovider \
    --junitxml="$OUT/cuda-tests.xml") > "$OUT/cuda-tests.log" 2>&1
TESTS_RC=$?
COUNTS=$($PY - "$OUT/cuda-tests.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
s = root if root.tag == "testsuite" else root.find("testsuite")
print(s.get("tests"), s.get("skipped"), s.get("failures"), s.get("errors"))
EOF
) || COUNTS="0 0 0 1"
read -r N_TESTS N_SKIPPED N_FAILURES N_ERRORS <<< "$COUNTS"
note "cuda tests: $N_TESTS run, $N_SKIPPED skipped, $N_FAILURES failed, $N_ERRORS errors (pytest exit $TESTS_RC)"
if [ "$N_TESTS" = 0 ]; then fail "no cuda tests were collected"; fi
if [ "$N_FAILURES" != 0 ] || [ "$N_ERRORS" != 0 ]; then fail "cuda tests failed (see cuda-tests.log)"; fi
if [ $DRY = 0 ] && [ "$N_SKIPPED" != 0 ]; then fail "$N_SKIPPED cuda tests skipped (see cuda-tests.log)"; fi

# ---- 3. bench ---------------------------------------------------------------------------------------------------
for M in $MODELS; do
    note "bench $M: graphed vs eager (and the baseline), one benchmark on the device"
    $RESLAB bench train --model "$M" --device $DEVICE --amp $AMP --cuda-graph auto $BENCH_ARGS \
        --json "$OUT/bench/$M-one.json" > "$OUT/bench/$M-one.log" 2>&1 || fail "bench $M (see bench/$M-one.log)"
    for GRAPH in $SHARED_GRAPH_MODES; do
        note "bench $M: $RUNS_PER_GPU benchmarks at once on the device, cuda graph $GRAPH"
        PIDS=()
        for K in $(seq 1 "$RUNS_PER_GPU"); do
            $RESLAB bench train --model "$M" --device $DEVICE --amp $AMP --cuda-graph $GRAPH --no-baseline \
                $BENCH_ARGS --json "$OUT/bench/$M-x$RUNS_PER_GPU-graph-$GRAPH-$K.json" \
                > "$OUT/bench/$M-x$RUNS_PER_GPU-graph-$GRAPH-$K.log" 2>&1 &
            PIDS+=($!)
        done
        for P in "${PIDS[@]}"; do wait "$P" || fail "bench $M x$RUNS_PER_GPU graph $GRAPH"; done
    done
done

# ---- 4. the paper-protocol study (real data only) ---------------------------------------------------------------
STUDY=(study degradation --depths 20,56 --out "$OUT/study" --quiet)
if [ $DRY = 1 ]; then
    $PY -c "from reslab.data.synthetic import write_fake_cifar; write_fake_cifar('$OUT/dry-data', per_batch=60, test=60)" \
        || fail "synthetic data"
    STUDY=(study degradation --profile quick --depths 8 --devices cpu --data-dir "$OUT/dry-data"
           --out "$OUT/study" --quiet --no-report --set data.val_size=50 --set data.val_subset=null
           --set data.test_subset=40 --set data.train_subset=null --set train.batch_size=25
           --set train.iterations=4 --set train.eval_every=2 --set optim.warmup=none --set train.snapshots=[])
    STUDY_SECONDS=120
elif [ -f "$DATA_DIR/cifar-10-python.tar.gz" ]; then
    STUDY+=(--profile paper --devices cuda:0,cuda:0 --data-dir "$DATA_DIR" --set train.amp=auto
            --set train.cuda_graph=auto)
else
    STUDY=()
    note "study: no cifar-10-python.tar.gz in $DATA_DIR, skipped (the tests and benches ran on synthetic data)"
fi
if [ ${#STUDY[@]} -gt 0 ]; then
    note "study: reslab ${STUDY[*]} (stopped after ${STUDY_SECONDS}s; rerun the script to resume it)"
    timeout -s INT -k 60 "$STUDY_SECONDS" $RESLAB "${STUDY[@]}" > "$OUT/study.log" 2>&1
    RC=$?
    if [ $RC = 124 ]; then note "study: stopped at the time limit (its runs checkpointed; rerun to resume)"
    elif [ $RC != 0 ]; then fail "study exited $RC (see study.log)"
    fi
    $RESLAB study status "$OUT/study" > "$OUT/study-status.txt" 2>&1 || true
fi

# ---- 5. summary and pack ----------------------------------------------------------------------------------------
$PY - "$OUT" $((  $(date +%s) - START )) <<'EOF' > "$OUT/summary.txt" 2>&1 || fail "summary"
import json, sys
from collections import defaultdict
from pathlib import Path
out, seconds = Path(sys.argv[1]), int(sys.argv[2])
print((out / "env.txt").read_text().splitlines()[2] if (out / "env.txt").exists() else "")
shared = defaultdict(list)
for f in sorted((out / "bench").glob("*.json")):
    r = json.loads(f.read_text())
    if f.stem.endswith("-one"):
        line = f"{r['model']:>9} one benchmark: {r['reslab_images_per_s']:>9.0f} img/s ({r['amp']}"
        line += f", graphed; eager {r['reslab_eager_images_per_s']:.0f}, {r['graph_speedup']:.2f}x)" \
            if r.get("cuda_graph") else ", eager)"
        if r.get("baseline_images_per_s"):
            line += f"; baseline {r['baseline_images_per_s']:.0f} img/s"
        print(line)
    else:
        shared[f.stem.rsplit("-", 1)[0]].append(r["reslab_images_per_s"])
for key, v in shared.items():
    print(f"{key}: {len(v)} at once, {sum(v):.0f} img/s in all ({', '.join(f'{x:.0f}' for x in v)})")
print(f"gpu_check wall time: {seconds} s")
EOF
cat "$OUT/summary.txt" | tee -a "$OUT/gpu_check.log"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}" >> "$OUT/summary.txt"
else
    echo "all parts passed" >> "$OUT/summary.txt"
fi
TAR="$OUT/gpu_check.tar.gz"
PART=$(mktemp "${TMPDIR:-/tmp}/gpu_check.XXXXXX.tar.gz")
rm -f "$TAR"
tar -czf "$PART" -C "$OUT" --exclude=checkpoints --exclude='*.pt' --exclude=dry-data . && mv "$PART" "$TAR" \
    || { rm -f "$PART"; fail "pack"; }
BYTES=$(stat -c %s "$TAR" 2>/dev/null || echo 0)
if [ "$BYTES" -ge $MAX_TAR_BYTES ]; then fail "the tar is $BYTES bytes, over 16 MiB"; fi
note "packed $TAR ($BYTES bytes)"
if [ ${#FAILED[@]} -gt 0 ]; then
    note "done with ${#FAILED[@]} failed part(s): ${FAILED[*]}"
    exit 1
fi
note "done: all parts passed"
