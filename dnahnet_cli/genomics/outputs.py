"""Table (TSV) and VCF writers shared by the scoring commands.

TSV convention (conventions §5.4): optional `##key=value` provenance lines, then ONE header line of
snake_case names (not prefixed with '#'), then tab-separated rows; missing values are `NA`, floats use
7 significant digits. `pandas.read_csv(path, sep="\\t", comment="#")` or `--no-meta` reads it.
Outputs go through a temporary file renamed on success; a name ending in `.gz` is written as bgzip
(BGZF), so `tabix` and `zcat` both work; '-' is stdout.
"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

import pysam
from pysam.libcbgzf import BGZFile

from dnahnet_cli import __version__
from dnahnet_cli.genomics.fileio import atomic_output, atomic_path

NA = "NA"


def command_line() -> str:
    """The command as typed, for provenance headers."""
    return "dnahnet " + shlex.join(sys.argv[1:])


def provenance(extra: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Standard `##` key/value pairs: version, command, model (path, sha256, preset, precision), extras."""
    meta = [("dnahnet_version", __version__), ("dnahnet_command", command_line())]
    if model:
        meta.append(("dnahnet_model", ",".join(f"{k}={model[k]}" for k in
                                               ("model", "sha256", "preset", "precision") if k in model)))
        if "precision_reason" in model:  # why this precision (e.g. --dtype auto on an AMX CPU)
            meta.append(("dnahnet_precision", f"{model['precision']}; {model['precision_reason']}"))
    meta += [(k, str(v)) for k, v in (extra or {}).items()]
    return meta


def format_value(value: Any, float_fmt: str = ".7g") -> str:
    """One TSV cell: None/NaN -> NA, floats with fixed significant digits, bools as 1/0."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) or hasattr(value, "dtype"):
        v = float(value)
        return NA if math.isnan(v) else format(v, float_fmt)
    return str(value)


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """A text stream for `path`: '-' = stdout; '*.gz' = bgzip; atomic (temp file + rename) for files."""
    if str(path) == "-" or not str(path).endswith(".gz"):
        with atomic_output(path, "w") as fh:
            yield fh
        return
    with atomic_path(path) as tmp:
        fh = io.TextIOWrapper(BGZFile(str(tmp), "wb"), encoding="utf-8")
        try:
            yield fh
        finally:
            fh.close()


class TsvWriter:
    """Rows of a fixed column list, written after the provenance lines and the header."""

    def __init__(self, fh: IO[str], columns: Sequence[str], meta: Sequence[tuple[str, str]] | None = None,
                 float_fmt: str = ".7g"):
        self.fh, self.columns, self.float_fmt = fh, list(columns), float_fmt
        for key, value in meta or ():
            fh.write(f"##{key}={value}\n")
        fh.write("\t".join(self.columns) + "\n")

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row given as {column: value}; absent columns are NA."""
        self.fh.write("\t".join(format_value(row.get(c), self.float_fmt) for c in self.columns) + "\n")


@contextlib.contextmanager
def open_bcf_output(path: str) -> Iterator[IO[str]]:
    """A text stream for VCF records that ends up as BCF at `path` ('-' = stdout): the text goes to a
    temporary VCF, which pysam (htslib) re-encodes as BCF when the stream closes without error."""
    with tempfile.TemporaryDirectory(prefix="dnahnet-bcf-") as tmp:
        text = Path(tmp) / "records.vcf"
        with open(text, "w", encoding="utf-8") as fh:
            yield fh
        binary = Path(tmp) / "records.bcf"
        with pysam.VariantFile(str(text)) as vin, pysam.VariantFile(str(binary), "wb", header=vin.header) as vout:
            for rec in vin:
                vout.write(rec)
        if path == "-":
            sys.stdout.flush()
            with open(binary, "rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with atomic_path(path) as final:
            shutil.copyfile(binary, final)


class VcfWriter:
    """Copies input records to a VCF with extra INFO fields (one value per ALT, '.' when missing).

    Records are re-rendered by pysam after being translated to the extended header, so every
    input record and field is kept.
    """

    def __init__(self, fh: IO[str], header: pysam.VariantHeader, info_lines: Sequence[str],
                 meta: Sequence[tuple[str, str]] | None = None):
        self.fh = fh
        self.header = header.copy()
        for line in info_lines:
            self.header.add_line(line)
        for key, value in meta or ():
            self.header.add_meta(key, value)
        fh.write(str(self.header))

    def write(self, record: pysam.VariantRecord, info: Mapping[str, Sequence[Any]]) -> None:
        """Write `record` with INFO fields set from per-ALT value lists (None -> '.')."""
        rec = record.copy()
        rec.translate(self.header)
        for key, values in info.items():
            if rec.alts and any(v is not None for v in values):
                rec.info[key] = tuple(None if _missing(v) else v for v in values)
        self.fh.write(str(rec))


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
