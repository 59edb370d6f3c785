"""`dnahnet check`: passes on a sound install, fails loudly when outputs drift from the recorded values."""

import hashlib
import json
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

from dnahnet_cli.model.checkpoint import save_checkpoint
from dnahnet_cli.model.default_model import DEFAULT_MODEL_DIR
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.tasks.engine import LikelihoodEngine


def run(*args):
    return subprocess.run([sys.executable, "-m", "dnahnet_cli.cli", "--threads", "1", *args],
                          capture_output=True, text=True)


def test_check_passes_then_fails_when_reference_values_disagree(tmp_path):
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    save_checkpoint(model_dir, DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    res = run("check", "--model", str(model_dir), "--device", "cpu", "--write-reference")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SKIP  recorded reference values (check.json): this run records them" in res.stdout  # not compared with themselves
    res = run("check", "--model", str(model_dir), "--device", "cpu")
    assert res.returncode == 0, res.stdout + res.stderr
    from dnahnet_cli.model.precision import cpu_bf16_features

    from dnahnet_cli.model.kernels import cpu_kernels

    bf16 = bool(cpu_bf16_features())  # the --dtype auto check runs where auto means bf16, else is skipped
    scan = cpu_kernels() != "torch"  # the kernel check runs where the compiled CPU scan builds (a C compiler)
    assert res.stdout.count("PASS") == 6 + bf16 + scan and "FAIL" not in res.stdout
    assert "PASS  weights are those the reference values were recorded for  [sha256 " in res.stdout
    assert "PASS  architecture (config.json) is the one the reference values were recorded for" in res.stdout
    assert res.stdout.count("SKIP") == 2 - bf16 - scan
    assert ("PASS  fast kernels vs plain-PyTorch reference" if scan else "SKIP  fast kernels") in res.stdout
    assert (f"{2 - bf16 - scan} skipped" in res.stdout) if bf16 + scan < 2 else "skipped" not in res.stdout
    ref = json.loads((model_dir / "check.json").read_text())
    assert ref["sequence_length"] == 2000 and 1.5 < ref["bits_per_nt"] < 2.5
    assert ref["weights_sha256"] == hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    for change, failed in (({"total_loglik": ref["total_loglik"] * 1.001}, "log-likelihood of the check sequence"),
                           ({"boundaries_per_stage": ref["boundaries_per_stage"][:1]}, "boundary counts per stage")):
        (model_dir / "check.json").write_text(json.dumps({**ref, **change}))  # a 0.1% drift; a stage missing
        res = run("check", "--model", str(model_dir), "--device", "cpu")
        assert res.returncode == 1
        assert f"FAIL  {failed}" in res.stdout and "not numerically sound" in res.stdout
        assert res.stdout.count("  FAIL  ") == 1, res.stdout
    # weights changed next to their reference values: a 5% change of the largest tensor moves the check sequence's
    # log-likelihood by ~1e-6 (it once passed every check); the recorded hash does not match
    (model_dir / "check.json").write_text(json.dumps(ref))
    state = load_file(str(model_dir / "model.safetensors"))
    big = max(state, key=lambda k: state[k].numel())
    state[big] *= 1.05
    save_file(state, str(model_dir / "model.safetensors"))
    res = run("check", "--model", str(model_dir), "--device", "cpu")
    assert res.returncode == 1 and "FAIL  weights are those the reference values were recorded for" in res.stdout
    assert "PASS  log-likelihood of the check sequence" in res.stdout  # the values alone would not have noticed



def test_check_fails_when_config_json_was_edited(tmp_path):
    """An attention window edited in config.json changes every 8-kb score, but on the 2-kb check sequence a stage's
    chunks are fewer than the window, so the values did not move and check passed; the architecture's hash does."""
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    save_checkpoint(model_dir, DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    assert run("check", "--model", str(model_dir), "--device", "cpu", "--write-reference").returncode == 0
    ref = json.loads((model_dir / "check.json").read_text())
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["config"]["window_size"] = [w if i == 0 else -1 for i, w in enumerate(cfg["config"]["window_size"])]
    (model_dir / "config.json").write_text(json.dumps(cfg))
    res = run("check", "--model", str(model_dir), "--device", "cpu")
    assert res.returncode == 1, res.stdout
    assert "FAIL  architecture (config.json) is the one the reference values were recorded for" in res.stdout
    assert len(ref["config_sha256"]) == 64


def test_check_of_a_model_without_stages_writes_and_passes_its_reference(tmp_path):
    """A Transformer++ has no boundaries: comparing its (empty) boundary counts must not fail on max() of nothing.
    Nor has it Mamba2 layers; the kernel check compares what its attention and linear layers take on a CPU."""
    torch.manual_seed(0)
    model_dir = tmp_path / "tpp"
    save_checkpoint(model_dir, DNAHNet(get_preset("tiny-tpp")), {"preset": "tiny-tpp"})
    res = run("check", "--model", str(model_dir), "--device", "cpu", "--write-reference")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    res = run("check", "--model", str(model_dir), "--device", "cpu")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert "PASS  boundary counts per stage" in res.stdout and "FAIL" not in res.stdout
    from dnahnet_cli.model.kernels import cpu_kernels

    fast = "PASS" if cpu_kernels() != "torch" else "SKIP"
    assert f"{fast}  fast kernels vs plain-PyTorch reference" in res.stdout


def test_write_reference_needs_an_explicit_model_and_float32(tmp_path):
    """It once overwrote the installed package's check.json when --model was left out, with bf16 values under
    --dtype bfloat16, before the other checks had run."""
    res = run("check", "--write-reference")
    assert res.returncode == 2 and "--write-reference needs --model DIR" in res.stderr
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    save_checkpoint(model_dir, DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    res = run("check", "--model", str(model_dir), "--device", "cpu", "--dtype", "bfloat16", "--write-reference")
    assert res.returncode == 2 and "records float32 values" in res.stderr and not (model_dir / "check.json").exists()


def test_damaged_reference_values_are_a_one_line_error(tmp_path):
    """A truncated or incomplete check.json once ended `dnahnet check` in a traceback."""
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    save_checkpoint(model_dir, DNAHNet(get_preset("tiny")), {"preset": "tiny"})
    for text, detail in (('{"total_loglik": -26', "Expecting"), ('{"total_loglik": -2606.6}', "missing 'bits_per_nt'"),
                         ('{"total_loglik": 0, "bits_per_nt": 1, "boundaries_per_stage": [1, 2]}', "finite negative"),
                         ('{"total_loglik": -9, "bits_per_nt": 1, "boundaries_per_stage": "691"}', "list of counts"),
                         ("[1]", "not a JSON object")):  # the middle two: a ZeroDivisionError, a TypeError
        (model_dir / "check.json").write_text(text)
        res = run("check", "--model", str(model_dir), "--device", "cpu")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert f"{model_dir / 'check.json'}: not valid reference values" in res.stderr and detail in res.stderr


def test_the_kernel_check_runs_at_the_training_length_past_the_attention_window(monkeypatch):
    """The kernel check ran 1,024 nt: the shipped model's stage-1 attention (a 1,023-chunk window, ~3 kb) never slid
    past its window there, so a fast kernel's windowing went unchecked."""
    from dnahnet_cli.tasks import selfcheck

    engine = LikelihoodEngine.load(str(DEFAULT_MODEL_DIR), device="cpu", dtype="float32")
    seq = selfcheck.training_length_sequence(selfcheck.check_sequence(), engine.window)
    assert len(seq) == engine.window - 1 >= 4096 and seq.startswith(selfcheck.check_sequence())
    window = engine.model.config.window_size[1]
    assert 0 < window < int((engine.boundaries([seq])[0][0] > 0.5).sum())  # stage-1 chunks outnumber the window
    seen = []
    real = engine.logprobs
    monkeypatch.setattr(engine, "logprobs", lambda seqs, *a, **k: seen.append(len(seqs[0])) or real(seqs, *a, **k))
    checks = selfcheck._kernel_checks(engine, seq)
    assert seen in ([], [len(seq)] * 2)  # [] where the compiled kernels are off (no C compiler): the check skips
    assert all(c.passed for c in checks)
    if not seen:
        return

    def opposite_errors(seqs, *a, **k):  # the second (fast-kernel) pass errs by +-1e-3 nats, cancelling in total
        lp = real(seqs, *a, **k)
        seen.append(len(seqs[0]))
        if len(seen) % 2:
            return lp
        lp = [x.copy() for x in lp]
        half = len(lp[0]) // 2
        lp[0][:half] += 1e-3
        lp[0][half:2 * half] -= 1e-3
        return lp

    monkeypatch.setattr(engine, "logprobs", opposite_errors)
    (check,) = selfcheck._kernel_checks(engine, seq)
    assert not check.passed and check.value > 9e-4  # a check on the total alone passed this
