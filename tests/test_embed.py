"""`dnahnet embed`: the mean final hidden state per record, checked against the model's own states, through
overlapping windows for long records, on both strands, batched with other records or alone (fp32)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from dnahnet_cli.commands import embed_cmd
from dnahnet_cli.genomics.alphabet import BOS, reverse_complement
from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.outputs import read_table
from dnahnet_cli.model.presets import get_preset
from dnahnet_cli.tasks.engine import LikelihoodEngine
from dnahnet_cli.tasks.tiling import tiles

from test_score_variants_cli import ECOLI, GENOME, ckpt  # noqa: F401  (ckpt: the tiny random model, a fixture)

FP32 = ["--device", "cpu", "--dtype", "float32", "--quiet"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test app"""

    embed_cmd.register(app)
    return app


def states(engine: LikelihoodEngine, seq: str) -> np.ndarray:
    """(L, d) final hidden states after reading each base, from one forward pass with a hook on the head."""
    seen = []
    hook = engine.model.lm_head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        ids = torch.from_numpy(np.concatenate([[BOS], engine.encode(seq)]).astype(np.int64))[None]
        engine.forward(ids, torch.ones_like(ids, dtype=torch.bool))
    finally:
        hook.remove()
    return seen[0][0, 1:].double().numpy()


def tiled_mean(engine: LikelihoodEngine, seq: str, window: int, context: int) -> np.ndarray:
    kept = [states(engine, seq[lo:hi])[keep - lo:] for lo, keep, hi in tiles(len(seq), window, context)]
    return np.concatenate(kept).mean(0)


def test_embeddings_are_the_mean_final_state_over_windows_and_strands(app, ckpt, tmp_path):
    engine = LikelihoodEngine.load(ckpt, dtype="float32")
    long_seq = Genome.open(GENOME, quiet=True).fetch(ECOLI, 1000, 1300)
    short = "ACGTNNACGTTGCAGGCTAACG"
    fa = tmp_path / "s.fa"
    fa.write_text(f">long\n{long_seq}\n>empty\n\n>short one\n{short}\n")
    res = CliRunner().invoke(app, ["embed", str(fa), "--model", ckpt, "-w", "64", "--context", "32", *FP32])
    assert res.exit_code == 0, res.output
    df = read_table(io.StringIO(res.stdout)).set_index("name")
    width = get_preset("tiny").d_model[0]
    assert list(df.columns) == ["length", "status"] + [f"e{k}" for k in range(1, width + 1)]
    assert df.loc["empty", "status"] == "SKIP_EMPTY" and df.loc["empty"].iloc[2:].isna().all()
    for name, seq in (("long", long_seq), ("short", short)):
        want = (tiled_mean(engine, seq, 64, 32) + tiled_mean(engine, reverse_complement(seq), 64, 32)) / 2
        got = df.loc[name].iloc[2:].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())  # 6 significant digits
    alone = CliRunner().invoke(app, ["embed", "-", "--model", ckpt, "-w", "64", "--context", "32", "--strand",
                                     "forward", *FP32], input=f">short\n{short}\n")
    got = read_table(io.StringIO(alone.stdout)).iloc[0, 3:].to_numpy(dtype=float)
    np.testing.assert_allclose(got, tiled_mean(engine, short, 64, 32), rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_embed_bad_inputs_are_one_line_errors(app, ckpt, tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">a\nACGT\n")
    for args, message in ((["--strand", "plus"], "--strand must be one of"),
                          (["-w", "64", "--context", "64"], "0 <= --context < --window")):
        res = CliRunner().invoke(app, ["embed", str(fa), "--model", ckpt, *args, *FP32])
        assert res.exception is not None and message in str(res.exception), res.output


def test_non_finite_states_are_a_runtime_error_not_a_row_of_na(ckpt):
    """Scoring refuses NaN log-probabilities ("a model failure must not mean N"); embed wrote NA vectors, status OK."""
    from dnahnet_cli.errors import DnahnetRuntimeError
    from dnahnet_cli.tasks.embedding import mean_embeddings

    engine = LikelihoodEngine.load(ckpt, dtype="float32")
    with torch.no_grad():
        engine.model.embeddings.weight[:] = float("inf")
    with pytest.raises(DnahnetRuntimeError, match="NaN or infinite hidden states"):
        mean_embeddings(engine, ["ACGTACGT"], 64, 32)

