"""How the compiler's CPU tuning changes the compiled kernels' speed: each -mtune, with and without the 512-bit
vector options that cpu_mixer.COMPILE_FLAGS asks for, on this machine.

Why: GCC 12's -march=native takes the tuning of the CPU model it recognises; on an AMX Xeon under a hypervisor
that was Rocket Lake's, which copies each 16-float vector in two halves, and the kernels ran ~1.8x slower.
Each variant is built into its own cache folder by a wrapper compiler that drops the 512-bit options ("without")
or keeps them ("with") and appends the -mtune; a fresh worker process per (variant, repetition), in rotating
order, times one causal attention call (8 heads of 16 over 1,366 chunks, the `cpu` main network) and one `small`
forward of 8,192 nt (bf16 auto, fixed routers, 1 thread). Medians over repetitions.

    python bench/kernel_tuning.py --reps 3 --out docs/results/kernel-tuning-amx-2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import environment

TUNINGS = ["native", "generic", "skylake-avx512", "cascadelake", "icelake-server", "sapphirerapids"]
WIDE = ("-mprefer-vector-width=512", "-mmove-max=512", "-mstore-max=512")

WORKER = r"""
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1); torch.manual_seed(0)
from dnahnet_cli.model import cpu_attention, cpu_mixer
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.tasks.engine import LikelihoodEngine
from common import use_fixed_ratio_routers
assert cpu_mixer.status().startswith("compiled C kernels"), cpu_mixer.status()
q, k, v = (torch.randn(1, 8, 1366, 16) for _ in range(3))
def best(f, n):
    f(); ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
attention = best(lambda: cpu_attention.causal(q, k, v), 20)
eng = LikelihoodEngine(DNAHNet(get_preset("small")).eval(), device="cpu", dtype="auto")
use_fixed_ratio_routers(eng.model, eng.model.config.ratio_targets)
ids = torch.randint(0, 4, (1, 8193)); mask = torch.ones_like(ids, dtype=torch.bool)
forward = best(lambda: eng.forward(ids, mask), 3)
print(json.dumps({"attention_ms": attention * 1e3, "small_forward_ms": forward * 1e3}))
"""


def wrapper(folder: Path, cc: str, tune: str, wide: bool) -> Path:
    """A compiler that drops the 512-bit options unless `wide`, then appends -mtune=`tune` (unless native)."""
    flag = "" if tune == "native" else f"-mtune={tune}"
    drop = "" if wide else f"{'|'.join(WIDE)}) ;; "
    script = folder / "cc"
    script.write_text(f"#!/bin/bash\nargs=()\nfor a in \"$@\"; do case \"$a\" in {drop}*) args+=(\"$a\");; esac; done\n"
                      f"exec {cc} \"${{args[@]}}\" {flag}\n")
    script.chmod(0o755)
    return script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tunings", nargs="*", default=TUNINGS, help="-mtune values (native: -march=native's own)")
    ap.add_argument("--out")
    args = ap.parse_args()
    cc = shutil.which("gcc")
    if cc is None:
        sys.exit("kernel_tuning.py: needs gcc (the 512-bit options are GCC's)")
    bench_dir = str(Path(__file__).resolve().parent)
    variants = [(tune, wide) for tune in args.tunings for wide in (False, True)]
    samples: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dnahnet-tuning-") as tmp:
        envs = {}
        for i, (tune, wide) in enumerate(variants):
            folder = Path(tmp) / f"v{i}"
            folder.mkdir()
            envs[(tune, wide)] = {**os.environ, "DNAHNET_CC": str(wrapper(folder, cc, tune, wide)),
                                  "DNAHNET_KERNEL_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1"}
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for tune, wide in order:
                res = subprocess.run([sys.executable, "-c", WORKER, bench_dir], capture_output=True, text=True,
                                     env=envs[(tune, wide)], timeout=900)
                if res.returncode != 0:
                    sys.exit(f"worker for {tune} ({'with' if wide else 'without'} 512-bit): "
                             f"{res.stderr.strip().splitlines()[-1]}")
                samples.setdefault(f"{tune} | {'with' if wide else 'without'}", []).append(
                    json.loads(res.stdout.strip().splitlines()[-1]))
    results = {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]} | {"samples": runs}
               for name, runs in samples.items()}
    print(f"{'tuning | 512-bit options':45s} {'attention ms':>13s} {'small forward ms':>17s}")
    for name, r in results.items():
        print(f"{name:45s} {r['attention_ms']:13.2f} {r['small_forward_ms']:17.0f}")
    if args.out:
        gcc_version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        march = subprocess.run([cc, "-march=native", "-Q", "--help=target"], capture_output=True,
                               text=True).stdout
        native = next((line.split()[-1] for line in march.splitlines() if line.strip().startswith("-march=")), "?")
        Path(args.out).write_text(json.dumps({
            "command": "python bench/kernel_tuning.py " + " ".join(sys.argv[1:]), "reps": args.reps,
            "compiler": gcc_version, "march_native_is": native, "environment": environment(),
            "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
