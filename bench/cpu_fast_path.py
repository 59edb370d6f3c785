"""CPU fast path, before vs after, side by side in one run (issue: bf16 on AMX, fused kernels, both cores).

"before" is the plain fp32 eager path of an earlier commit (default 18b10ff, the code before this work),
unpacked with `git archive` outside the repository; "after" is this checkout with `--dtype auto`. Each runs
in its own long-lived worker process (bench/_fastpath_worker.py) that builds each model once; the parent
sends one timing job at a time, rotating the order every repetition, so both see the same machine state.
Routers are replaced by the fixed every-R-th-position control (an untrained router would keep ~half the
positions). Reports medians, paired ratios (median over repetitions of t_before / t_after), nt/s, and
achieved GFLOP/s against fp32 and bf16 GEMM probes taken in the same run.

    python bench/cpu_fast_path.py --reps 5 --out docs/results/cpu-fast-path.json
    python bench/cpu_fast_path.py --same-model --reps 5 ...   # both build today's presets: the code's ratio
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import io
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from common import emit, environment, gemm_probe  # noqa: E402

from dnahnet_cli.model.flops import forward_flops  # noqa: E402
from dnahnet_cli.model.precision import choose_dtype  # noqa: E402
from dnahnet_cli.model.presets import get_preset  # noqa: E402

# (case, variant, worker, job): variants of one case are compared with each other
CASES = {
    "score small 8192 nt, 1 thread": [("before fp32", "before", dict(kind="score", preset="small", length=8192, batch=1, threads=1, dtype="float32")),
                                      ("after auto", "after", dict(kind="score", preset="small", length=8192, batch=1, threads=1, dtype="auto"))],
    "score small 8192 nt, 2 threads": [("after auto, 1 thread", "after", dict(kind="score", preset="small", length=8192, batch=1, threads=1, dtype="auto")),
                                       ("after auto, 2 threads", "after", dict(kind="score", preset="small", length=8192, batch=1, threads=2, dtype="auto")),
                                       ("before fp32, 2 threads", "before", dict(kind="score", preset="small", length=8192, batch=1, threads=2, dtype="float32"))],
    "score tiny 16 x 1024 nt, 1 thread": [("before fp32", "before", dict(kind="score", preset="tiny", length=1024, batch=16, threads=1, dtype="float32")),
                                          ("after auto", "after", dict(kind="score", preset="tiny", length=1024, batch=16, threads=1, dtype="auto"))],
    "dnaHNet vs Transformer++ (small) 8192 nt, after, 1 thread": [
        ("small-tpp", "after", dict(kind="score", preset="small-tpp", length=8192, batch=1, threads=1, dtype="auto")),
        ("small", "after", dict(kind="score", preset="small", length=8192, batch=1, threads=1, dtype="auto"))],
    "score cpu 8192 nt, 1 thread": [("before fp32", "before", dict(kind="score", preset="cpu", length=8192, batch=1, threads=1, dtype="float32")),
                                    ("after auto", "after", dict(kind="score", preset="cpu", length=8192, batch=1, threads=1, dtype="auto"))],
    "train step small 8192 nt, 1 thread": [("before fp32", "before", dict(kind="train", preset="small", length=8192, batch=1, threads=1, dtype="float32")),
                                           ("after auto", "after", dict(kind="train", preset="small", length=8192, batch=1, threads=1, dtype="auto"))],
    "train step small 8192 nt, 2 threads": [("before fp32, 2 threads", "before", dict(kind="train", preset="small", length=8192, batch=1, threads=2, dtype="float32")),
                                            ("after auto, 2 threads", "after", dict(kind="train", preset="small", length=8192, batch=1, threads=2, dtype="auto"))],
    "train step cpu 4 x 2048 nt, 1 thread": [("before fp32", "before", dict(kind="train", preset="cpu", length=2048, batch=4, threads=1, dtype="float32")),
                                             ("after auto", "after", dict(kind="train", preset="cpu", length=2048, batch=4, threads=1, dtype="auto"))],
    "train step cpu 1 x 8192 nt, 1 thread": [("before fp32", "before", dict(kind="train", preset="cpu", length=8192, batch=1, threads=1, dtype="float32")),
                                             ("after auto", "after", dict(kind="train", preset="cpu", length=8192, batch=1, threads=1, dtype="auto"))],
    "train step tiny 8 x 1024 nt, 1 thread": [("before fp32", "before", dict(kind="train", preset="tiny", length=1024, batch=8, threads=1, dtype="float32")),
                                              ("after auto", "after", dict(kind="train", preset="tiny", length=1024, batch=8, threads=1, dtype="auto"))],
}


def unpack(commit: str, dest: Path) -> Path:
    """The package of `commit` under dest (git archive; no worktree bookkeeping in this repository)."""
    if not (dest / "dnahnet_cli").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(["git", "archive", commit, "dnahnet_cli"], cwd=ROOT, capture_output=True, check=True).stdout
        tarfile.open(fileobj=io.BytesIO(blob)).extractall(dest)
    return dest


class JobUnsupported(Exception):
    """The worker's checkout cannot build this job's model (e.g. the preset is newer than the 'before' commit)."""


class Worker:
    def __init__(self, root: Path):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_fastpath_worker.py"), str(root)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.config: dict | None = None  # the model config the last job ran (this checkout's, or the job's)
        self.threads: int | None = None  # the thread count the worker timed with

    def time(self, job: dict) -> float:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died on {job}")
        reply = json.loads(line)
        if "error" in reply:
            raise JobUnsupported(reply["error"])
        self.config, self.threads = reply.get("config"), reply.get("threads")
        return reply["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def flops_of(job: dict, config: dict | None) -> float:
    """Analytic FLOPs of the job at the fixed target ratios (training step = 3x forward), of the model the worker
    actually built (`config`, as it reported it: an older checkout's preset may be another layout)."""
    cfg = get_preset(job["preset"])
    if config is not None:
        known = set(type(cfg).__dataclass_fields__)
        cfg = type(cfg)(**{**cfg.to_dict(), **{k: v for k, v in config.items() if k in known}})
    report = forward_flops(cfg, job["length"])
    return report.total * job["batch"] * (3 if job["kind"] == "train" else 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="18b10ff", help="commit of the 'before' code (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cases", nargs="*", help="substrings selecting cases (default: all)")
    ap.add_argument("--before-dtype", choices=["case", "auto"], default="case",
                    help="case: 'before' runs the precision its case names (fp32); auto: 'before' runs --dtype auto "
                    "too, to compare two versions of the fast path")
    ap.add_argument("--same-model", action="store_true",
                    help="both workers build today's preset (its config is sent with each job), so a ratio is the "
                         "code's alone; by default each checkout builds its own preset of that name, and 18b10ff's "
                         "small and tiny are the older layout with attention at stage 0")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    auto, why = choose_dtype("auto", torch.device("cpu"))
    before_root = unpack(args.before, Path("/tmp") / f"dnahnet-before-{args.before}")
    env_at_start = environment()  # load average before the run, not after it
    workers = {"before": Worker(before_root), "after": Worker(ROOT)}
    cases = {k: v for k, v in CASES.items() if not args.cases or any(s in k for s in args.cases)}
    results = {}
    probes: dict[str, list[float]] = {"fp32": [], "bf16": []}
    try:
        for case, variants in cases.items():
            if args.before_dtype == "auto":
                variants = [(label.replace("fp32", "auto") if w == "before" else label, w,
                             {**job, "dtype": "auto"} if w == "before" else job) for label, w, job in variants]
            jobs = [(label, w, {**job, "dtype": auto if job["dtype"] == "auto" else job["dtype"],
                                **({"config": get_preset(job["preset"]).to_dict()} if args.same_model else {})})
                    for label, w, job in variants]
            built: dict[str, dict] = {}  # label -> the config its worker built, and the threads it timed with
            try:
                for label, w, job in jobs:
                    workers[w].time(job)  # warm-up
                    built[label] = {"config": workers[w].config, "threads": workers[w].threads}
            except JobUnsupported as exc:
                results[case] = {"skipped": f"{w} checkout: {exc}"}
                print(f"{case}: skipped ({w} checkout: {exc})", file=sys.stderr)
                continue
            samples: dict[str, list[float]] = {label: [] for label, _, _ in jobs}
            for rep in range(args.reps):
                torch.set_num_threads(1)
                probes["fp32"].append(gemm_probe(1024, dtype=torch.float32))
                probes["bf16"].append(gemm_probe(1024, dtype=torch.bfloat16))
                order = jobs[rep % len(jobs):] + jobs[: rep % len(jobs)]
                for label, w, job in order:
                    samples[label].append(workers[w].time(job))
            med = {k: statistics.median(v) for k, v in samples.items()}
            base = jobs[0][0]
            results[case] = {
                "jobs": {label: job for label, _, job in jobs}, "samples": samples, "median_s": med,
                "nt_per_s": {label: job["length"] * job["batch"] / med[label] for label, _, job in jobs},
                "achieved_gflops": {label: flops_of(job, built[label]["config"]) / med[label] / 1e9
                                    for label, _, job in jobs},
                "built": built,
                "speedup_vs_first": {label: statistics.median(a / b for a, b in zip(samples[base], samples[label]))
                                     for label, _, _ in jobs},
            }
            line = ", ".join(f"{k} {results[case]['nt_per_s'][k]:,.0f} nt/s (x{results[case]['speedup_vs_first'][k]:.2f})"
                             for k in samples)
            print(f"{case}: {line}", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()
    payload = {"command": " ".join([Path(sys.executable).name] + sys.argv), "auto_dtype": f"{auto} ({why})",
               "before_commit": args.before, "same_model": args.same_model,
               "environment": {**env_at_start, "note": "the parent's; each case's 'built' has the threads and "
                                                       "model config of the worker that timed it"},
               "reps": args.reps,
               "gemm_probe_gflops_1thread": {k: statistics.median(v) for k, v in probes.items() if v},
               "gemm_probes_per_rep": probes, "cases": results}
    emit(payload, args.out)


if __name__ == "__main__":
    main()
