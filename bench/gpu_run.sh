#!/usr/bin/env bash
# One-call GPU session for dnahnet: environment, optional kernels, `dnahnet check`, the GPU tests and the
# benchmark suite, with every command recorded so the results can be committed next to the exact commands.
#
#   usage: bench/gpu_run.sh OUT_DIR [--dry-run] [--wheels DIR]
#
# Steps (each a function, run in this order; a failing step is recorded and the next one still runs):
#   env         nvidia-smi, python, torch version and CUDA availability        -> OUT_DIR/env.txt
#   deps        dnahnet's own runtime deps (pysam, pyfaidx, biopython, pyranges: the device image lacks them)
#               from the wheels folder when they do not import, then `pip install --no-deps -e .` for the
#               `dnahnet` command when the project is not installed in that python -> OUT_DIR/install.txt
#   kernels     mamba-ssm, causal-conv1d, flash-attn from the wheels folder (--wheels DIR, else .whl/ in the
#               repo root), each optional; then what dnahnet detects           -> OUT_DIR/install.txt
#   check       dnahnet check --device cuda (float32, then bfloat16)          -> OUT_DIR/check.txt
#   pytest_gpu  python -m pytest -q -m gpu tests/                              -> OUT_DIR/pytest_gpu.txt
#   bench       python bench/run.py --device cuda --sizes small ...            -> OUT_DIR/bench.txt, bench_gpu.json
# and OUT_DIR/commands.txt (every command, in order) and OUT_DIR/summary.txt (step, status, exit code,
# seconds; rewritten after every step, so a run cut off keeps what it finished). That is 8 files, the most
# the device tool brings back from $OUT.
#
# --dry-run needs no GPU and installs nothing: it records the commands it would run and writes summary.txt
# with status dry-run for every step. Exit status: 0 when the run completed (see summary.txt for each step;
# 1 if a step failed), 2 on a usage error or, without --dry-run, when there is no GPU.
#
# Environment: PYTHON (interpreter; default .venv/bin/python if present, else python3), BENCH_SIZES
# (default small), BENCH_LENGTHS (default "2^10 2^12 2^14 2^16"), BENCH_REPS (default 3), TIMEOUT_<STEP>
# in seconds for all of a step's commands together (ENV 30, DEPS 45, KERNELS 45, CHECK 90, PYTEST_GPU 120,
# BENCH 210: 540 s, 9 minutes, at worst; a step that runs out is recorded as exit 124 and the next one runs).
#
# On the device machine, e.g.: bash bench/gpu_run.sh "$OUT" --wheels .whl   (carry .whl)

set -euo pipefail

PROG="gpu_run.sh"
USAGE="usage: bench/gpu_run.sh OUT_DIR [--dry-run] [--wheels DIR]"

die() {  # one line on stderr, exit 2
    echo "$PROG: $*" >&2
    exit 2
}

# ---------------------------------------------------------------- arguments
OUT_DIR=""
DRY_RUN=0
WHEELS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1; shift ;;
        --wheels)
            [[ $# -ge 2 && -n "$2" ]] || die "--wheels needs a folder; $USAGE"
            WHEELS="$2"; shift 2 ;;
        --wheels=*) WHEELS="${1#--wheels=}"; [[ -n "$WHEELS" ]] || die "--wheels needs a folder; $USAGE"; shift ;;
        -h|--help) echo "$USAGE"; exit 0 ;;
        -*) die "unknown option $1; $USAGE" ;;
        *)
            [[ -z "$OUT_DIR" ]] || die "more than one OUT_DIR ($OUT_DIR, $1); $USAGE"
            OUT_DIR="$1"; shift ;;
    esac
done
[[ -n "$OUT_DIR" ]] || die "missing OUT_DIR; $USAGE"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac
if [[ -n "$WHEELS" ]]; then
    case "$WHEELS" in /*) ;; *) WHEELS="$PWD/$WHEELS" ;; esac
    [[ -d "$WHEELS" ]] || die "wheels folder not found: $WHEELS"
elif [[ -d "$REPO/.whl" ]]; then
    WHEELS="$REPO/.whl"
fi
cd "$REPO"

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
    PY="$REPO/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    PY="python3"
else
    PY="python"
fi

if [[ $DRY_RUN -eq 0 ]]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        die "no GPU (nvidia-smi not found or failing); use --dry-run"
    fi
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
        die "no GPU (torch.cuda.is_available() is false for $PY); use --dry-run"
    fi
fi

mkdir -p "$OUT_DIR" 2>/dev/null || die "cannot create OUT_DIR $OUT_DIR"

BENCH_SIZES="${BENCH_SIZES:-small}"
BENCH_LENGTHS="${BENCH_LENGTHS:-2^10 2^12 2^14 2^16}"
BENCH_REPS="${BENCH_REPS:-3}"
TIMEOUT_ENV="${TIMEOUT_ENV:-30}"
TIMEOUT_DEPS="${TIMEOUT_DEPS:-45}"
TIMEOUT_KERNELS="${TIMEOUT_KERNELS:-45}"
TIMEOUT_CHECK="${TIMEOUT_CHECK:-90}"
TIMEOUT_PYTEST_GPU="${TIMEOUT_PYTEST_GPU:-120}"
TIMEOUT_BENCH="${TIMEOUT_BENCH:-210}"
export PYTHONUNBUFFERED=1

COMMANDS="$OUT_DIR/commands.txt"
SUMMARY="$OUT_DIR/summary.txt"
INSTALL_LOG="$OUT_DIR/install.txt"

# ---------------------------------------------------------------- helpers
quote() {  # shell words, quoted only where needed, so commands.txt lines can be pasted back
    local out="" a sq="'\\''"
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=+,@%^-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/$sq}' "
        fi
    done
    printf '%s' "${out% }"
}

STEP_TIMEOUT=60
STEP_DEADLINE=0
STEP_NOTE=""
note() {  # a remark for this step's summary line (and its log)
    STEP_NOTE="${STEP_NOTE:+$STEP_NOTE; }$1"
}

# run LOG CMD...: record the command, then (not in dry-run) run it with what is left of the step's time
# (TIMEOUT_<STEP> covers all of a step's commands), stdout and stderr appended to LOG. Returns the
# command's exit status (124: timed out or no time left).
run() {
    local log="$1"; shift
    local line
    line="$(quote "$@")"
    echo "$line" >>"$COMMANDS"
    echo "+ $line"
    [[ $DRY_RUN -eq 1 ]] && return 0
    {
        echo "\$ $line"
    } >>"$log"
    local rc=0 left=$((STEP_DEADLINE - SECONDS))
    if [[ $left -lt 1 ]]; then
        echo "[not run: the step's ${STEP_TIMEOUT} s were used up]" >>"$log"
        note "not run (step time used up): $line"
        return 124
    fi
    timeout -k 10 "$left" "$@" >>"$log" 2>&1 || rc=$?
    echo "[exit $rc]" >>"$log"
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        note "timed out (step limit ${STEP_TIMEOUT} s): $line"
    fi
    return $rc
}

last_line() {  # LOG REGEX: the last line of LOG matching REGEX becomes a note (the step's verdict)
    [[ $DRY_RUN -eq 1 ]] && return 0
    local hit
    hit="$(grep -E "$2" "$1" 2>/dev/null | tail -n 1 | cut -c1-160)" || true
    [[ -n "$hit" ]] && note "$hit"
    return 0
}

log_line() {  # LOG MSG: a line in a step's log (nothing is written in a dry run)
    [[ $DRY_RUN -eq 1 ]] || echo "$2" >>"$1"
}

STEPS=()
declare -A STATUS=() CODE=() SECS=() NOTES=()

write_summary() {
    {
        echo "# bench/gpu_run.sh $(quote "${ARGS[@]}")  ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), repo $REPO)"
        printf '%-11s %-8s %-5s %8s  %s\n' step status exit seconds note
        local s
        for s in "${STEPS[@]}"; do
            printf '%-11s %-8s %-5s %8s  %s\n' "$s" "${STATUS[$s]}" "${CODE[$s]}" "${SECS[$s]}" "${NOTES[$s]}"
        done
    } >"$SUMMARY"
}

now() { date +%s.%N; }

# do_step NAME TIMEOUT: run step_NAME, record status, exit code and duration, rewrite summary.txt.
do_step() {
    local name="$1"
    STEP_TIMEOUT="$2"
    STEP_DEADLINE=$((SECONDS + STEP_TIMEOUT))
    STEP_NOTE=""
    echo "# step $name (its commands together limited to ${STEP_TIMEOUT} s)" >>"$COMMANDS"
    echo "== $name"
    local t0 t1 rc=0
    t0="$(now)"
    "step_$name" || rc=$?
    t1="$(now)"
    STEPS+=("$name")
    if [[ $DRY_RUN -eq 1 ]]; then
        STATUS[$name]="dry-run"; CODE[$name]="-"; SECS[$name]="0.0"
    else
        STATUS[$name]="$([[ $rc -eq 0 ]] && echo ok || echo failed)"
        CODE[$name]="$rc"
        SECS[$name]="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    fi
    NOTES[$name]="$STEP_NOTE"
    write_summary
    return 0
}

first_failure() {  # keeps the first nonzero status in FAIL
    [[ $FAIL -eq 0 ]] && FAIL="$1"
    return 0
}

# ---------------------------------------------------------------- steps
step_env() {
    local log="$OUT_DIR/env.txt" FAIL=0
    [[ $DRY_RUN -eq 1 ]] || : >"$log"
    run "$log" date -u || first_failure $?
    run "$log" uname -a || true
    run "$log" nvidia-smi || first_failure $?
    run "$log" nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
    run "$log" "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], sys.executable); print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version()); print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count()); print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None)' \
        || first_failure $?
    run "$log" "$PY" -m pip list --disable-pip-version-check || true
    if [[ -d .git ]]; then
        run "$log" git rev-parse HEAD || true
        run "$log" git status --short || true
    else
        note "no .git here: commit not recorded"
    fi
    return $FAIL
}

# True when PKG has a wheel in $WHEELS (wheel names use underscores, any case).
have_wheel() {
    local stem="${1//-/_}"
    local f
    for f in "$WHEELS"/*.whl; do
        [[ -e "$f" ]] || continue
        local base="${f##*/}"
        [[ "${base,,}" == "${stem,,}"-* ]] && return 0
    done
    return 1
}

# pip_optional PKG: install PKG from the wheels folder (no index, wheels only); failure is logged, not fatal.
pip_optional() {
    local pkg="$1"
    if ! have_wheel "$pkg" && [[ $DRY_RUN -eq 0 ]]; then
        note "$pkg: no wheel in $WHEELS"
        log_line "$INSTALL_LOG" "$pkg: no wheel in $WHEELS"
        return 0
    fi
    if run "$INSTALL_LOG" "$PY" -m pip install --disable-pip-version-check --no-index --only-binary=:all: \
        --find-links "$WHEELS" "$pkg"; then
        return 0
    fi
    # its dependencies may be missing from the folder: the package alone may still import
    if run "$INSTALL_LOG" "$PY" -m pip install --disable-pip-version-check --no-index --only-binary=:all: \
        --no-deps --find-links "$WHEELS" "$pkg"; then
        note "$pkg: installed with --no-deps"
        return 0
    fi
    note "$pkg: install failed (install.txt)"
    return 1
}

# dnahnet's runtime dependencies that the device image may lack (python module -> pip name).
DEPS_MODULES=(pysam pyfaidx Bio pyranges typer rich pandas numpy safetensors)
declare -A DEPS_PIP=([pysam]=pysam [pyfaidx]=pyfaidx [Bio]=biopython [pyranges]=pyranges [typer]=typer
                     [rich]=rich [pandas]=pandas [numpy]=numpy [safetensors]=safetensors)
DNAHNET=(dnahnet)

# find_dnahnet: the `dnahnet` command of $PY (on PATH, else in its scripts folder) into DNAHNET.
find_dnahnet() {
    local scripts
    if command -v dnahnet >/dev/null 2>&1; then
        DNAHNET=(dnahnet)
        return 0
    fi
    scripts="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" || scripts=""
    if [[ -n "$scripts" && -x "$scripts/dnahnet" ]]; then
        DNAHNET=("$scripts/dnahnet")
        return 0
    fi
    return 1
}

step_deps() {
    local FAIL=0 missing=() m
    if [[ $DRY_RUN -eq 1 ]]; then  # what is missing is only known there; show the installs for the usual case
        echo "# (only the modules among ${DEPS_MODULES[*]} that fail to import are installed; shown: the four the device image lacks)" >>"$COMMANDS"
        missing=(pysam pyfaidx Bio pyranges)
    else
        for m in "${DEPS_MODULES[@]}"; do
            "$PY" -c "import $m" >/dev/null 2>&1 || missing+=("$m")
        done
        log_line "$INSTALL_LOG" "dnahnet runtime modules missing: ${missing[*]:-none}"
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        if [[ -n "$WHEELS" ]]; then
            for m in "${missing[@]}"; do
                pip_optional "${DEPS_PIP[$m]}" || first_failure 1
            done
        elif [[ $DRY_RUN -eq 1 ]]; then
            note "no wheels folder: missing runtime modules would be reported, not installed"
        else
            note "missing ${missing[*]} and no wheels folder: dnahnet check and some test modules cannot import"
            first_failure 1
        fi
    fi
    # the gate: does the CLI import (every command module, hence every runtime dependency)?
    run "$INSTALL_LOG" "$PY" -c 'import dnahnet_cli.cli' || { first_failure $?; note "dnahnet_cli.cli does not import"; }
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "# (only when the dnahnet distribution is not installed in $PY)" >>"$COMMANDS"
        run "$INSTALL_LOG" "$PY" -m pip install --disable-pip-version-check --no-index --no-deps \
            --no-build-isolation -e .
        return 0
    fi
    find_dnahnet && return $FAIL
    if ! "$PY" -m pip show dnahnet >/dev/null 2>&1; then  # not installed in this interpreter: the entry point
        run "$INSTALL_LOG" "$PY" -m pip install --disable-pip-version-check --no-index --no-deps \
            --no-build-isolation -e . || note "pip install -e . failed"
        hash -r
        find_dnahnet && return $FAIL
    fi
    DNAHNET=("$PY" -m dnahnet_cli)
    note "no dnahnet command for $PY: check runs as $PY -m dnahnet_cli"
    return $FAIL
}

step_kernels() {
    local FAIL=0 pkg
    if [[ -z "$WHEELS" ]]; then
        note "no wheels folder (--wheels DIR or .whl/): optional kernels absent unless already installed"
        log_line "$INSTALL_LOG" "no wheels folder: mamba-ssm, causal-conv1d, flash-attn not installed by this run"
    else
        for pkg in mamba-ssm causal-conv1d flash-attn; do
            pip_optional "$pkg" || first_failure 1
        done
    fi
    run "$INSTALL_LOG" "$PY" -c 'from dnahnet_cli.model import kernels; [print(k, v) for k, v in kernels.detect().items()]; print("active", kernels.active_kernels())' \
        || first_failure $?
    return $FAIL
}

step_check() {
    local log="$OUT_DIR/check.txt" FAIL=0
    [[ $DRY_RUN -eq 1 ]] || : >"$log"
    run "$log" "${DNAHNET[@]}" check --device cuda || first_failure $?
    run "$log" "${DNAHNET[@]}" check --device cuda --dtype bfloat16 || first_failure $?
    last_line "$log" '^dnahnet check: (all|[0-9]+ of)'
    return $FAIL
}

step_pytest_gpu() {
    local log="$OUT_DIR/pytest_gpu.txt" FAIL=0
    [[ $DRY_RUN -eq 1 ]] || : >"$log"
    # -rs: list skip reasons (a GPU test skipped on a GPU machine is a finding); collection errors of
    # CPU-only modules (a dependency missing on the device) must not keep the GPU tests from running.
    run "$log" "$PY" -m pytest -q -rs -m gpu -p no:cacheprovider --continue-on-collection-errors tests/ \
        || first_failure $?
    last_line "$log" '^[0-9]+ (passed|failed|skipped|deselected|error)|(passed|failed|skipped|error).* in [0-9.]+s'
    return $FAIL
}

step_bench() {
    local log="$OUT_DIR/bench.txt" FAIL=0
    [[ $DRY_RUN -eq 1 ]] || : >"$log"
    # shellcheck disable=SC2206  # sizes and lengths are lists of words on purpose
    local sizes=($BENCH_SIZES) lengths=($BENCH_LENGTHS)
    run "$log" "$PY" bench/run.py --device cuda --sizes "${sizes[@]}" --lengths "${lengths[@]}" \
        --reps "$BENCH_REPS" --train-reps "$BENCH_REPS" --gen-tokens 256 --max-call-s 20 \
        --out "$OUT_DIR/bench_gpu.json" || first_failure $?
    if [[ $DRY_RUN -eq 0 ]]; then
        if [[ -s "$OUT_DIR/bench_gpu.json" ]]; then note "wrote bench_gpu.json"; else note "no bench_gpu.json"; fi
    fi
    return $FAIL
}

# ---------------------------------------------------------------- main
ARGS=("$OUT_DIR")
[[ $DRY_RUN -eq 1 ]] && ARGS+=(--dry-run)
[[ -n "$WHEELS" ]] && ARGS+=(--wheels "$WHEELS")
{
    echo "# bench/gpu_run.sh $(quote "${ARGS[@]}")"
    echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'); cwd $REPO; PYTHONUNBUFFERED=1$([[ -n "${DNAHNET_KERNELS:-}" ]] && echo " DNAHNET_KERNELS=$DNAHNET_KERNELS")"
    [[ $DRY_RUN -eq 1 ]] && echo "# dry run: nothing below was executed"
} >"$COMMANDS"
[[ $DRY_RUN -eq 1 ]] || : >"$INSTALL_LOG"

do_step env "$TIMEOUT_ENV"
do_step deps "$TIMEOUT_DEPS"
do_step kernels "$TIMEOUT_KERNELS"
do_step check "$TIMEOUT_CHECK"
do_step pytest_gpu "$TIMEOUT_PYTEST_GPU"
do_step bench "$TIMEOUT_BENCH"

echo "== summary ($SUMMARY)"
cat "$SUMMARY"
for s in "${STEPS[@]}"; do
    [[ "${STATUS[$s]}" == failed ]] && exit 1
done
exit 0
