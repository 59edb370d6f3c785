"""`dnahnet train`'s configuration without training: option types and values, resume precedence, metrics
truncation, checkpoint permissions (no data set needed; each case was a traceback or a silent surprise before)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from dnahnet_cli.commands.train_cmd import explicit_threads
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.train.config import TrainConfig, load_toml, make_config
from dnahnet_cli.train.trainer import _build_model, resolve_config, truncate_metrics


@pytest.mark.parametrize("line", ['steps = "3"', 'lr = "1e-3"', "batch_size = 2.5", "ratio_targets = 3", "data = 5",
                                  'lr_multipliers = [2.0, "x", 1.0]', "resume = 1", "model = 3"])
def test_a_config_value_of_the_wrong_type_names_the_file_and_key(tmp_path, line):
    path = tmp_path / "c.toml"
    path.write_text(line + "\n")
    with pytest.raises(DnahnetError) as exc:
        load_toml(path)
    key = line.split(" = ")[0]
    assert str(path) in str(exc.value) and f"{key} must be" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("options, needle", [
    ({"lr": math.inf}, "finite"), ({"ratio_targets": [math.nan, 2.0]}, "finite"), ({"beta1": 1.5}, "beta1"),
    ({"eps": -1.0}, "eps"), ({"weight_decay": -0.1}, "weight_decay"), ({"alpha": -5.0}, "--alpha"),
    ({"seed": -1}, "--seed"), ({"seed": 10**20}, "--seed must be between"),
    ({"preset": "tiny", "init": "m"}, "either preset or init"), ({"threads": -1}, "threads"), ({"lr_multipliers": [1.0, 0.0]}, "lr_multipliers"),
    ({"steps": "3"}, "option steps must be an integer"),
])
def test_values_that_would_fail_inside_training_are_option_errors(options, needle):
    with pytest.raises(DnahnetError, match=needle):
        make_config({"preset": "tiny", **options})


@pytest.mark.parametrize("model", [{"headdim": 7}, {"d_state": "x"}, {"d_model": 64}])
def test_model_overrides_that_cannot_build_are_usage_errors(model):
    cfg = make_config({"preset": "tiny", "model": model, "seq_len": 128})
    with pytest.raises(DnahnetError, match="invalid model configuration"):
        _build_model(cfg, None, lambda m: None)


def _fake_run(tmp_path: Path, step: int, **config) -> Path:
    """A run directory whose latest checkpoint says it is at `step` with this configuration."""
    ckpt = tmp_path / "run" / "checkpoints" / f"step-{step:07d}"
    ckpt.mkdir(parents=True)
    cfg = dataclasses.asdict(TrainConfig(preset="tiny", **config))
    (ckpt / "trainer.json").write_text(json.dumps({"config": cfg, "step": step}))
    return ckpt.parent


def test_resume_takes_runtime_options_from_the_command_line_and_reports_the_rest(tmp_path):
    root = _fake_run(tmp_path, 4, steps=4, threads=2, lr=1e-3)
    cfg, _, _, ignored = resolve_config({"resume": True, "threads": 1, "preset": "small", "lr": 5e-3}, root)
    assert cfg.threads == 1  # --threads may change on resume
    assert cfg.preset == "tiny" and cfg.lr == 1e-3 and sorted(ignored) == ["lr", "preset"]  # reported, not merged
    cfg, _, _, _ = resolve_config({"resume": True, "steps": 10}, root)
    assert cfg.steps == 10  # extending is allowed ...
    with pytest.raises(DnahnetError, match="is at step 4"):  # ... shortening is not
        resolve_config({"resume": True, "steps": 2}, root)
    # nor is shortening a run that has not got there yet: a config file's `steps = 6` once finished a 10-step run
    # that was stopped at step 5 as a 6-step one, its schedule recomputed, without a word
    root = _fake_run(tmp_path / "b", 5, steps=10)
    with pytest.raises(DnahnetError, match=r"steps 6 \(--steps or the config file\): this run was set up for 10"):
        resolve_config({"resume": True, "steps": 6}, root)
    assert resolve_config({"resume": True, "steps": 10}, root)[0].steps == 10
    # -q was saved with the run and came back on every resume (there is no --no-quiet)
    quiet = _fake_run(tmp_path / "q", 2, steps=4, quiet=True)
    assert resolve_config({"resume": True}, quiet)[0].quiet is False
    assert resolve_config({"resume": True, "quiet": True}, quiet)[0].quiet is True


def test_the_global_threads_option_is_an_explicit_choice(monkeypatch):
    monkeypatch.delenv("DNAHNET_THREADS", raising=False)
    assert explicit_threads() is None
    monkeypatch.setenv("DNAHNET_THREADS", "3")
    assert explicit_threads() == 3


def test_a_partial_last_metrics_line_does_not_stop_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "type": "train"}\n{"step": 4, "type": "train"}\n{"step": 5, "type": "tra')
    truncate_metrics(path, 4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4]


def test_saved_models_are_readable_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        torch.manual_seed(0)
        out = save_checkpoint(tmp_path / "m", DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_every_option_has_a_checked_kind():
    """Option types are read from TrainConfig's annotations: a new field must map onto a kind the checker knows."""
    from dnahnet_cli.train.config import _FIELD_KINDS, _KINDS

    assert set(_FIELD_KINDS) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(_FIELD_KINDS.values()) <= set(_KINDS)


def test_a_finished_run_is_not_restarted_over(tmp_path):
    """A run whose checkpoints were deleted to save space keeps its final model and metrics: a new run (or --resume,
    which finds no checkpoint) in the same --out used to delete metrics.jsonl at once and then replace final/."""
    (tmp_path / "final").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    for resume in (False, True):
        with pytest.raises(DnahnetError, match="holds a finished run"):
            resolve_config({"resume": resume}, tmp_path / "checkpoints")


def test_an_out_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """--out under a folder this user cannot write: was a PermissionError traceback from mkdir (root, which runs the
    tests, can write anywhere, so os.access is made to answer as it would for a user)."""
    from dnahnet_cli.train import trainer

    data = tmp_path / "g.fa"
    data.write_text(">a\n" + "ACGT" * 100 + "\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(trainer.os, "access", lambda p, mode: Path(p) != locked)
    with pytest.raises(DnahnetError, match="is not a writable directory") as exc:
        trainer.train({"data": [str(data)], "preset": "tiny", "out": str(locked / "run"), "steps": 1})
    assert str(locked) in str(exc.value)
    assert not (locked / "run").exists()


def test_a_run_that_fails_before_its_first_step_leaves_no_empty_folders(tmp_path):
    """A run that stopped on bad data left an empty run/checkpoints/ (and an empty cache/) behind, which reads as a
    run that started. Folders that received files (a token cache a re-run reuses) stay."""
    from dnahnet_cli.train import trainer

    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGTACGT\n>b\nACGT@@ACGT\n")
    with pytest.raises(DnahnetError, match="record b"):
        trainer.train({"data": [str(bad)], "preset": "tiny", "out": str(tmp_path / "run" / "x"), "steps": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fa"]

    short = tmp_path / "short.fa"
    short.write_text(">a\nACGTACGT\n")
    with pytest.raises(DnahnetError, match="no training windows"):
        trainer.train({"data": [str(short)], "preset": "tiny", "out": str(tmp_path / "run2"), "steps": 1})
    left = {p.relative_to(tmp_path / "run2").parts[0] for p in (tmp_path / "run2").rglob("*")}
    assert left == {"cache"} and any((tmp_path / "run2" / "cache").iterdir())


def test_a_toml_option_set_twice_and_a_checkpoint_with_an_unknown_option_are_one_line_errors(tmp_path):
    """`seq-len` and `seq_len` in one file: the second won silently. A trainer.json written by another version
    (an option this one lacks) was a KeyError traceback on --resume."""
    path = tmp_path / "a.toml"
    path.write_text("seq-len = 1024\nseq_len = 2048\n")
    with pytest.raises(DnahnetError, match=r"a.toml: seq-len is set twice"):
        load_toml(path)
    root = tmp_path / "run" / "checkpoints"
    step = root / "step-0000010"
    step.mkdir(parents=True)
    config = {**dataclasses.asdict(TrainConfig(preset="tiny", data=["x.fa"])), "future_option": 1}
    (step / "trainer.json").write_text(json.dumps({"config": config, "step": 10}))
    with pytest.raises(DnahnetError, match=r"trainer.json: unknown option\(s\) future_option .*another dnahnet version"):
        resolve_config({"resume": True}, root)


def test_a_bad_interval_names_its_option():
    """'log/eval/ckpt intervals must be >= 1' did not say which of the three was wrong."""
    with pytest.raises(DnahnetError, match=r"^--eval-every must be >= 1, got 0$"):
        make_config({"preset": "tiny", "data": ["x.fa"], "eval_every": 0})
