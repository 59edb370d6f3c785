"""Checkpoints: bit-exact round trip, and clear failures on anything that is not a valid checkpoint."""

import json
import pickle

import pytest
import torch

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
                 "alpha_text": {"ratio_alpha": "x"}, "multipliers_text": {"lr_multipliers": ["2", "1.5", "1"]}}


@pytest.mark.parametrize("damage", ["missing_dir", "no_weights", "garbage_weights", "pickle_weights",
                                    "bad_json", "wrong_format", "shape_mismatch", "unknown_key", "heads_misfit", "metadata_list",
                                    "seq_len_text", "other_layout", *CONFIG_DAMAGE])
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
    for reader in (read_checkpoint_info, load_checkpoint):  # `info` must refuse what loading refuses
        with pytest.raises(DnahnetError) as err:
            reader(ckpt)
        message = str(err.value)
        assert "\n" not in message and (str(ckpt) in message)


def test_config_checks_apply_only_to_the_layers_a_stage_has():
    """The heads/rotary rule concerns attention stages and the headdim rule Mamba2 stages; applied everywhere, they
    once refused working models (a Transformer++ with d_model 100, a Mamba2-only model with 5 heads) and their
    existing checkpoints."""
    from dnahnet_cli.model.config import ModelConfig

    for preset, change in (("tiny-tpp", {"headdim": 40}), ("tiny-tpp", {"d_model": [100]}),
                           ("tiny-mamba2", {"num_heads": [5]}), ("tiny-sh2", {"headdim": 40})):
        ModelConfig.from_dict({**get_preset(preset).to_dict(), **change}).validate()
    for preset, change, message in (("tiny", {"headdim": 0}, "headdim"), ("tiny", {"num_heads": [4, 5, 4]}, "num_heads"),
                                    ("tiny-tpp", {"rotary_emb_dim": [3]}, "rotary")):
        with pytest.raises(ValueError, match=message):
            ModelConfig.from_dict({**get_preset(preset).to_dict(), **change}).validate()
