#!/usr/bin/env bash
# One prepared GPU run of nfd's benchmarks (issue 18, item 7): the initialisation SDE against a plain
# scan and diffrax, kernels (time to a given error against the L = ∞ kernel), time to accuracy (speed
# study part a; part b is the SDE at P = 2^20) and scaling (per-solver wall times on the real device,
# one process, one device), at sizes meant to fit about 7 minutes on one H200 (stage limits add up to
# 430 s; most of each stage is compilation).
#
#   bash benchmarks/gpu.sh OUT_DIR            # on the GPU machine, from anywhere
#   bash benchmarks/gpu.sh OUT_DIR --tiny     # smoke test at tiny sizes (CPU: under 2 minutes)
#
# Needs only what the GPU machine has (python3 with jax, equinox, diffrax, lineax, scipy, matplotlib):
# nfd is used from this checkout through PYTHONPATH, nothing is installed, neural-tangents is skipped.
# Writes at most 8 flat files into OUT_DIR: gpu_log.txt (timestamped progress, device), init_sde.json/.png,
# kernels.json, kernels_tte.png, speed.json/.png, scaling.json.  Every JSON gets a "gpu_sh" entry
# naming the device (jax.devices()[0].device_kind) the numbers were measured on.  Each stage has a
# time limit, so one slow stage cannot eat the others' time; a stage that fails or overruns is logged
# and the next one runs.  Compiled programs go to a fresh cache directory (first compilations are
# real compilations; a later stage reusing a shape loads it).
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu.sh OUT_DIR [--tiny]}
MODE=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
NFD_CACHE_DIR=$(mktemp -d /tmp/nfd-gpu-cache.XXXXXX)
export NFD_CACHE_DIR
unset NFD_NO_COMPILATION_CACHE
LOG="$OUT/gpu_log.txt"
: > "$LOG"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

if [ "$MODE" = "--tiny" ]; then
  INIT=(--tiny) KERN=(--tiny --sections time_to_error) SPEED=(--tiny) SCAL=(--tiny --sections noise)
  LIM_INIT=300 LIM_KERN=300 LIM_SPEED=300 LIM_SCAL=300  # a safety net only
elif [ -z "$MODE" ]; then
  INIT=(--gpu) KERN=(--gpu --sections time_to_error,timing) SPEED=() SCAL=(--gpu --sections strong)
  # init_sde: 10 methods at P = 2^15 and 8 at P = 2^20 (nfd with the pivoted-Cholesky and with the eigh
  # factor, with one stacked Gram product, plain scan, diffrax), each compiled, plus 48 seeds of the
  # run-to-run spread per size
  LIM_INIT=120 LIM_KERN=90 LIM_SPEED=100 LIM_SCAL=120
else
  echo "unknown option $MODE (expected --tiny or nothing)" >&2
  exit 2
fi

T0=$(date +%s)
log "nfd benchmarks/gpu.sh ${MODE:-full} -> $OUT (repo $ROOT, git $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
DEVICE_JSON=$("$PY" -c '
import json, jax
d = jax.devices()[0]
print(json.dumps(dict(device_kind=d.device_kind, platform=d.platform, device_count=len(jax.devices()),
                      jax=jax.__version__)))' 2>>"$LOG")
log "device: ${DEVICE_JSON:-unknown (jax failed to start, see above)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/  nvidia-smi: /' | tee -a "$LOG"

FAILED=()
stage() {  # stage NAME LIMIT_S CMD...
  local name=$1 limit=$2
  shift 2
  log "start $name (limit ${limit}s, load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null)): $*"
  local t=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "end $name: rc=$rc after $(( $(date +%s) - t )) s$([ "$rc" = 124 ] && echo ' (time limit reached)')"
  [ "$rc" = 0 ] || FAILED+=("$name")
}

stage init_sde "$LIM_INIT" "$PY" benchmarks/init_sde.py "${INIT[@]}" --out "$OUT/init_sde.json"
stage kernels "$LIM_KERN" "$PY" benchmarks/kernels.py "${KERN[@]}" --no-nt --out "$OUT"
stage speed "$LIM_SPEED" "$PY" benchmarks/studies/speed.py "${SPEED[@]}" --out "$OUT"
# scaling's parent process holds the device while its worker process runs: no up-front allocation of
# 75% of the GPU's memory by either
stage scaling "$LIM_SCAL" env XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" benchmarks/scaling.py "${SCAL[@]}" \
  --out "$OUT/scaling.json"

# the device next to every number: stamp each JSON (no jax needed here)
DEVICE_JSON="${DEVICE_JSON:-null}" "$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import glob, json, os, sys
dev = json.loads(os.environ["DEVICE_JSON"])
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    doc = json.load(open(path))
    doc["gpu_sh"] = dict(dev or {}, note="measured by benchmarks/gpu.sh on this device")
    json.dump(doc, open(path, "w"), indent=1)
    print(f"stamped {os.path.basename(path)} with {dev and dev.get('device_kind')}")
EOF
rm -rf "$NFD_CACHE_DIR"
log "files: $(cd "$OUT" && ls | tr '\n' ' ')"
log "done in $(( $(date +%s) - T0 )) s; failed or overrun stages: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
