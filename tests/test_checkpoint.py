"""Checkpoints: bit-exact round trip, and clear failures on anything that is not a valid checkpoint."""

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from dnahnet_cli.model.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.model.lm import DNAHNet
from dnahnet_cli.model.presets import get_preset


def test_round_trip_is_bit_exact(tmp_path):
    model = DNAHNet(get_preset("tiny"))
    save_checkpoint(tmp_path / "m", model, {"preset": "tiny", "training": {"steps": 3}})
    loaded, meta = load_checkpoint(tmp_path / "m")
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert meta["preset"] == "tiny" and meta["training"] == {"steps": 3} and len(meta["sha256"]) == 64
    assert loaded.config == model.config
    ids = torch.tensor([[1, 2, 3, 4, 5, 2, 3]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, loaded(ids).logits)


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    save_checkpoint(tmp_path / "m", DNAHNet(get_preset("tiny-tpp")), {})
    save_checkpoint(tmp_path / "m", DNAHNet(get_preset("tiny")), {})
    assert read_checkpoint_info(tmp_path / "m")["config"]["name"] == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# config values the model builder once met unchecked: a traceback from `info` and `train --init`
CONFIG_DAMAGE = {"layout_string": {"arch_layout": "T8"}, "layout_letter": {"arch_layout": ["m4", ["X8"], "m4"]},
                 "layout_no_count": {"arch_layout": ["m4", ["T"], "m4"]}, "d_state_text": {"d_state": "16"},
                 "alpha_text": {"ratio_alpha": "x"}, "multipliers_text": {"lr_multipliers": ["2", "1.5", "1"]},
                 # ... and values that passed the checks, then built no model (a traceback) or a huge one
                 "negative_width": {"d_model": [-80, 96, 128]}, "negative_rotary": {"rotary_emb_dim": [16, -16, 16]},
                 "hyena_zero": {"hyena": {"short_len": 0}}, "hyena_unknown": {"hyena": {"taps": 3}},
                 "window_below_global": {"window_size": [-5, 127, -1]},
                 "window_huge": {"window_size": [10**15, 127, -1]}, "seq_len_one": {"max_seq_len": 1},
                 "layers_huge": {"arch_layout": ["m4", ["m4", ["T5000"], "m4"], "m4"]},
                 "alpha_nan": {"ratio_alpha": float("nan")}, "target_inf": {"ratio_targets": [3.0, float("inf")]}}


@pytest.mark.parametrize("damage", ["missing_dir", "no_weights", "garbage_weights", "pickle_weights",
                                    "bad_json", "wrong_format", "shape_mismatch", "unknown_key", "heads_misfit", "metadata_list",
                                    "seq_len_text", "other_layout", "deep_json", "header_list", "int_weights",
                                    "header_misfit", "nan_weight", "file_not_dir", "run_dir", *CONFIG_DAMAGE])
def test_invalid_checkpoints_fail_with_a_clear_message(tmp_path, damage):
    ckpt = tmp_path / "m"
    save_checkpoint(ckpt, DNAHNet(get_preset("tiny")), {})
    cfg = json.loads((ckpt / "config.json").read_text())
    if damage == "missing_dir":
        ckpt = tmp_path / "nope"
    elif damage == "no_weights":
        (ckpt / "model.safetensors").unlink()
    elif damage == "garbage_weights":
        (ckpt / "model.safetensors").write_bytes(b"\x00" * 100)
    elif damage == "pickle_weights":  # a pickle must never be executed, only rejected
        (ckpt / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    elif damage == "bad_json":
        (ckpt / "config.json").write_text("{not json")
    elif damage == "wrong_format":
        (ckpt / "config.json").write_text(json.dumps({"hello": 1}))
    elif damage == "shape_mismatch":
        cfg["config"]["d_model"] = [64, 64, 128]
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "unknown_key":
        cfg["config"]["bogus"] = 1
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "heads_misfit":  # the layers' own asserts once surfaced as a traceback
        cfg["config"]["d_model"][-1] += 1
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "metadata_list":  # `info` once died on metadata.get
        cfg["metadata"] = [1]
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "seq_len_text":  # `info` once printed "training length big nt"; loading died in int()
        cfg["config"]["max_seq_len"] = "big"
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage in CONFIG_DAMAGE:
        cfg["config"].update(CONFIG_DAMAGE[damage])
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "other_layout":  # another preset's config next to these weights: `info` once accepted it
        cfg["config"] = get_preset("tiny-1stage").to_dict()
        (ckpt / "config.json").write_text(json.dumps(cfg))
    elif damage == "deep_json":  # a RecursionError traceback from json
        (ckpt / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    elif damage in ("header_list", "int_weights", "header_misfit", "nan_weight"):
        weights = ckpt / "model.safetensors"
        state = load_file(str(weights))
        if damage == "header_list":  # an AttributeError traceback
            weights.write_bytes(struct.pack("<Q", 8) + b"[1,2,3] ")
        elif damage == "int_weights":  # loaded, cast to float: a uniform model that scored everything 0, exit 0
            save_file({k: v.to(torch.int32) for k, v in state.items()}, str(weights))
        elif damage == "header_misfit":  # a dtype whose width does not match the tensor's bytes
            raw = weights.read_bytes()
            n = struct.unpack("<Q", raw[:8])[0]
            header = json.loads(raw[8:8 + n])
            header[next(k for k in header if k != "__metadata__")]["dtype"] = "F16"
            text = json.dumps(header, separators=(",", ":")).encode().ljust(n)
            assert len(text) == n
            weights.write_bytes(raw[:8] + text + raw[8 + n:])
        else:  # one NaN: every likelihood NaN, which scoring read as N bases (all scores 0, status OK)
            big = max(state, key=lambda k: state[k].numel())
            state[big].view(-1)[7] = float("nan")
            save_file(state, str(weights))
    elif damage == "file_not_dir":  # --model .../model.safetensors was "model directory not found"
        ckpt = ckpt / "model.safetensors"
    elif damage == "run_dir":  # a train run directory: point at its final model
        (ckpt / "final").mkdir()
        for name in ("config.json", "model.safetensors"):
            (ckpt / name).rename(ckpt / "final" / name)
    for reader in (read_checkpoint_info, load_checkpoint):  # `info` must refuse what loading refuses
        if damage == "nan_weight" and reader is read_checkpoint_info:
            continue  # the header is sound: only loading reads the values
        with pytest.raises(DnahnetError) as err:
            reader(ckpt)
        message = str(err.value)
        assert "\n" not in message and (str(ckpt) in message)
        hint = {"file_not_dir": "the model's directory", "run_dir": "final", "int_weights": "floating point",
                "nan_weight": "NaN", "deep_json": "invalid JSON"}.get(damage, "")
        assert hint in message, message


def test_an_unreadable_model_is_one_line(tmp_path, monkeypatch):
    """chmod 0 on config.json (or the weights) once gave a PermissionError traceback; root ignores modes, so the
    denial is simulated where the file is opened."""
    import pathlib

    ckpt = save_checkpoint(tmp_path / "m", DNAHNet(get_preset("tiny")), {})
    real = pathlib.Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "config.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    with pytest.raises(DnahnetError, match="config.json: cannot read the model \\(Permission denied\\)"):
        read_checkpoint_info(ckpt)


def test_config_checks_apply_only_to_the_layers_a_stage_has():
    """The heads/rotary rule concerns attention stages and the headdim rule Mamba2 stages; applied everywhere, they
    once refused working models (a Transformer++ with d_model 100, a Mamba2-only model with 5 heads) and their
    existing checkpoints."""
    from dnahnet_cli.model.config import ModelConfig

    for preset, change in (("tiny-tpp", {"headdim": 40}), ("tiny-tpp", {"d_model": [100]}),
                           ("tiny-mamba2", {"num_heads": [5]}), ("tiny-sh2", {"headdim": 40})):
        ModelConfig.from_dict({**get_preset(preset).to_dict(), **change}).validate()
    for preset, change, message in (("tiny", {"headdim": 0}, "headdim"), ("tiny", {"num_heads": [4, 5, 4]}, "num_heads"),
                                    ("tiny-tpp", {"rotary_emb_dim": [3]}, "rotary"),
                                    ("tiny", {"arch_layout": ["m4", ["m4", ["T5000"], "m4"], "m4"]},
                                     "at most 8 stages and 1024 layers"),
                                    ("tiny-tpp", {"max_seq_len": 10**12}, "max_seq_len")):
        with pytest.raises(ValueError, match=message):
            ModelConfig.from_dict({**get_preset(preset).to_dict(), **change}).validate()


def test_a_nan_from_the_model_is_an_error_not_an_n_base():
    """Scoring reads NaN log-probabilities as N bases (context, never scored): a NaN the model produced at an A/C/G/T
    target once summed to 0, and damaged weights gave every variant a score of 0 with status OK."""
    from dnahnet_cli.errors import DnahnetRuntimeError
    from dnahnet_cli.genomics.alphabet import encode
    from dnahnet_cli.tasks.engine import LikelihoodEngine

    targets = torch.from_numpy(encode("ACNG").astype("int64"))
    logits = torch.zeros(4, 4)
    lp = LikelihoodEngine.token_logprobs(logits, targets)
    assert torch.isnan(lp[2]) and torch.allclose(lp[[0, 1, 3]], torch.full((3,), -1.3862943611198906, dtype=lp.dtype))
    logits[2] = float("nan")  # at the N target: nothing is read there
    assert torch.isnan(LikelihoodEngine.token_logprobs(logits, targets)[2])
    logits[1, 0] = float("nan")
    with pytest.raises(DnahnetRuntimeError, match="NaN or infinite log-probabilities"):
        LikelihoodEngine.token_logprobs(logits, targets)
