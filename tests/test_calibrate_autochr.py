"""`score-variants --calibrate` (percentiles against a cached random-SNV background) and `--auto-chr`
(contig renames inferred only when exactly one FASTA record fits)."""

from __future__ import annotations

import io

import numpy as np
import pysam
import pytest

from dnahnet_cli.genomics.genome import Genome
from dnahnet_cli.genomics.outputs import read_table
from dnahnet_cli.genomics.variants import infer_chrom_map
from dnahnet_cli.tasks.calibration import Background, sample_snvs
from test_score_variants_cli import EX, FAST, GENOME, _one_thread, app, ckpt, run  # noqa: F401

SMALL_FA = str(EX / "ecoli_k12_20kb.fa")
SMALL_VCF = str(EX / "ecoli_k12_20kb.vcf")


def _genome(tmp_path, records: dict[str, int]) -> Genome:
    fa = tmp_path / f"g{len(list(tmp_path.glob('*.fa')))}.fa"
    rng = np.random.default_rng(1)
    fa.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size=k))}\n" for n, k in records.items()))
    return Genome.open(str(fa), quiet=True)


# -- --auto-chr -----------------------------------------------------------------------------------
def test_auto_chr_maps_only_unambiguous_names(tmp_path):
    g = _genome(tmp_path, {"1": 50, "chr2": 60, "MT": 30, "NC_000913.3": 80, "NZ_CP1.1": 70, "NZ_CP1.2": 71})
    got = infer_chrom_map(["chr1", "2", "chrM", "NC_000913", "U00096.3", "NZ_CP1", "chrX"], g,
                          {"U00096.3": 80, "chrX": 999})
    assert {k: v for k, (v, _) in got.items()} == {"chr1": "1", "2": "chr2", "chrM": "MT", "NC_000913": "NC_000913.3"}
    # NZ_CP1 has two versions (ambiguous); U00096.3's length matches NC_000913.3, already claimed; chrX fits nothing
    assert "U00096.3" not in got and "NZ_CP1" not in got and "chrX" not in got
    # the RefSeq/GenBank pair is found by its ##contig length when no spelling rule applies and nothing claims it
    got = infer_chrom_map(["U00096.3"], g, {"U00096.3": 80})
    assert got["U00096.3"][0] == "NC_000913.3" and "length" in got["U00096.3"][1]
    # two VCF names that would map to one record map nothing; a version change is never a match
    h = _genome(tmp_path, {"1": 5, "NC_1.1": 6})
    assert infer_chrom_map(["chr1", "1"], h, {}) == {}  # "1" is named exactly by the VCF itself
    assert infer_chrom_map(["NC_1", "chrNC_1.1"], h, {}) == {}  # both would map to NC_1.1
    assert infer_chrom_map(["NC_1"], h, {}) == {"NC_1": ("NC_1.1", "accession version added")}
    assert infer_chrom_map(["NZ_CP1.3"], g, {}) == {}
    # not by length either: a version that corrects bases keeps the length (NC_000913.2 was scored on .3)
    assert infer_chrom_map(["NC_000913.2"], g, {"NC_000913.2": 80}) == {}
    assert infer_chrom_map(["1"], g, {"1": 50}, taken={"x": "1"}) == {}


def test_auto_chr_on_the_command_line(app, ckpt, tmp_path):  # noqa: F811
    vcf = tmp_path / "chr.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=U00096.3,length=4641652>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nU00096.3\t93043\t.\tC\tG\t.\t.\t.\n")
    res = run(app, "score-variants", GENOME, vcf, "--model", ckpt, *FAST)
    assert res.exception.exit_code == 2 and "U00096.3" in str(res.exception)
    res = run(app, "score-variants", GENOME, vcf, "--model", ckpt, *[a for a in FAST if a != "--quiet"], "--auto-chr",
              "--strict")
    assert res.exit_code == 0, res.output
    assert "--auto-chr: VCF contig U00096.3 -> FASTA NC_000913.3" in res.stderr
    row = read_table(io.StringIO(res.stdout)).iloc[0]
    assert (row["chrom"], row["status"]) == ("U00096.3", "OK")  # the output keeps the VCF's own name


# -- --calibrate ----------------------------------------------------------------------------------
def test_background_is_seeded_snvs_at_acgt_bases():
    g = Genome.open(SMALL_FA, quiet=True)
    a, b = sample_snvs(g, 40, 7, 64), sample_snvs(g, 40, 7, 64)
    assert [(x.pos, x.alt) for x in a] == [(x.pos, x.alt) for x in b] and len({x.pos for x in a}) == 40
    assert [(x.pos, x.alt) for x in a] != [(x.pos, x.alt) for x in sample_snvs(g, 40, 8, 64)]
    for x in a:
        assert x.ref == g.fetch(x.contig, x.pos - 1, x.pos) and x.alt != x.ref and x.alt in "ACGT"
        assert x.windows is not None and len(x.windows.ref) == len(x.windows.alt) == 64


def test_percentile_and_z_semantics():
    bg = Background(np.array([-3.0, -1.0, 0.0, 2.0]), {}, None)
    assert bg.percentile(-3.0) == 25.0 and bg.percentile(-3.5) == 0.0 and bg.percentile(5) == 100.0
    assert bg.z(bg.mean) == 0.0 and bg.z(None) is None and bg.percentile(float("nan")) is None
    assert bg.z(bg.mean + bg.sd) == pytest.approx(1.0)


def test_calibrate_adds_percentiles_and_reuses_the_cached_background(app, ckpt, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    args = ["score-variants", SMALL_FA, SMALL_VCF, "--model", ckpt, *FAST, "--calibrate", "30",
            "--calibrate-cache", cache]
    first = run(app, *args)
    assert first.exit_code == 0, first.output
    files = list((cache / "calibration").glob("background-*.tsv"))
    assert len(files) == 1
    bg = read_table(files[0])
    assert len(bg) == 30 and bg["score"].notna().all()
    t = read_table(io.StringIO(first.stdout))
    ranks = np.array([100.0 * (bg["score"] <= s).sum() / 30 for s in t["score"]])
    assert np.allclose(t["score_percentile"], ranks)
    assert np.allclose(t["score_z"], (t["score"] - bg["score"].mean()) / bg["score"].std(ddof=1), rtol=1e-5)
    assert "##dnahnet_calibration=30 random SNVs (seed 0)" in first.stdout

    before = files[0].stat().st_mtime_ns
    again = run(app, *args[:-1], cache, "--format", "vcf")
    assert again.exit_code == 0 and files[0].stat().st_mtime_ns == before  # read back, not rescored
    recs = list(pysam.VariantFile(_vcf_file(tmp_path, again.stdout)))
    assert [r.info["DNAHNET_PCT"][0] for r in recs] == pytest.approx(list(t["score_percentile"]))

    # another seed, window or a tampered header is another background
    files[0].write_text(files[0].read_text().replace("##dnahnet_background_n=30", "##dnahnet_background_n=31"))
    assert run(app, *args).exit_code == 0 and files[0].stat().st_mtime_ns != before
    assert run(app, *args, "--calibrate-seed", "1").exit_code == 0
    assert len(list((cache / "calibration").glob("*.tsv"))) == 2
    # a background cut short with its header intact (once reused as long as 2 scores were left) is rebuilt
    lines = files[0].read_text().splitlines(keepends=True)
    files[0].write_text("".join(lines[:-10]))
    assert run(app, *args).exit_code == 0 and len(read_table(files[0])) == 30


def _vcf_file(tmp_path, text: str) -> str:
    p = tmp_path / "out.vcf"
    p.write_text(text)
    return str(p)


def test_the_background_cache_key_knows_which_contigs_are_circular():
    """Windows near a contig end wrap on a circular contig and are clamped on a linear one: a background scored
    one way must not be reused for the other."""
    from types import SimpleNamespace

    from dnahnet_cli.tasks.calibration import background_params

    genome = Genome.open(str(EX / "ecoli_k12_20kb.fa"), quiet=True)
    engine = SimpleNamespace(provenance={"sha256": "x"}, dtype="float32")
    linear = background_params(genome, engine, 512, "both", 100, 0)
    genome.set_circular(genome.names)
    circular = background_params(genome, engine, 512, "both", 100, 0)
    assert linear != circular and circular["circular"] == genome.names[0] and linear["circular"] == "none"
    # the same weights under an edited config.json (an attention window) score differently: a new background,
    # as for another device or kernel set (a GPU-filled shared cache reused on a CPU)
    for change in ({"config_sha256": "edited"}, {"device": "cuda:0"}, {"kernels": "mamba2=torch"},
                   {"dnahnet_version": "0.0.1"}):
        other = SimpleNamespace(provenance={"sha256": "x", **change}, dtype="float32")
        assert background_params(genome, other, 512, "both", 100, 0) != circular


def test_an_unusable_cache_from_the_environment_is_named_as_such(tmp_path, monkeypatch):
    """A bad DNAHNET_CACHE_DIR was reported as a bad --calibrate-cache, an option the user had not given."""
    from dnahnet_cli.errors import DnahnetError
    from dnahnet_cli.tasks.calibration import default_cache_dir, default_cache_source, prepare_cache_dir

    blocker = tmp_path / "a file"
    blocker.write_text("x")
    monkeypatch.setenv("DNAHNET_CACHE_DIR", str(blocker))
    with pytest.raises(DnahnetError, match=r"^DNAHNET_CACHE_DIR .*a file: cannot create"):
        prepare_cache_dir(default_cache_dir(), default_cache_source())


def test_a_read_only_cache_serves_its_backgrounds_and_no_home_is_one_line(app, ckpt, tmp_path, monkeypatch):  # noqa: F811
    """A shared cache other users can only read was refused up front although it held the background; without HOME
    (or a passwd entry) the cache went to a folder literally named '~' in the working directory."""
    import os

    from dnahnet_cli.errors import DnahnetError
    from dnahnet_cli.tasks import calibration

    cache = tmp_path / "shared"
    args = ["score-variants", SMALL_FA, SMALL_VCF, "--model", ckpt, *FAST, "--calibrate", "30",
            "--calibrate-cache", cache]
    assert run(app, *args).exit_code == 0
    (cached,) = (cache / "calibration").glob("background-*.tsv")
    writable = os.access
    monkeypatch.setattr(calibration.os, "access",  # as another user sees it (root may write anywhere)
                        lambda p, mode: writable(p, mode) and not (mode & os.W_OK and str(cache) in str(p)))
    res = run(app, *args)
    assert res.exit_code == 0 and "##dnahnet_calibration=30 random SNVs" in res.stdout, res.output
    cached.unlink()  # not there: scored for this run, not cached
    res = run(app, *args)
    assert res.exit_code == 0 and "not cached (read-only or no cache folder)" in res.stdout and not cached.exists()
    for name in ("HOME", "XDG_CACHE_HOME", "DNAHNET_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(calibration.os.path, "expanduser", lambda p: p)  # what it returns with no home at all
    with pytest.raises(DnahnetError, match="no home directory to cache the background in; set DNAHNET_CACHE_DIR"):
        calibration.default_cache_dir()
    # ... and the default folder unusable (no home, a read-only home): scored for this run, not an error as it was
    notes = []
    assert calibration.default_cache_or_none(notes.append) is None and "not cached" in notes[0]
    res = run(app, *args[:-2])  # no --calibrate-cache
    assert res.exit_code == 0 and "not cached (read-only or no cache folder)" in res.stdout, res.output
    monkeypatch.setenv("DNAHNET_CACHE_DIR", str(tmp_path / "blocker" / "x"))  # asked for, unusable: still an error
    (tmp_path / "blocker").write_text("")
    with pytest.raises(DnahnetError, match="DNAHNET_CACHE_DIR"):
        calibration.default_cache_or_none(notes.append)
