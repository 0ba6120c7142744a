#!/usr/bin/env bash
# The CUDA check of issue 15, in one go (under 5 minutes on one GPU):
#   (a) the equivariance tests and tests/test_devices.py, whose CUDA cases then run;
#   (b) a short training of every task through the CLI, data generation included, on $DEVICE;
#   (c) benchmarks/layers.py on $DEVICE (needs the reference: pip install -e '.[bench]');
#   (d) benchmarks/zoo.py on $DEVICE, dropout masks drawn on the CPU, then on the device.
#
#   benchmarks/cuda_check.sh                      # from the repository root or anywhere
#   DEVICE=cpu benchmarks/cuda_check.sh           # the same steps on the CPU (tests the script)
#
# Environment: PYTHON (default .venv/bin/python), DEVICE (default cuda), OUT (where the log,
# the summary, layers.json and zoo-{cpu,device}-masks.json go; default a new temp folder),
# REPS (layers.py repetitions, 10), TESTS (the test files of step (a)), KEEP=1 to keep the
# generated data and runs (in a temp folder, printed).
# Exit status: 0 when every step passed, 1 otherwise. The summary lists every step.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-.venv/bin/python}"
DEVICE="${DEVICE:-cuda}"
REPS="${REPS:-10}"
TESTS="${TESTS:-tests/testing/test_equivariance.py tests/nn/test_linear.py tests/nn/test_pool.py tests/test_devices.py}"
OUT="${OUT:-$(mktemp -d -t weightspace-cuda-check.XXXXXX)}"
mkdir -p "$OUT"
WORK="$(mktemp -d -t weightspace-cuda-work.XXXXXX)"  # data and runs: kept out of $OUT
LOG="$OUT/cuda_check.log"
SUMMARY="$OUT/summary.txt"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
: >"$LOG"

if ! command -v "$PYTHON" >/dev/null 2>&1 && [ ! -x "$PYTHON" ]; then
    echo "cuda_check: no Python at $PYTHON; set PYTHON=/path/to/python" >&2
    exit 1
fi
ws() { "$PYTHON" -m weightspace "$@"; }

results=()
failed=0
step() {  # step NAME COMMAND...: run it, log its output, record PASS/FAIL and its time
    local name="$1"
    shift
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$LOG"
    if "$@" >>"$LOG" 2>&1; then
        results+=("PASS  $name  ($((SECONDS - start)) s)")
    else
        results+=("FAIL  $name  ($((SECONDS - start)) s, exit $?; see $LOG)")
        failed=1
    fi
    echo "   -> ${results[-1]}"
}

{
    echo "# weightspace CUDA check, device $DEVICE, $(date -u '+%Y-%m-%d %H:%M UTC')"
    git -C "$ROOT" log -1 --format='commit %h %s' 2>/dev/null || true
    "$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| available', torch.cuda.is_available(), '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee -a "$LOG"

if [ "${DEVICE%%:*}" = "cuda" ]; then
    step "cuda-available" "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA is not available to torch')"
fi

# (a) Tests. The CUDA cases of tests/test_devices.py run; for DEVICE=cuda they may not skip.
if [ "${DEVICE%%:*}" = "cuda" ]; then export WEIGHTSPACE_REQUIRE_CUDA=1; fi
# shellcheck disable=SC2086  # a list of paths
step "pytest-equivariance-and-devices" "$PYTHON" -m pytest -q -rs -p no:cacheprovider $TESTS

# (b) Every task through the CLI on tiny data: generate the data on the device, then train.
D=(--device "$DEVICE")
step "zoo" ws zoo --dataset digits --networks 24 --epochs 2 --chunk-size 24 \
    --limit-train 512 --limit-test 128 --out "$WORK/zoo" "${D[@]}"
step "train-generalization" ws train generalization --zoo "$WORK/zoo" --model hnp \
    --epochs 2 --out "$WORK/runs/generalization" "${D[@]}"
step "inr-fit" ws inr fit --dataset digits --limit 30 --steps 100 --out "$WORK/inrs" "${D[@]}"
step "train-inr-classify" ws train inr-classify --inrs "$WORK/inrs" --model np --epochs 2 \
    --out "$WORK/runs/inr-classify" "${D[@]}"
step "train-inr-edit" ws train inr-edit --inrs "$WORK/inrs" --edit dilate --model np --steps 20 \
    --out "$WORK/runs/inr-edit" "${D[@]}"
step "tickets-generate" ws tickets generate --dataset digits --networks 12 --epochs 1 \
    --hidden 16,16 --chunk-size 12 --limit-train 512 --limit-test 128 --out "$WORK/tickets" "${D[@]}"
step "train-tickets" ws train tickets --tickets "$WORK/tickets" --model hnp --epochs 2 \
    --n-test 3 --n-val 2 --out "$WORK/runs/tickets" "${D[@]}"
step "stores-record-the-device" "$PYTHON" -c "
import json, sys
want = sys.argv[1].split(':')[0]
for header in sys.argv[2:]:
    got = json.load(open(header)).get('device')
    assert got == want, f'{header}: device {got!r}, expected {want!r}'
" "$DEVICE" "$WORK/zoo/zoo.json" "$WORK/inrs/inrs.json" "$WORK/tickets/tickets.json"

# (c) The layer benchmark on the device (synchronised timing).
step "benchmarks-layers" "$PYTHON" benchmarks/layers.py --device "$DEVICE" --reps "$REPS" \
    --json "$OUT/layers.json"

# (d) Zoo training on the device against a per-network loop there, with the dropout masks drawn
# on the CPU and copied (generate_zoo's default) and on the device: does the CPU draw bound it?
for masks in cpu device; do
    step "benchmarks-zoo-$masks-masks" "$PYTHON" benchmarks/zoo.py --datasets mnist \
        --device "$DEVICE" --mask-generator "$masks" --reps 3 --json "$OUT/zoo-$masks-masks.json"
done

{
    echo
    echo "# summary (device $DEVICE, $SECONDS s)"
    printf '%s\n' "${results[@]}"
    if grep -q '^| ' "$LOG"; then
        echo
        grep '^# forward\|^| ' "$LOG"
    fi
} | tee "$SUMMARY" | tee -a "$LOG"
if [ "${KEEP:-0}" = "1" ]; then
    echo "data and runs kept in $WORK"
else
    rm -rf "$WORK"
fi
echo "log: $LOG; summary: $SUMMARY"
exit "$failed"
