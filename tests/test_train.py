"""`dnahnet train` on real genomes (CPU): learning, exact resume after SIGKILL, DDP == single process,
bad inputs, schedules, optimiser state without pickle, baselines through the same loop."""

from __future__ import annotations

import json
import re
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.train.checkpoints import optimizer_from_safetensors, optimizer_to_safetensors
from dnahnet_cli.train.config import TrainConfig, load_toml, make_config
from dnahnet_cli.train.trainer import lr_factor, ratio_targets_at, train
from conftest import MISSING_DATA, SHARED_DATA

DATA = SHARED_DATA
TRAIN = DATA / "corpus" / "train" / "GCF_000092585.1.fa.gz"  # Mycoplasma gallisepticum, 1.0 Mb
VAL = DATA / "corpus" / "train" / "M.alvi.fa.gz"  # Mycoplasma alvi, 0.84 Mb (another species)
PLASMIDS = DATA / "corpus" / "train" / "NC_016833.1.fa.gz"  # 230 kb, small and quick to encode
pytestmark = pytest.mark.skipif(not TRAIN.exists(), reason=MISSING_DATA)
ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], env: dict | None = None, torchrun: int = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `dnahnet train` in a fresh process (so it can be SIGKILLed or launched by torchrun)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={torchrun}"] \
        if torchrun else [sys.executable]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(launcher + ["-m", "dnahnet_cli.commands.train_cmd", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def _small(out: Path, *extra: str) -> list[str]:
    return ["--data", str(PLASMIDS), "--val", str(VAL), "--preset", "tiny", "--seq-len", "128",
            "--batch-size", "2", "--out", str(out), "--threads", "1", "--val-windows", "6", "--cache-dir",
            str(out.parent / "cache"), "--quiet", *extra]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _metrics(out: Path, timing: bool = True) -> list[dict]:
    recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return recs if timing else [{k: v for k, v in r.items() if k != "nt_per_s"} for r in recs]


# ------------------------------------------------------------------------------------------------- learning

def test_tiny_validation_loss_falls_on_real_genome(tmp_path):
    torch.set_num_threads(1)
    summary = train({"data": [str(TRAIN)], "val": [str(VAL)], "preset": "tiny", "seq_len": 256, "batch_size": 4,
                     "steps": 16, "lr": 3e-3, "eval_every": 8, "log_every": 4, "val_windows": 16,
                     "out": str(tmp_path / "run"), "quiet": True})
    start, end = summary["first_val_bpn"], summary["val_bpn"]
    assert 1.9 < start < 2.2  # untrained: about 2 bits per nucleotide
    assert end < start - 0.08, (start, end)  # learned the (AT-rich) Mycoplasma composition and more
    recs = _metrics(tmp_path / "run")
    trains = [r for r in recs if r["type"] == "train"]
    assert [r["step"] for r in trains] == [4, 8, 12, 16]
    for r in trains:
        assert len(r["F"]) == len(r["G"]) == len(r["realised_ratio"]) == 2 and r["nt_per_s"] > 0 and r["lr"] > 0
        assert all(0 < f <= 1 for f in r["F"])
    assert trains[-1]["nucleotides"] == 16 * 4 * 255
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-0000016"]


# ------------------------------------------------------------------------------------------------- resume

def test_resume_after_sigkill_is_exact(tmp_path):
    args = ["--steps", "6", "--ckpt-every", "2", "--log-every", "2", "--eval-every", "3", "--keep-last", "2"]
    straight = _cli(_small(tmp_path / "a", *args))
    assert straight.returncode == 0, straight.stderr

    killed = _cli(_small(tmp_path / "b", *args), env={"DNAHNET_KILL_AT_STEP": "5"})
    assert killed.returncode == -9  # SIGKILL: no cleanup ran
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == ["step-0000002", "step-0000004"] and not (tmp_path / "b" / "final").exists()
    resumed = _cli(_small(tmp_path / "b", *args, "--resume"))
    assert resumed.returncode == 0, resumed.stderr

    # killed while writing the step-4 checkpoint: the half-written one is never used
    dying = _cli(_small(tmp_path / "c", *args), env={"DNAHNET_KILL_IN_CHECKPOINT": "4"})
    assert dying.returncode == -9
    names = [p.name for p in (tmp_path / "c" / "checkpoints").iterdir()]
    assert "step-0000002" in names and "step-0000004" not in names
    for stale in (".final.k2j3ab", "..tmp-final-99999999.x1y2"):  # a final model's staging left by a crash
        (tmp_path / "c" / stale).mkdir()
    assert _cli(_small(tmp_path / "c", *args, "--resume")).returncode == 0
    leftovers = [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in (tmp_path / "c" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging directories of the killed run are gone

    # SIGTERM after step 5 (a scheduler's notice): the step finishes, a step-5 checkpoint is written, exit 143
    term = _cli(_small(tmp_path / "d", *args), env={"DNAHNET_TERM_AT_STEP": "5"})
    assert term.returncode == 143, term.stderr
    assert "step-0000005" in [p.name for p in (tmp_path / "d" / "checkpoints").iterdir()]
    assert not (tmp_path / "d" / "final").exists()
    resumed = _cli(_small(tmp_path / "d", *args, "--resume"))
    assert resumed.returncode == 0, resumed.stderr

    ref = _weights(tmp_path / "a" / "final")
    ref_metrics = _metrics(tmp_path / "a", timing=False)
    for run in ("b", "c", "d"):
        got = _weights(tmp_path / run / "final")
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=f"{run}: {k}")
        got_metrics = _metrics(tmp_path / run, timing=False)
        if run == "d":  # stopped mid log window (steps 5-6): the step-6 line after resuming averages step 6 alone
            straddled = lambda r: r["type"] == "train" and r["step"] == 6  # noqa: E731
            got_metrics = [r for r in got_metrics if not straddled(r)]
            assert len(got_metrics) == len(ref_metrics) - 1
            assert got_metrics == [r for r in ref_metrics if not straddled(r)]
        else:
            assert got_metrics == ref_metrics  # same losses, lr, ratios at every logged step
        opt_a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000006" / "optimizer.safetensors"))
        opt_b = load_file(str(tmp_path / run / "checkpoints" / "step-0000006" / "optimizer.safetensors"))
        for k in opt_a:
            torch.testing.assert_close(opt_b[k], opt_a[k], rtol=0, atol=1e-6)
    # keep-last 2 pruned the older periodic checkpoints
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000004", "step-0000006"]


def test_existing_run_needs_resume_and_finished_run_can_be_extended(tmp_path, capsys):
    out = tmp_path / "run"
    base = {"data": [str(PLASMIDS)], "preset": "tiny-mamba2", "seq_len": 64, "batch_size": 2, "steps": 2,
            "out": str(out), "quiet": True, "threads": 1, "cache_dir": str(tmp_path / "cache")}
    train(base)
    with pytest.raises(DnahnetError, match="--resume"):
        train(base)
    capsys.readouterr()
    summary = train({**base, "steps": 3, "resume": True, "lr": 5.0})  # lr is ignored: the checkpoint's is kept
    assert summary["steps"] == 3
    # said even under --quiet (it said nothing there): the user asked for a value this run does not use
    assert "warning: resuming keeps the checkpoint's settings: lr 0.001 (given 5.0)" in capsys.readouterr().err
    # a user's copy of a checkpoint folder (step-N.bak) is not a checkpoint: it crashed every later run in --out
    backup = out / "checkpoints" / "step-0000003.bak"
    shutil.copytree(out / "checkpoints" / "step-0000003", backup)
    assert train({**base, "steps": 4, "resume": True})["steps"] == 4 and backup.is_dir()
    state = json.loads((out / "checkpoints" / "step-0000003" / "trainer.json").read_text())
    assert state["config"]["lr"] == TrainConfig.lr and state["samples_consumed"] == 6


# ------------------------------------------------------------------------------------------------- DDP

def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    common = ["--steps", "3", "--log-every", "1", "--eval-every", "3", "--ckpt-every", "3"]
    single = _cli(_small(tmp_path / "one", *common, "--grad-accum", "2"))
    assert single.returncode == 0, single.stderr
    ddp = _cli([a for a in _small(tmp_path / "two", *common) if a != "--quiet"], torchrun=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stderr.count("final validation:") == 1, ddp.stderr[-3000:]  # rank 0's, not one per process
    a, b = _weights(tmp_path / "one" / "final"), _weights(tmp_path / "two" / "final")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-5, msg=k)
    ma = {(r["type"], r["step"]): r for r in _metrics(tmp_path / "one")}
    mb = {(r["type"], r["step"]): r for r in _metrics(tmp_path / "two")}
    assert ma.keys() == mb.keys()
    for key, r in ma.items():
        for field in ("loss", "train_bpn", "val_bpn"):
            if field in r:
                assert math.isclose(r[field], mb[key][field], rel_tol=1e-4), (key, field)
        if "samples" in r:
            assert r["samples"] == mb[key]["samples"]


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("case", ["missing", "empty", "not_fasta", "seq_len"])
def test_bad_inputs_exit_2_with_one_line(tmp_path, case):
    data = {"missing": tmp_path / "nope.fa", "empty": tmp_path / "empty.fa", "not_fasta": tmp_path / "x.fa",
            "seq_len": PLASMIDS}[case]
    (tmp_path / "empty.fa").write_text("")
    (tmp_path / "x.fa").write_text("chrom\tstart\tend\nchr1\t1\t100\n")
    extra = ["--seq-len", "1"] if case == "seq_len" else []
    res = _cli(["--data", str(data), "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run"), *extra])
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("dnahnet: error:")]
    assert len(lines) == 1 and res.stderr.strip().endswith(lines[0]) and "Traceback" not in res.stderr
    expect = {"missing": "not found", "empty": "empty FASTA", "not_fasta": "not a FASTA", "seq_len": "seq-len"}[case]
    assert expect in lines[0]
    if case != "seq_len":
        assert data.name in lines[0]


@pytest.mark.parametrize("bad", ["empty", "not_fasta"])
def test_a_bad_fasta_inside_a_data_directory_fails_before_anything_is_written(tmp_path, bad):
    """Files named directly were checked up front; a directory's members only when encoded, after the cache and
    the run directory had been created."""
    data = tmp_path / "genomes"
    (data / "sub").mkdir(parents=True)
    (data / "a.fa.gz").symlink_to(PLASMIDS)
    (data / "sub" / "b.fa").write_text("" if bad == "empty" else "chrom\tstart\tend\nchr1\t1\t100\n")
    res = _cli(["--data", str(data), "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run"),
                "--cache-dir", str(tmp_path / "cache")])
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("dnahnet: error: --data: "), res.stderr
    assert "b.fa" in res.stderr and ("empty FASTA" if bad == "empty" else "not a FASTA") in res.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_config_validation_errors(tmp_path):
    with pytest.raises(DnahnetError, match="batch-size"):
        make_config({"batch_size": 0})
    with pytest.raises(DnahnetError, match="ratio targets"):
        make_config({"ratio_targets": [3.0, 1.0]})
    bad = tmp_path / "t.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(DnahnetError, match="unknown option 'stepz'"):
        load_toml(bad)
    with pytest.raises(DnahnetError, match="ratio-targets needs 2"):
        train({"data": [str(PLASMIDS)], "preset": "tiny", "seq_len": 64, "steps": 1, "ratio_targets": [3.0],
               "out": str(tmp_path / "r"), "quiet": True, "cache_dir": str(tmp_path / "c")})


def test_ratio_targets_option_accepts_spaces():
    """`--ratio-targets "3 2"` once read as 32 (spaces were dropped before splitting on commas)."""
    from dnahnet_cli.commands.train_cmd import _floats
    assert _floats("3 2", "--ratio-targets") == [3.0, 2.0]
    assert _floats("3, 2", "--ratio-targets") == [3.0, 2.0]
    assert _floats("3,2", "--ratio-targets") == [3.0, 2.0]
    assert _floats("none", "--ratio-targets") == []
    with pytest.raises(DnahnetError, match="--ratio-targets"):
        _floats("3;2", "--ratio-targets")


# ------------------------------------------------------------------------------------------------- pieces

def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 100, 0.1, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))  # warmup rises
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # cosine decays
    assert f[-1] == pytest.approx(0.1, abs=1e-3) and lr_factor(55, 100, 0.1, 0.1) == pytest.approx(0.55)


def test_ratio_target_schedule_ramps_and_stays_above_1_2():
    final = [3.0, 2.0]
    assert ratio_targets_at(0, 100, final, 1.5, 0.2) == [1.5, 1.5]
    assert ratio_targets_at(10, 100, final, 1.5, 0.2) == pytest.approx([2.25, 1.75])
    assert ratio_targets_at(20, 100, final, 1.5, 0.2) == final == ratio_targets_at(99, 100, final, 1.5, 0.2)
    assert ratio_targets_at(0, 100, final, 1.0, 0.2) == [1.2, 1.2]  # never below 1.2
    assert ratio_targets_at(0, 100, [1.3], 1.5, 0.2) == [1.3]  # never above the final target
    assert ratio_targets_at(0, 100, [], 1.5, 0.2) == []


def test_optimizer_state_roundtrip_without_pickle():
    from dnahnet_cli.model.lm import DNAHNet
    from dnahnet_cli.model.presets import get_preset

    torch.manual_seed(0)
    model = DNAHNet(get_preset("tiny"))
    opt = torch.optim.AdamW(model.param_groups(0.05), lr=1e-3)
    ids = torch.randint(2, 6, (1, 64))
    ids[:, 0] = 1
    model.loss(ids).loss.backward()
    opt.step()
    tensors, meta = optimizer_to_safetensors(opt)
    json.dumps(meta)  # plain JSON
    fresh = torch.optim.AdamW(model.param_groups(0.05), lr=5.0)
    optimizer_from_safetensors(fresh, tensors, json.loads(json.dumps(meta)))
    a, b = opt.state_dict(), fresh.state_dict()
    assert [g["lr"] for g in b["param_groups"]] == [g["lr"] for g in a["param_groups"]]
    assert [g["lr_multiplier"] for g in b["param_groups"]] == [g["lr_multiplier"] for g in a["param_groups"]]
    for pid, st in a["state"].items():
        for k, v in st.items():
            torch.testing.assert_close(b["state"][pid][k], v)


def test_param_groups_get_stage_lr_and_no_decay_on_1d(tmp_path):
    out = tmp_path / "run"
    train({"data": [str(PLASMIDS)], "preset": "tiny", "seq_len": 64, "batch_size": 1, "steps": 3, "lr": 1e-3,
           "warmup_frac": 0.0, "out": str(out), "quiet": True, "cache_dir": str(tmp_path / "c")})
    meta = json.loads((out / "checkpoints" / "step-0000003" / "optimizer.json").read_text())
    factor = lr_factor(2, 3, 0.0, TrainConfig().min_lr_ratio)  # the last step's, well below 1: the schedule shows
    assert factor < 0.5
    mults = set()
    for g in meta["param_groups"]:
        assert g["lr"] == pytest.approx(1e-3 * factor * g["lr_multiplier"])
        mults.add(g["lr_multiplier"])
        if any(n.endswith((".bias", "A_log", "dt_bias", ".D")) or "norm" in n for n in g["names"]):
            assert g["weight_decay"] == 0.0
    assert mults == {2.0, 1.5, 1.0}  # the tiny preset's per-stage multipliers


@pytest.mark.parametrize("preset", ["tiny-tpp", "tiny-mamba2"])
def test_baselines_train_through_the_same_loop(tmp_path, preset):
    summary = train({"data": [str(PLASMIDS)], "val": [str(PLASMIDS)], "preset": preset, "seq_len": 64,
                     "batch_size": 2, "steps": 2, "val_windows": 2, "out": str(tmp_path / "run"), "quiet": True,
                     "threads": 1})
    assert summary["model"] == preset and math.isfinite(summary["val_bpn"])
    rec = [r for r in _metrics(tmp_path / "run") if r["type"] == "train"][-1]
    assert rec["F"] == [] and rec["ratio_target"] == []


def test_toml_config_and_cli_precedence(tmp_path):
    from typer.testing import CliRunner
    import typer

    from dnahnet_cli.commands.train_cmd import register

    toml = tmp_path / "train.toml"
    toml.write_text(f'data = "{PLASMIDS}"\npreset = "tiny-mamba2"\nseq-len = 64\nbatch_size = 1\nsteps = 5\n'
                    f'log_every = 1\nquiet = true\ncache_dir = "{tmp_path / "c"}"\n[model]\nd_state = 8\n')
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["--config", str(toml), "--steps", "2", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-0000002" / "trainer.json").read_text())
    assert state["config"]["steps"] == 2 and state["config"]["seq_len"] == 64  # CLI over TOML over defaults
    final = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    cfg = final["config"]
    assert cfg["d_state"] == 8 and cfg["max_seq_len"] == 64
    # the precision --dtype auto chose, and why, travels with the weights (and with every checkpoint)
    from dnahnet_cli.model.precision import choose_dtype

    name, reason = choose_dtype("auto", torch.device("cpu"))
    expected = f"{'bfloat16 autocast' if name == 'bfloat16' else 'float32'}; {reason}"
    assert final["metadata"]["precision"] == expected
    ckpt = json.loads((tmp_path / "run" / "checkpoints" / "step-0000002" / "config.json").read_text())
    assert ckpt["metadata"]["precision"] == expected


def test_gpu_process_group_also_reduces_cpu_tensors(monkeypatch):
    """Token counts and validation sums are all-reduced as CPU tensors; a plain "nccl" group has no CPU backend
    and fails there ("No backend type associated with device type cpu"), so a GPU run's group maps CPU tensors to
    gloo. No GPU here: init_distributed("cuda") is run against a recording init_process_group."""
    import torch.distributed as dist

    from dnahnet_cli.train import distributed

    seen = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: seen.setdefault("backend", backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: seen.setdefault("device", index))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    d = distributed.init_distributed("cuda")
    assert seen == {"backend": "cpu:gloo,cuda:nccl", "device": 1} and (d.rank, d.world) == (1, 2)
    seen.clear()
    distributed.init_distributed("cpu")
    assert seen == {"backend": "gloo"}


def test_saved_config_records_the_ratio_targets_alpha_and_multipliers_trained_with(tmp_path):
    """--ratio-targets, --alpha and a TOML lr_multipliers steered training but the saved config kept the preset's
    values, so `info` printed them and `train --init` continued toward them."""
    toml = tmp_path / "t.toml"
    toml.write_text("lr_multipliers = [3.0, 2.0, 0.5]\n")
    res = _cli(["--config", str(toml), *_small(tmp_path / "run", "--steps", "2", "--ratio-targets", "4,2.5",
                                               "--alpha", "0.05")])
    assert res.returncode == 0, res.stderr
    for path in (tmp_path / "run" / "final", tmp_path / "run" / "checkpoints" / "step-0000002"):
        cfg = json.loads((path / "config.json").read_text())["config"]
        assert (cfg["ratio_targets"], cfg["ratio_alpha"], cfg["lr_multipliers"]) == ([4.0, 2.5], 0.05, [3.0, 2.0, 0.5])
    # `info` shows them, and (it once showed nothing of it) the training summary of a `dnahnet train` model
    info = subprocess.run([sys.executable, "-m", "dnahnet_cli.cli", "info", str(tmp_path / "run" / "final")],
                          capture_output=True, text=True, cwd=ROOT).stdout
    assert "target ratios (4.0, 2.5)" in info and "lr multipliers [3.0, 2.0, 0.5]" in info
    assert "training length 128 tokens (127 nt + BOS" in info
    assert re.search(r"^training +step 2 of 2 +val \d\.\d{4} bits/nt +seq_len 128 x batch 2", info, re.M), info


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("train") / "base"
    assert _cli(_small(base, "--steps", "2", "--ckpt-every", "2")).returncode == 0
    return base


@pytest.mark.parametrize("damage", ["optimizer.safetensors:missing", "trainer.json:truncated", "trainer.json:empty",
                                    "optimizer.json:garbage", "rng.safetensors:garbage"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, two_step_run, damage):
    """Damaged state files of the checkpoint a run resumes from gave tracebacks (FileNotFoundError,
    JSONDecodeError, KeyError); a damaged model.safetensors already gave one line."""
    import shutil

    base = two_step_run
    run = tmp_path / "run"
    shutil.copytree(base, run)
    name, how = damage.split(":")
    target = run / "checkpoints" / "step-0000002" / name
    if how == "missing":
        target.unlink()
    else:
        target.write_text({"truncated": '{"step": 2', "empty": "{}", "garbage": "not a file"}[how])
    res = _cli(_small(run, "--steps", "3", "--resume"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"{target}: damaged checkpoint" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
