"""The compiled Mamba2 scan with its state (and decay) in fp32, as before, against fp64, side by side: accuracy
against a float64 recurrence on a period-2 input with a slowly decaying head, and the time of the shipped model's
8,192-nt scoring forward with either library swapped in (interleaved, medians, paired ratio).

    python bench/scan_state_precision.py --before d56d847 --reps 9 --out docs/results/scan-state-precision.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, environment, interleaved, paired_ratio  # noqa: E402

from dnahnet_cli.model import cpu_mixer  # noqa: E402
from dnahnet_cli.model.default_model import resolve_model  # noqa: E402
from dnahnet_cli.tasks.engine import LikelihoodEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build(source_text: str, folder: Path):
    """A fresh load of the kernels compiled from `source_text` (cpu_mixer's own build, another cache folder)."""
    folder.mkdir(parents=True)
    source = folder / "mamba2_cpu.c"
    source.write_text(source_text)
    saved = cpu_mixer.SOURCE
    cpu_mixer.SOURCE, cpu_mixer._lib, cpu_mixer._status = source, None, None
    os.environ["DNAHNET_KERNEL_CACHE"] = str(folder / "cache")
    try:
        lib = cpu_mixer.load()
        if lib is None:
            raise SystemExit(f"kernels unavailable: {cpu_mixer.status()}")
        return lib
    finally:
        cpu_mixer.SOURCE = saved


def ab_arguments(doc: str, what: str) -> argparse.Namespace:
    """The scan A/B scripts' options (--before COMMIT, --reps, --out), with one thread and a fixed seed set."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help=f"commit whose csrc/mamba2_cpu.c is the 'before' {what}")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return args


def before_and_after(before: str, folder: Path) -> dict:
    """{"before": the kernels compiled from `before`'s csrc/mamba2_cpu.c, "after": this checkout's}, each a fresh
    build in its own folder under `folder`: the side-by-side scripts swap them in with use(). `before` must have
    this checkout's kernel interface (the function table in cpu_mixer.load): since 25234d7 added
    add_rmsnorm_backward, an older commit's build fails to load (undefined symbol), so run such a comparison from a
    checkout of its own time."""
    old_text = subprocess.run(["git", "show", f"{before}:dnahnet_cli/model/csrc/mamba2_cpu.c"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    return {"before": build(old_text, folder / "old"), "after": build(cpu_mixer.SOURCE.read_text(), folder / "new")}


def use(lib) -> None:
    cpu_mixer._lib, cpu_mixer._status = lib, "ok"


def drift(l: int = 16384) -> dict[str, float]:
    """Relative error of the compiled scan against a float64 recurrence, at three lengths of a period-2 input."""
    torch.manual_seed(0)
    h, p, n = 2, 16, 16
    xbc = torch.randn(2, h * p + 2 * n).repeat(l // 2, 1)[None].contiguous()
    dt = torch.full((1, l, h), 0.05)
    A, D = torch.tensor([-1.0 / (0.05 * 17000), -0.5]), torch.ones(h)  # head 0 decays over ~17,000 steps
    y, _ = cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n)
    x = xbc[0].double()
    X, B, C = x[:, :h * p].view(l, h, p), x[:, h * p:h * p + n], x[:, h * p + n:]
    decay = torch.exp(dt[0].double() * A.double())
    s, ref = torch.zeros(h, p, n, dtype=torch.float64), []
    for t in range(l):
        s = decay[t][:, None, None] * s + (X[t] * dt[0, t].double()[:, None])[:, :, None] * B[t]
        ref.append((s * C[t]).sum(-1) + D.double()[:, None] * X[t])
    r = torch.stack(ref).view(l, h * p)
    return {str(cut): float((y[0, cut - 256:cut].double() - r[cut - 256:cut]).norm() / r[cut - 256:cut].norm())
            for cut in (1024, 4096, l)}


def scan_times(libs: dict, reps: int) -> dict[str, dict[str, float]]:
    """Median ms of the scan alone, per library, at the shipped model's stage-0 and stage-1 shapes (8,192 nt)."""
    out = {}
    for h, p, n, l in ((5, 32, 32, 8192), (6, 32, 32, 2731)):
        xbc, dt = torch.randn(1, l, h * p + 2 * n), torch.rand(1, l, h) * 0.1
        A, D = -torch.rand(h), torch.ones(h)
        times: dict[str, list[float]] = {k: [] for k in libs}
        for _ in range(reps):
            for name, lib in libs.items():
                use(lib)
                start = time.perf_counter()
                cpu_mixer.ssd_scan(xbc, dt, A, D, h, p, n)
                times[name].append(time.perf_counter() - start)
        out[f"h{h}_p{p}_n{n}_l{l}"] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="HEAD", help="commit whose csrc/mamba2_cpu.c is the fp32-state kernel")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    old_text = subprocess.run(["git", "show", f"{args.before}:dnahnet_cli/model/csrc/mamba2_cpu.c"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="dnahnet-scan-ab-") as tmp:
        libs = {"fp32_state": build(old_text, Path(tmp) / "old"),
                "fp64_state": build(cpu_mixer.SOURCE.read_text(), Path(tmp) / "new")}
        accuracy = {}
        for name, lib in libs.items():
            use(lib)
            accuracy[name] = drift()
        engine = LikelihoodEngine.load(resolve_model(None), device="cpu", dtype="float32")
        seq = (ROOT / "examples" / "ecoli_k12_20kb.fa").read_text().split("\n", 1)[1].replace("\n", "")[:8192]
        lls = {}

        def score(name: str):
            def call() -> None:
                use(libs[name])
                lls[name] = float(engine.loglik([seq])[0])
            return call

        timing = interleaved({name: score(name) for name in libs}, args.reps)
        scans = scan_times(libs, 3 * args.reps)
    medians = {k: statistics.median(v) for k, v in timing["samples"].items()}
    emit({"command": "python " + " ".join(sys.argv), "before": args.before, "environment": environment(),
          "relative_error_vs_float64_period2_input": accuracy,
          "scoring_forward_8192nt_seconds_median": medians,
          "slowdown_fp64_over_fp32_state": paired_ratio(timing["samples"], "fp64_state", "fp32_state"),
          "scan_alone_ms_median": scans, "loglik_8192nt": lls, "samples": timing["samples"]}, args.out)


if __name__ == "__main__":
    main()
