"""Side-by-side timing of two versions of the reference path in one process (interleaved, paired ratios).

"before" swaps in the einsum SSD of commit b624a6a (dnahnet_cli/ssd.py at that commit, read with git show)
and a 1024-query attention block; "after" is the working tree. Transformer++ is unaffected and anchors
the speedup-vs-T++ of both versions.

    python bench/before_after.py --length 8192 --reps 3 --out docs/results/cpu-before-after.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment, interleaved, paired_ratio  # noqa: E402
from variants import build, family_specs, make_ids  # noqa: E402

from dnahnet_cli.model import layers, ssd  # noqa: E402


def load_old_ssd(commit: str):
    src = subprocess.run(["git", "show", f"{commit}:dnahnet_cli/ssd.py"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "ssd_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("ssd_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small")
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--commit", default="b624a6a")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = load_old_ssd(args.commit)
    versions = {"before": (old.ssd_chunked, 1024), "after": (ssd.ssd_chunked, layers.CausalSelfAttention.QUERY_BLOCK)}

    def use(version: str) -> None:
        fn, block = versions[version]
        layers.ssd_chunked = fn
        ssd.ssd_chunked = fn  # ema_chunked looks it up in the module
        layers.CausalSelfAttention.QUERY_BLOCK = block

    after_fn = versions["after"][0]
    ids = make_ids(args.length, torch.device("cpu"))
    calls, outs = {}, {}
    for spec in family_specs(args.size):
        model = build(spec, torch.device("cpu"))
        for version in (("before", "after") if spec["role"] != "tpp" else ("after",)):
            name = f"{spec['name']}:{version}"

            def call(model=model, version=version, name=name):
                use(version)
                with torch.inference_mode():
                    outs[name] = model(ids).logits
            calls[name] = call
    timing = interleaved(calls, args.reps)
    use("after")
    assert ssd.ssd_chunked is after_fn
    tpp = f"{args.size}-tpp:after"
    res = {"command": " ".join(sys.argv), "environment": environment(), "length": args.length, **timing,
           "nt_per_s": {n: args.length / t for n, t in timing["median"].items()},
           "speedup_vs_tpp": {n: paired_ratio(timing["samples"], tpp, n) for n in calls},
           "after_over_before": {n.split(":")[0]: paired_ratio(timing["samples"], n, n.replace(":before", ":after"))
                                 for n in calls if n.endswith(":before")},
           "max_abs_logit_diff": {n.split(":")[0]: float((outs[n] - outs[n.replace(":before", ":after")]).abs().max())
                                  for n in calls if n.endswith(":before")}}
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"L={args.length}, {args.reps} interleaved repetitions, probe {[round(p) for p in timing['probe_gflops']]} GFLOP/s")
    print(f"{'variant':32s} {'nt/s':>8s} {'x vs T++':>9s}")
    for n in calls:
        print(f"{n:32s} {res['nt_per_s'][n]:8,.0f} {res['speedup_vs_tpp'][n]:9.2f}")
    for n, x in res["after_over_before"].items():
        print(f"{n}: after/before speedup x{x:.2f} (paired), max |logit diff| {res['max_abs_logit_diff'][n]:.1e}")


if __name__ == "__main__":
    main()
