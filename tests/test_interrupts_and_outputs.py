"""Bad outputs are refused before any work, duplicate records (and POS 0 under --strict) are one-line errors,
and SIGINT / SIGTERM leave no output or temporary file behind (exit 130 / 143 with one line on stderr)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dnahnet_cli.genomics.outputs import read_table

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GENOME = str(EXAMPLES / "ecoli_k12.fa.gz")
VCF = str(EXAMPLES / "ecoli_k12_ampR_isolate.vcf")
CLI = [sys.executable, "-m", "dnahnet_cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


@pytest.mark.parametrize("command", [
    ["score-variants", GENOME, VCF],
    ["essentiality", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--gff", str(EXAMPLES / "ecoli_k12_20kb.gff3")],
    ["segment", str(EXAMPLES / "ecoli_k12_20kb.fa")],
])
def test_output_paths_are_checked_before_work(tmp_path, command):
    one_line_error(run(*command, "-o", tmp_path / "missing" / "out.tsv"), "does not exist", "missing")
    one_line_error(run(*command, "-o", tmp_path), "is a directory")
    assert sorted(os.listdir(tmp_path)) == []


def test_duplicate_record_names_are_errors(tmp_path):
    fa = tmp_path / "dup.fa"
    fa.write_text(">a\nACGTACGTACGT\n>a\nACGTACGTTTTT\n")
    one_line_error(run("score-seqs", fa, "-o", tmp_path / "x.tsv"), "dup.fa", "record a", "duplicate")
    vcf = tmp_path / "a.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\na\t3\t.\tG\tA\t.\t.\t.\n")
    for _ in range(2):  # the second run must not be fooled by an index left by the first
        one_line_error(run("score-variants", fa, vcf, "-o", tmp_path / "y.tsv"), "record a", "duplicate")
    assert not (tmp_path / "x.tsv").exists() and not (tmp_path / "y.tsv").exists()


def test_pos_zero_is_a_skipped_telomere_row_or_under_strict_names_the_vcf_line(tmp_path):
    """VCF 4.3 allows POS 0 (and N+1) for telomeres: one such record once stopped the whole run."""
    vcf = tmp_path / "pos0.vcf"
    vcf.write_text("##fileformat=VCFv4.3\n##contig=<ID=NC_000913.3>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "NC_000913.3\t0\ttel\tN\t.A\t.\t.\t.\n"
                   "NC_000913.3\t0\tsnv0\tA\tG\t.\t.\t.\n"
                   "NC_000913.3\t100\tsnv\tA\tG\t.\t.\t.\n"
                   "NC_000913.3\t0\ttelN\tN\tA\t.\t.\t.\n"            # REF N: out of bounds before ambiguous
                   "NC_000913.3\t4641653\ttelEnd\tN\tA\t.\t.\t.\n")  # contig length + 1
    res = run("score-variants", GENOME, vcf, "--window", "32", "-q", "-o", tmp_path / "x.tsv")
    assert res.returncode == 0, res.stderr
    status = read_table(tmp_path / "x.tsv").set_index("id")["status"].to_dict()
    assert status["snv0"] == "SKIP_OUT_OF_BOUNDS" and status["tel"].startswith("SKIP_") and status["snv"] != "SKIP_OUT_OF_BOUNDS"
    assert status["telN"] == status["telEnd"] == "SKIP_OUT_OF_BOUNDS"
    one_line_error(run("score-variants", GENOME, vcf, "--strict", "-o", tmp_path / "y.tsv"), "pos0.vcf", "line 4",
                   "POS 0")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_leave_no_output(tmp_path, sig, code):
    out = tmp_path / "x.tsv"
    # long windows make the job last; SIGINT ignored at start, as for a background job of a script
    proc = subprocess.Popen([*CLI, "score-variants", GENOME, str(EXAMPLES / "synthetic_all_classes.vcf"),
                             "--all-circular", "--window", "4096", "--dtype", "float32", "-o", str(out), "-q"],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # the output is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == ["dnahnet: interrupted; no output written"]
    assert list(tmp_path.iterdir()) == []


def test_closed_pipe_leaves_no_temporary_file(tmp_path):
    """`... -o out.tsv --per-base - | head -1`: SIGPIPE once killed the process before the atomic output could
    remove its temporary file; now the closed pipe unwinds it, and the exit status is still 141, quietly."""
    cmd = " ".join([sys.executable, "-m", "dnahnet_cli", "score-seqs", str(EXAMPLES / "ecoli_k12_20kb.fa"),
                    "--window", "256", "-q", "-o", str(tmp_path / "out.tsv"), "--per-base", "-"])
    res = subprocess.run(["bash", "-c", f"{cmd} | head -n 1; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 141 and res.stderr == "" and len(res.stdout.splitlines()) == 1, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_truncated_gzip_gff_and_a_fasta_as_gff(tmp_path):
    import gzip

    fa, gff = EXAMPLES / "ecoli_k12_20kb.fa", EXAMPLES / "ecoli_k12_20kb.gff3"
    blob = gzip.compress(gff.read_bytes())
    trunc = tmp_path / "annot.gff3.gz"
    trunc.write_bytes(blob[: len(blob) // 2])
    out = tmp_path / "genes.tsv"
    one_line_error(run("essentiality", fa, "--gff", trunc, "-o", out), "annot.gff3.gz", "truncated")
    one_line_error(run("essentiality", fa, "--gff", fa, "-o", out), "ecoli_k12_20kb.fa", "no genes")
    one_line_error(run("segment", fa, "--gff", fa, "-o", tmp_path / "c.bed"), "no genes")
    assert list(tmp_path.iterdir()) == [trunc]


@pytest.mark.parametrize("args, needle", [
    (["segment", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--tile", "0"], "'--tile'"),
    (["score-variants", GENOME, VCF, "--window", "1"], "'--window'"),
    (["score-seqs", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--context", "-1"], "'--context'"),
])
def test_numeric_ranges_are_checked_at_parse_time(tmp_path, args, needle):
    one_line_error(run(*args, "-o", tmp_path / "out"), needle, "greater than or equal to")
    assert list(tmp_path.iterdir()) == []


def test_info_checks_the_weights_file(tmp_path):
    import shutil

    from dnahnet_cli.model.default_model import DEFAULT_MODEL_DIR

    ckpt = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    one_line_error(run("info", ckpt), "model.safetensors", "truncated")
    weights.write_bytes(b"not a safetensors file at all")
    one_line_error(run("info", ckpt), "model.safetensors", "not a valid safetensors")


def test_bcf_output_and_unknown_suffixes(tmp_path):
    import pysam

    out = tmp_path / "scores.bcf"
    res = run("score-variants", GENOME, VCF, "--all-circular", "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    with pysam.VariantFile(str(out)) as vf:
        assert vf.is_bcf
        records = list(vf)
    with pysam.VariantFile(VCF) as src:
        assert [(r.chrom, r.pos, r.ref, r.alts) for r in records] == [(r.chrom, r.pos, r.ref, r.alts) for r in src]
    assert all(r.info["DNAHNET_STATUS"] == ("OK",) for r in records)
    one_line_error(run("score-variants", GENOME, VCF, "-o", tmp_path / "scores.out"), "unknown file type", "--format")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.bcf"]


def test_keep_info_carries_info_fields_per_alt(tmp_path):
    import pandas as pd

    vcf = tmp_path / "ki.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=NC_000913.3>\n"
        '##INFO=<ID=GENE,Number=1,Type=String,Description="gene">\n'
        '##INFO=<ID=AF,Number=A,Type=Float,Description="allele frequency">\n'
        '##INFO=<ID=FL,Number=0,Type=Flag,Description="flag">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        "NC_000913.3\t93043\trs1\tC\tG,T\t.\t.\tGENE=ftsI;AF=0.1,0.2;FL\n"
        "NC_000913.3\t482698\trs2\tT\tA\t.\t.\tGENE=acrB\n")
    out = tmp_path / "s.tsv"
    res = run("score-variants", GENOME, vcf, "--keep-info", "all", "--window", "64", "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    df = read_table(out)
    assert list(df["id"]) == ["rs1", "rs1", "rs2"] and list(df["info_GENE"]) == ["ftsI", "ftsI", "acrB"]
    assert df["info_AF"].tolist()[:2] == pytest.approx([0.1, 0.2]) and df["info_AF"].isna().tolist()[2]
    assert list(df["info_FL"]) == [1, 1, 0]
    one_line_error(run("score-variants", GENOME, vcf, "--keep-info", "GENE,NOPE", "-o", tmp_path / "t.tsv"),
                   "--keep-info NOPE", "declared: GENE, AF, FL")
    one_line_error(run("score-variants", GENOME, vcf, "--keep-info", "GENE", "-o", tmp_path / "t.vcf"), "TSV output")


@pytest.mark.parametrize("args, needle", [
    (["score-variants", GENOME, VCF, "--dtype", "bogus"], "invalid --dtype 'bogus'"),
    (["score-variants", GENOME, VCF, "--format", "xml"], "--format must be"),
    (["essentiality", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--gff", str(EXAMPLES / "ecoli_k12_20kb.gff3"),
      "--protocol", "evo3"], "--protocol must be one of"),
    (["essentiality", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--gff", str(EXAMPLES / "ecoli_k12_20kb.gff3"),
      "--anchor", "middle"], "--anchor must be first or after"),
    (["essentiality", str(EXAMPLES / "ecoli_k12_20kb.fa"), "--gff", str(EXAMPLES / "ecoli_k12_20kb.gff3"),
      "--tile", "6"], "belong to --protocol cassette"),
])
def test_bad_new_options(tmp_path, args, needle):
    one_line_error(run(*args, "-o", tmp_path / "out.tsv"), needle)
    assert list(tmp_path.iterdir()) == []


def test_train_bad_dtype(tmp_path):
    one_line_error(run("train", "--data", EXAMPLES / "ecoli_k12_20kb.fa", "--preset", "tiny", "--dtype", "fp8",
                       "--steps", "1", "--out", tmp_path / "run"), "dtype must be auto, fp32 or bf16")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_training_points_at_the_checkpoints_it_keeps(tmp_path):
    """Ctrl-C in `train` said "no output written" although its checkpoints were there, meant for --resume."""
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "--threads", "1", "train", "--preset", "tiny", "--data",
                             str(EXAMPLES / "ecoli_k12_20kb.fa"), "--seq-len", "128", "--batch-size", "2",
                             "--steps", "100000", "--ckpt-every", "1", "--out", str(out), "-q",
                             "--cache-dir", str(tmp_path / "cache")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoints/step-*/trainer.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("dnahnet: interrupted; checkpoints already written are kept (continue "
                                            "with --resume), the final model was not written")


def test_outputs_go_into_a_fifo_and_through_a_symlink(tmp_path):
    """A temporary file renamed over the target replaced a FIFO (`-o >(...)`, a named pipe: the reader got
    nothing), a device and a symlink (the file it named kept its old content)."""
    import stat
    import threading

    from dnahnet_cli.genomics.fileio import atomic_output, output_group

    fifo = tmp_path / "pipe.tsv"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    with output_group() as stack:  # the grouped commit writes a pipe directly as well
        stack.enter_context(atomic_output(fifo)).write("row\n")
    reader.join(10)
    assert got == ["row\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    real = tmp_path / "real.tsv"
    real.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(real)
    with atomic_output(link) as fh:
        fh.write("new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tsv", "pipe.tsv", "real.tsv"]


def test_file_size_limit_and_undecodable_file_names_are_not_tracebacks(tmp_path):
    """A full disk or a file-size limit (EFBIG here, ENOSPC alike) ended in a multi-line traceback; a FASTA whose name
    is not valid UTF-8 crashed every TSV output after all the work (its name goes into the provenance lines)."""
    out = tmp_path / "big.tsv"
    res = subprocess.run(["bash", "-c", f"ulimit -f 1; exec {' '.join(CLI)} score-variants {GENOME} {VCF} "
                          f"--window 64 --calibrate 200 -q -o {out}"], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "File too large" in res.stderr and not list(tmp_path.glob("*.tsv"))
    odd = os.fsencode(str(tmp_path)) + b"/g\xe9nome.fa"  # Latin-1 bytes in the name
    with open(odd, "wb") as fh:
        fh.write((EXAMPLES / "ecoli_k12_20kb.fa").read_bytes())
    res = subprocess.run([*CLI, "score-variants", odd, os.fsencode(str(EXAMPLES / "ecoli_k12_20kb.vcf")), b"--window",
                          b"64", b"-q", b"-o", os.fsencode(str(tmp_path / "latin.tsv"))], capture_output=True)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert b"g\xe9nome.fa" in (tmp_path / "latin.tsv").read_bytes()  # the name as its bytes


def run_a_command_that_raises(exception: str) -> subprocess.CompletedProcess:
    """The CLI's main running a command whose body is `raise <exception>` (errno and os are imported)."""
    code = ("import errno, os, sys; from dnahnet_cli import cli\n"
            "@cli.app.command('fails')\n"
            "def fails():\n"
            f"    raise {exception}\n"
            "sys.argv = ['dnahnet', 'fails']; cli.main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_cpu_out_of_memory_is_one_line():
    """torch's CPU allocator raises a plain RuntimeError ("can't allocate memory"), which once printed a traceback
    instead of the out-of-memory line that MemoryError and CUDA's OutOfMemoryError get."""
    res = run_a_command_that_raises("RuntimeError('[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: "
                                    "can\\'t allocate memory: you tried to allocate 123 bytes.')")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("dnahnet: error: out of memory:") and res.stderr.count("\n") == 1, res.stderr
    assert "--batch-size or --max-tokens" in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_interpreter_exit_ends_the_process_quietly(sig):
    """A cancel that lands after the outputs are committed, while atexit joins worker threads, once printed
    "Exception ignored in atexit callback" and a traceback, and the process still exited 0."""
    code = ("import atexit, os, signal, sys, time\n"
            f"atexit.register(lambda: (os.kill(os.getpid(), {int(sig)}), time.sleep(5)))\n"
            "from dnahnet_cli import cli\n"
            "sys.argv = ['dnahnet', 'presets']\n"
            "cli.main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == -sig and res.stderr == "", res.stderr


def test_a_full_temporary_folder_while_spooling_stdin_is_one_line_and_leaves_no_spool(tmp_path):
    """A VCF on stdin is copied to a temporary file first; a full temporary folder there is the machine's problem,
    not a "truncated or corrupt" input, and the partial copy must not stay behind."""
    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    code = ("import errno, os, sys; from dnahnet_cli import cli; from dnahnet_cli.genomics import variants\n"
            "def full(src, dst):\n"
            "    dst.write(src.read(100))\n"
            "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
            "variants._copy_without_bom = full\n"
            f"sys.argv = ['dnahnet', 'score-variants', {str(EXAMPLES / 'ecoli_k12_20kb.fa')!r}, '-', '--window', '64',"
            f" '-q', '-o', {str(tmp_path / 'x.tsv')!r}]; cli.main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         stdin=open(EXAMPLES / "ecoli_k12_20kb.vcf"), env={**os.environ, "TMPDIR": str(spool_dir)})
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "No space left on device" in res.stderr and "corrupt" not in res.stderr
    assert list(spool_dir.iterdir()) == [] and not (tmp_path / "x.tsv").exists()


def test_an_input_given_as_a_pipe_says_how_to_give_it(tmp_path):
    """`<(zcat x.gz)` was refused as 'not a file': true, but no help; inputs are read more than once."""
    cmd = (f"{' '.join(CLI)} score-variants {EXAMPLES / 'ecoli_k12_20kb.fa'} <(cat {EXAMPLES / 'ecoli_k12_20kb.vcf'}) "
           f"-o {tmp_path / 'x.tsv'}")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "VCF is a pipe" in res.stderr and "'-' (stdin)" in res.stderr and not (tmp_path / "x.tsv").exists()


def test_a_line_break_in_a_file_name_cannot_split_a_provenance_line(monkeypatch):
    """A file name with a line break (legal on Linux) split its `##dnahnet_*` line: the rest became a data row."""
    from dnahnet_cli.genomics.outputs import provenance

    monkeypatch.setattr(sys, "argv", ["dnahnet", "segment", "odd\nname.fa"])
    meta = dict(provenance({"dnahnet_reference": "odd\r\nname.fa"}))
    assert meta["dnahnet_reference"] == "odd%0D%0Aname.fa" and "\n" not in meta["dnahnet_command"]


def test_an_input_that_cannot_be_read_is_one_line(tmp_path, monkeypatch):
    """An unreadable input (chmod 000) was a PermissionError traceback: require_file checked existence only, and the
    CLI turned resource errnos, not access ones, into one line. (Root reads any file, so os.access is faked here.)"""
    from dnahnet_cli.errors import DnahnetError
    from dnahnet_cli.genomics.fileio import require_file

    table = tmp_path / "d.csv"
    table.write_text("mutant,score\n")
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(table))
    with pytest.raises(DnahnetError, match=r"DMS table file .*d.csv is not readable \(permission denied\)"):
        require_file(table, "DMS table")
    res = run_a_command_that_raises("PermissionError(errno.EACCES, os.strerror(errno.EACCES), 'x/out.tsv')")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr == "dnahnet: error: x/out.tsv: Permission denied (check the path and its permissions)\n"


def test_closed_standard_streams_and_the_environment_as_a_job_scheduler_leaves_them(tmp_path):
    """Started with stdout closed, every command died in an import (AttributeError on sys.stdout); with stderr
    closed it failed with exit 1 and no word; DNAHNET_KERNELS=bogus blocked --help and `presets` as "--kernels";
    an empty OMP_NUM_THREADS counted as set (libgomp's warning, and not the usable cores)."""
    fa = tmp_path / "s.fa"
    fa.write_text(">s\nACGTACGTAAAACCCGGGTTACGTTGCA\n")
    cli = " ".join(CLI + ["--threads", "1", "--kernels", "torch"])

    def sh(command: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})

    res = sh(f"{cli} score-seqs {fa} -q -o {tmp_path / 'a.tsv'} >&-")
    assert res.returncode == 0 and (tmp_path / "a.tsv").exists(), res.stderr
    for args in ("", f"--entropy - -o {tmp_path / 'c.tsv'}"):  # an output on the closed stdout: refused up front
        res = sh(f"{cli} score-seqs {fa} -q {args} >&-")
        assert res.returncode == 2 and "started with standard output closed" in res.stderr, res.stderr
    res = sh(f"{cli} info >&-")  # no output option to give: one line, not a traceback
    assert res.returncode == 1 and "standard output is closed" in res.stderr and "Traceback" not in res.stderr
    res = sh(f"{cli} score-seqs {fa} -o {tmp_path / 'b.tsv'} 2>&- </dev/null <&-")
    assert res.returncode == 0 and (tmp_path / "b.tsv").exists()
    plain = " ".join(CLI)
    assert sh(f"{plain} presets", DNAHNET_KERNELS="bogus").returncode == 0
    res = sh(f"{plain} score-seqs {fa} -q", DNAHNET_KERNELS="bogus")
    assert res.returncode == 2 and "invalid DNAHNET_KERNELS='bogus' (the environment)" in res.stderr
    res = sh(f"{plain} eval dms --threads 1")  # the hint names the whole command path, not only `dms`
    assert res.returncode == 2 and "--threads goes before the command: dnahnet --threads ... eval dms ..." in res.stderr
    res = sh(f"{cli} check >&-")  # its report is its output: refused before the checks run
    assert res.returncode == 2 and "standard output, which was closed" in res.stderr
    res = sh(f"{plain} --kernels torch score-seqs {fa} -q", OMP_NUM_THREADS="")
    assert res.returncode == 0 and "OMP_NUM_THREADS" not in res.stderr, res.stderr
