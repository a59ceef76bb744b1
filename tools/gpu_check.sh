#!/usr/bin/env bash
# One-command GPU check for a single-GPU machine without internet whose Python already has torch (docs/gpu.md).
#
#   tools/gpu_check.sh --fill    on a machine WITH internet and this repo's .venv: download the wheels
#   tools/gpu_check.sh --dry     check the wheel folder and print what would run (works on CPU)
#   tools/gpu_check.sh           on the GPU machine: install the wheels, then run the checks (~8 minutes)
#
# The wheel folder is $SAPO_WHEELS (default: wheels/ beside this repository's root, i.e. ../wheels). --fill writes
# there requirements.txt, the exact versions this repo's .venv holds (installed from requirements/lock.txt: the lock
# entries and what they pull in) minus torch (the GPU machine keeps its own CUDA build), and downloads each wheel
# without dependencies. vLLM is excluded: it pins its own torch, and the checks generate with transformers.
# Python on the GPU machine: $PYTHON (default python3), the same minor version as the .venv that filled the folder.
# SAPO_SKIP_INSTALL=1: no wheel folder, no install: $PYTHON already has every package (the checks import sapo_core
# from the repository root).
#
# Checks, each with its time limit; one line per check, `PASS|FAIL <name> (<seconds> s)`, and a log under $OUT_DIR:
#   pytest -m gpu           tests/test_gpu.py: loss and trainer parity with TRL on CUDA
#   train <gate>            20 bf16 steps of the tiny model on CUDA, for clip, sigmoid, erf, arctan, softsign
#   bench_trainer           benchmarks/bench_trainer.py --device cuda (ours vs TRL's SAPO: step time and memory)
#   bench_memory            benchmarks/bench_memory.py --device cuda (torch.cuda.max_memory_allocated)
# Exit status: 0 when every check passes, 1 when one fails, 2 when the wheel folder or the machine is not ready.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${SAPO_WHEELS:-$ROOT/../wheels}"
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT_DIR:-/tmp/gpu_check.$$}"  # logs and the training runs
GATES=(clip sigmoid erf arctan softsign)
MODE="${1:-run}"

die() { echo "error: $*" >&2; exit 2; }

case "$MODE" in
  --fill)
    mkdir -p "$WHEELS" || die "cannot create the wheel folder $WHEELS"
    [ -x "$ROOT/.venv/bin/python" ] || die "$ROOT/.venv is missing: run \`make venv\` first (it installs requirements/lock.txt)"
    "$ROOT/.venv/bin/python" -m pip freeze --exclude-editable | grep -viE '^(torch|vllm)==' > "$WHEELS/requirements.txt"
    "$ROOT/.venv/bin/python" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" -r "$WHEELS/requirements.txt" \
      || die "pip download failed"
    echo "filled $WHEELS ($(wc -l < "$WHEELS/requirements.txt") wheels); copy it to the GPU machine beside the repo"
    exit 0 ;;
  --dry|run) ;;
  *) die "unknown option $MODE; use --fill, --dry or no option (see the header of $0)" ;;
esac

# --- the wheel folder: one wheel per pinned requirement ---------------------------------------------------------
SKIP_INSTALL="${SAPO_SKIP_INSTALL:-0}"
if [ "$SKIP_INSTALL" != 1 ]; then
[ -d "$WHEELS" ] || die "no wheel folder $WHEELS (set SAPO_WHEELS, or fill it with \`tools/gpu_check.sh --fill\`)"
[ -f "$WHEELS/requirements.txt" ] || die "$WHEELS/requirements.txt is missing: fill the folder with \`tools/gpu_check.sh --fill\`"
count=0
while IFS= read -r line; do
  line="${line%%#*}"; line="${line//[[:space:]]/}"
  [ -z "$line" ] && continue
  case "$line" in *==*) ;; *) die "$WHEELS/requirements.txt: '$line' is not pinned as name==version" ;; esac
  name="${line%%==*}"; version="${line#*==}"
  norm="$(echo "$name" | tr 'A-Z.-' 'a-z__')"
  found=""
  for f in "$WHEELS"/*.whl; do
    [ -e "$f" ] || continue
    base="$(basename "$f" | tr 'A-Z.-' 'a-z__')"
    vnorm="$(echo "$version" | tr 'A-Z.-' 'a-z__')"
    case "$base" in "${norm}_${vnorm}_"*) found="$f"; break ;; esac
  done
  [ -n "$found" ] || die "no wheel for $name==$version in $WHEELS (refill it with \`tools/gpu_check.sh --fill\`)"
  count=$((count + 1))
done < "$WHEELS/requirements.txt"
echo "wheels: $count pinned requirements found in $WHEELS"
fi

# --- the checks: name, time limit (s), command ------------------------------------------------------------------
CHECKS=()
add() { CHECKS+=("$1|$2|$3"); }
add "pytest -m gpu" 60 "$PYTHON -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py"
for gate in "${GATES[@]}"; do
  add "train $gate" 45 "$PYTHON -m sapo_core.train --config configs/tiny-cpu.yaml --gate $gate --max_steps 20 \
--bf16 true --heldout_benchmarks '' --heldout_eval_steps 0 --save_steps 20 --run_dir $OUT_DIR/train-$gate \
&& $PYTHON -c \"import json, math, sys; rows = [json.loads(l) for l in open('$OUT_DIR/train-$gate/metrics.jsonl')]; \
sys.exit(0 if rows[-1]['step'] == 20 and all(math.isfinite(r['loss']) for r in rows if 'loss' in r) else 1)\""
done
add "bench_trainer" 100 "$PYTHON benchmarks/bench_trainer.py --device cuda --max-seconds 60"
add "bench_memory" 150 "$PYTHON benchmarks/bench_memory.py --device cuda"

if [ "$MODE" = "--dry" ]; then
  [ "$SKIP_INSTALL" = 1 ] && echo "would install: nothing (SAPO_SKIP_INSTALL=1)" || \
  echo "would install: $PYTHON -m pip install --no-index --no-deps --find-links $WHEELS -r $WHEELS/requirements.txt" \
       "&& $PYTHON -m pip install --no-index --no-deps --no-build-isolation -e $ROOT"
  echo "would run (logs in $OUT_DIR):"
  for check in "${CHECKS[@]}"; do
    IFS='|' read -r name limit cmd <<< "$check"
    echo "  $name (limit ${limit} s): $cmd"
  done
  exit 0
fi

# --- install and run ------------------------------------------------------------------------------------------
mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || die "$PYTHON has no torch with CUDA (this check runs on a GPU machine whose Python already has torch)"
if [ "$SKIP_INSTALL" != 1 ]; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" -r "$WHEELS/requirements.txt" \
    || die "installing the wheels from $WHEELS failed"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-build-isolation -e "$ROOT" || die "installing $ROOT failed"
fi
cd "$ROOT" || die "cannot enter $ROOT"
failed=0
for check in "${CHECKS[@]}"; do
  IFS='|' read -r name limit cmd <<< "$check"
  log="$OUT_DIR/$(echo "$name" | tr ' ' '_').log"
  start=$(date +%s)
  timeout "$limit" bash -c "$cmd" > "$log" 2>&1
  status=$?
  took=$(( $(date +%s) - start ))
  if [ "$status" -eq 0 ]; then
    echo "PASS $name (${took} s)"
  else
    failed=1
    why="exit $status"; [ "$status" -eq 124 ] && why="over its ${limit} s limit"
    echo "FAIL $name (${took} s, $why): $(tail -n 1 "$log")  [log: $log]"
  fi
done
exit "$failed"
