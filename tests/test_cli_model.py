"""The installed console script: --version, init, info, presets, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from dnahnet_cli import __version__


def run(*args):
    return subprocess.run([sys.executable, "-m", "dnahnet_cli.cli", *args], capture_output=True, text=True)


def test_version():
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"dnahnet {__version__}"


def test_init_then_info(tmp_path):
    out = tmp_path / "m"
    res = run("init", "--preset", "tiny", "-o", str(out), "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    res = run("info", str(out))
    assert res.returncode == 0, res.stderr
    assert "890,816" in res.stdout and "(3.0, 2.0)" in res.stdout and "stage0.encoder" in res.stdout
    info = json.loads(run("info", str(out), "--json").stdout)
    assert info["parameters"]["total"] == 890816 and info["metadata"]["seed"] == 3
    assert 0.59 < info["encoder_decoder_share"] < 0.61  # paper layout: no attention at stage 0, one more main layer
    # a NaN in the metadata (a hand-edited or foreign config.json) was printed as bare NaN: not JSON
    cfg = json.loads((out / "config.json").read_text())
    cfg["metadata"]["final_val_bits_per_nt"] = float("nan")
    (out / "config.json").write_text(json.dumps(cfg))
    text = run("info", str(out), "--json").stdout
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))["metadata"][
        "final_val_bits_per_nt"] is None


def test_presets_lists_every_preset():
    res = run("presets")
    assert res.returncode == 0
    for name in ("tiny", "small", "base", "base-tpp", "base-mamba2", "201.93M"):
        assert name in res.stdout


def test_preset_parameter_table_matches_the_built_models():
    """`dnahnet presets` prints sizes from presets.PARAMETERS (no torch import); each must equal the model's own."""
    from dnahnet_cli.commands.model_cmds import describe
    from dnahnet_cli.model.presets import PARAMETERS, PRESETS

    assert set(PARAMETERS) == set(PRESETS)
    for name, cfg in PRESETS.items():
        desc = describe(cfg)
        assert PARAMETERS[name] == (desc["total"], round(desc["encoder_decoder_share"] * desc["total"])), name


def test_presets_does_not_import_torch():
    code = "import sys; from dnahnet_cli.cli import main; sys.argv = ['dnahnet', 'presets']\n" \
           "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "cpu" in res.stdout and res.stderr.strip().endswith("False"), res.stderr


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    res = run("info", str(tmp_path / "missing"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "missing" in res.stderr
    assert "Traceback" not in res.stderr
    res = run("init", "--preset", "nope", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "unknown preset 'nope'" in res.stderr
    res = run("init", "--preset", "tiny")  # missing required option
    assert res.returncode == 2
    (tmp_path / "exists").mkdir()
    res = run("init", "--preset", "tiny", "-o", str(tmp_path / "exists"))
    assert res.returncode == 2 and "already exists" in res.stderr


def test_init_force_replaces_checkpoints_only(tmp_path):
    """`init --force` once emptied any directory it was pointed at, and `-o .` ended in a traceback."""
    user = tmp_path / "results"
    user.mkdir()
    (user / "keep.tsv").write_text("precious\n")
    res = run("init", "--preset", "tiny", "-o", str(user), "--force")
    assert res.returncode == 2 and "holds no dnahnet checkpoint" in res.stderr and (user / "keep.tsv").exists()
    ckpt = tmp_path / "m"
    assert run("init", "--preset", "tiny", "-o", str(ckpt)).returncode == 0
    assert run("init", "--preset", "tiny", "-o", str(ckpt), "--force", "--seed", "5").returncode == 0
    assert json.loads((ckpt / "config.json").read_text())["metadata"]["seed"] == 5
    (ckpt / "notes.txt").write_text("mine\n")  # a checkpoint with a user's file beside it: the swap deleted it
    (ckpt / "scores").mkdir()
    res = run("init", "--preset", "tiny", "-o", str(ckpt), "--force")
    assert res.returncode == 2 and "holds files that are not part of a checkpoint (notes.txt, scores/)" in res.stderr
    assert (ckpt / "notes.txt").exists() and (ckpt / "scores").is_dir()
    here = tmp_path / "here"
    here.mkdir()
    res = subprocess.run([sys.executable, "-m", "dnahnet_cli.cli", "init", "--preset", "tiny", "-o", ".", "--force"],
                         capture_output=True, text=True, cwd=here)  # swapping out the cwd would strand the shell
    assert res.returncode == 2 and "current directory" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_init_force_on_a_symlink_replaces_the_link_and_leaves_its_target(tmp_path):
    """The swap renamed the link to `.name.old` and then could not rmtree a link: a dangling `.link.old` stayed."""
    real = tmp_path / "runs" / "v1"
    assert run("init", "--preset", "tiny", "-o", str(real), "--seed", "1").returncode == 0
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    assert run("init", "--preset", "tiny", "-o", str(link), "--force", "--seed", "2").returncode == 0
    assert link.is_dir() and not link.is_symlink()
    assert json.loads((link / "config.json").read_text())["metadata"]["seed"] == 2
    assert json.loads((real / "config.json").read_text())["metadata"]["seed"] == 1  # what the link named: intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "runs"]


def test_info_prints_paths_with_brackets_verbatim(tmp_path):
    """rich read `[v2]` in a path as markup (dropped it) and `[/bold]` as a bad tag (traceback)."""
    for name in ("ck[v2]", "ck[/bold]x"):
        assert run("init", "--preset", "tiny", "-o", str(tmp_path / name)).returncode == 0
        res = run("info", str(tmp_path / name))
        assert res.returncode == 0 and res.stdout.splitlines()[0].startswith(str(tmp_path / name)), res.stderr


def test_no_arguments_prints_help_without_an_empty_error_line():
    res = run()
    assert res.returncode == 2 and "Usage" in res.stdout and res.stderr == "", res.stderr


def test_info_device_honours_kernels_torch():
    """`info --device` once said the compiled kernels were in use under --kernels torch, which turns them off."""
    res = run("--kernels", "torch", "info", "--device")
    assert res.returncode == 0 and "cpu_kernels     off (--kernels torch)" in res.stdout, res.stdout


def test_closed_stdout_exits_141_for_rich_output_too():
    """rich (help, info, presets) answers a closed pipe with exit 1 after pointing stdout at /dev/null; click's own
    answer is mapped to 141 and so must rich's be, or `| head` fails a `set -o pipefail` pipeline."""
    for args in ("--help", "info --device"):
        cmd = f"{sys.executable} -m dnahnet_cli.cli {args} | true; exit ${{PIPESTATUS[0]}}"
        res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
        assert res.returncode == 141 and res.stderr == "", (args, res.returncode, res.stderr)


def test_bad_root_options_are_one_line_errors():
    res = run("--kernels", "bogus", "presets")
    assert res.returncode == 2 and "invalid --kernels 'bogus'" in res.stderr and "Traceback" not in res.stderr
    if not __import__("torch").cuda.is_available():  # 'fast' insists on CUDA + mamba-ssm
        res = run("--kernels", "fast", "segment", "x.fa")  # a command that runs a model (presets needs none)
        assert res.returncode == 2 and "--kernels fast needs CUDA" in res.stderr and res.stderr.count("\n") == 1
    res = run("--threads", "0", "presets")
    assert res.returncode == 2


def test_info_reads_odd_training_metadata_without_a_traceback(tmp_path):
    """config.json's metadata is free JSON: a step that is text, or a train_config that is a list, crashed `info`."""
    assert run("init", "--preset", "tiny", "-o", str(tmp_path / "m")).returncode == 0
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for metadata, shown in (({"step": "abc", "train_config": {"steps": 5}}, "step abc"),
                            ({"step": 3, "train_config": [1]}, "step 3"),
                            ({"step": 3, "train_config": {"steps": 10}, "val_bpn": 1.9}, "step 3 of 10"),
                            ({"training": {"steps": "x", "lr": None, "batch_size": 2.0,
                                           "continues": {"name": 3, "training": [1]}}}, "in 2 cycle(s)"),
                            ({"training": ["not", "a", "record"]}, '["not", "a", "record"]')):
        cfg_path.write_text(json.dumps({**cfg, "metadata": metadata}))
        res = run("info", str(tmp_path / "m"))
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert shown in res.stdout


def test_info_summarises_the_shipped_models_training_record():
    """`info` printed the shipped model's whole training record (every cycle nested in the next) as one JSON line of
    ~3,000 characters; it now names the model and gives the totals, the last cycle and the chain of cycles."""
    from dnahnet_cli.model.default_model import DEFAULT_MODEL_DIR

    meta = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["metadata"]
    t = meta["training"]
    res = run("info")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"({meta['name']}; dnahnet" in lines[0]
    assert max(map(len, lines)) < 250  # no record dumped on one line
    chain = []
    node = t
    while "continues" in node:
        chain.append(node["continues"]["name"])
        node = node["continues"]["training"]
    training = next(ln for ln in lines if ln.startswith("training  "))
    assert f"{t['training_flops_total']:.3g} FLOPs on {t['nucleotides_total']:,} nt in {len(chain) + 1} cycle(s)" in training
    assert f"final validation {t['final_val_bits_per_nt']:.4f} bits/nt" in training
    assert any(ln.startswith("continues") and " <- ".join(chain) in ln for ln in lines)
    assert any(ln.startswith("last cycle") and f"{t['steps']:,} steps" in ln and f"seed {t['seed']}" in ln for ln in lines)
    full = json.loads(run("info", "--json").stdout)  # the whole record stays available
    assert full["metadata"]["training"] == t
