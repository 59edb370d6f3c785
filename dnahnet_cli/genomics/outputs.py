"""Table (TSV) and VCF writers shared by the scoring commands.

TSV convention: optional `##key=value` provenance lines, then ONE header line of
snake_case names prefixed with `#` (as bedtools and tabix expect: `tabix -s1 -b2 -e2` needs no `-S`), then
tab-separated rows; missing values are `NA` (score-variants `--na`), floats use 7 significant digits.
`read_table` (below) reads it into pandas.
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
from dnahnet_cli.genomics.fileio import atomic_output, atomic_path, writes_in_place

NA = "NA"


def command_line() -> str:
    """The command as typed, for provenance headers."""
    return "dnahnet " + shlex.join(sys.argv[1:])


def provenance(extra: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Standard `##` key/value pairs: version, command, model (path, name, sha256 of the weights and of the
    architecture, preset, precision), why that
    precision, the device and kernels that ran (a result can depend on each), then the extras."""
    meta = [("dnahnet_version", __version__), ("dnahnet_command", command_line())]
    if model:
        meta.append(("dnahnet_model", ",".join(f"{k}={model[k]}" for k in
                                               ("model", "name", "sha256", "config_sha256", "preset", "precision")
                                               if k in model)))
        if "precision_reason" in model:  # why this precision (e.g. --dtype auto on an AMX CPU)
            meta.append(("dnahnet_precision", f"{model['precision']}; {model['precision_reason']}"))
        if "device" in model:
            meta.append(("dnahnet_device", f"{model['device']}; kernels {model.get('kernels', 'torch')}"))
    meta += [(k, str(v)) for k, v in (extra or {}).items()]
    # a line break in a file name or argument would split its `##` line and corrupt the header
    return [(k, v.translate(_LINE_BREAK_ESCAPES)) for k, v in meta]


_CELL_ESCAPES = str.maketrans({"\t": "%09", "\n": "%0A", "\r": "%0D"})
_LINE_BREAK_ESCAPES = str.maketrans({"\n": "%0A", "\r": "%0D"})


def format_value(value: Any, float_fmt: str = ".7g", na: str = NA) -> str:
    """One TSV cell: None/NaN -> `na`, floats with fixed significant digits, bools as 1/0. A tab or line break
    inside a string (a GFF3 attribute may carry one, percent-encoded) is percent-encoded again, as GFF3 writes
    it, so that it cannot split the row."""
    if value is None:
        return na
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) or hasattr(value, "dtype"):
        v = float(value)
        return na if math.isnan(v) else format(v, float_fmt)
    text = str(value)
    return text.translate(_CELL_ESCAPES) if ("\t" in text or "\n" in text or "\r" in text) else text


BGZIP_SUFFIXES = (".gz", ".bgz")


def is_bgzip_name(path: str | Path) -> bool:
    """Whether an output name asks for bgzip compression ('.gz' or '.bgz', as bgzip and tabix accept both)."""
    return str(path).lower().endswith(BGZIP_SUFFIXES)


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """A text stream for `path`: '-' = stdout; '*.gz'/'*.bgz' = bgzip; atomic (temp file + rename) for files."""
    if str(path) == "-" or not is_bgzip_name(path):
        with atomic_output(path, "w") as fh:
            yield fh
        return
    with atomic_path(path) as tmp:  # surrogateescape: bytes that are not UTF-8 go out as read, as in plain text
        fh = io.TextIOWrapper(BGZFile(str(tmp), "wb"), encoding="utf-8", errors="surrogateescape")
        try:
            yield fh
        finally:
            fh.close()
    drop_stale_indexes(path)


def drop_stale_indexes(path: str) -> None:
    """Remove the .tbi/.csi an earlier file of this name had: htslib would use one describing other data (a .csi
    before a fresh .tbi); the commands that index (score-variants) write a new .tbi afterwards."""
    if str(path) == "-" or writes_in_place(Path(path)):
        return
    for suffix in (".tbi", ".csi"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


PIPE_PIECE = 4096  # PIPE_BUF on Linux: a pipe takes a write this small whole, or refuses it (EPIPE)


def write_in_pieces(fh: IO[str], text: str) -> None:
    """Write a large block of text in pieces of PIPE_PIECE characters. Python's buffered stdout loses, without
    an error, the rest of one large write that a reader stops reading midway, so `dnahnet segment | head` exited
    0 instead of 141; written in pieces, the next piece meets the closed pipe and raises BrokenPipeError."""
    for i in range(0, len(text), PIPE_PIECE):
        fh.write(text[i: i + PIPE_PIECE])


LL_FMT = ".12g"  # total log-likelihood columns (ll_*, sum_ll*): 1e-7 nats at 1e4, 1e-6 at 1e5


class TsvWriter:
    """Rows of a fixed column list, written after the provenance lines and the `#`-prefixed header (so tabix,
    bedtools and `sort` treat it as a comment); `na` is the missing-value token."""

    def __init__(self, fh: IO[str], columns: Sequence[str], meta: Sequence[tuple[str, str]] | None = None,
                 float_fmt: str = ".7g", na: str = NA):
        self.fh, self.columns, self.na = fh, list(columns), na
        # a window's log-likelihood is ~-1e4 nats: 7 digits would round it to 0.01, the size of many deltas
        self.formats = [LL_FMT if c.startswith(("ll_", "sum_ll")) and float_fmt == ".7g" else float_fmt
                        for c in self.columns]
        for key, value in meta or ():
            fh.write(f"##{key}={value}\n")
        fh.write("#" + "\t".join(self.columns) + "\n")

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row given as {column: value}; absent columns are missing."""
        self.fh.write("\t".join(format_value(row.get(c), f, self.na) for c, f in zip(self.columns, self.formats)) + "\n")


def read_table(source: str | Path | IO[str], na: str = NA):
    """A dnahnet TSV as a pandas DataFrame (pandas needed): `##` provenance lines skipped, the `#` of the
    header dropped. The same by hand: `pd.read_csv(path, sep="\\t", skiprows=N_META).rename(columns=lambda c:
    c.lstrip("#"))`, with N_META the number of `##` lines (0 with --no-meta)."""
    try:
        import pandas as pd
    except ImportError:  # not a dependency of the command-line tool itself
        raise ImportError("read_table needs pandas: pip install pandas (or pip install 'dnahnet[test]')") from None

    text = source.read() if hasattr(source, "read") else Path(source).read_text() if not is_bgzip_name(source) \
        else _read_gz(source)
    body = "".join(line for line in io.StringIO(text) if not line.startswith("##"))
    return pd.read_csv(io.StringIO(body.lstrip("#")), sep="\t", keep_default_na=False, na_values=[na])


def _read_gz(path: str | Path) -> str:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def tabix_index_tsv(path: str, seq_col: int = 0, pos_col: int = 1, end_col: int | None = None,
                    preset: str | None = None) -> str | None:
    """Index a bgzipped, position-sorted TSV with tabix (`#` lines are the header; positions 1-based, `end_col`
    inclusive, default: one base at `pos_col`), or with `preset` ("vcf") a bgzipped VCF; None when it is not sorted
    (the file is still valid; sort it, or pass rows in position order, to get an index)."""
    verbosity = pysam.set_verbosity(0)  # an unsorted file is expected here: htslib's own "[E::hts_idx_push]" line
    try:                                # would stand beside (or, under -q, instead of) dnahnet's note
        if preset:
            pysam.tabix_index(path, preset=preset, force=True, keep_original=True)
        else:
            pysam.tabix_index(path, seq_col=seq_col, start_col=pos_col,
                              end_col=pos_col if end_col is None else end_col, meta_char="#", force=True,
                              keep_original=True)
    except (OSError, ValueError):
        with contextlib.suppress(FileNotFoundError):
            Path(path + ".tbi").unlink()
        return None
    finally:
        pysam.set_verbosity(verbosity)
    return path + ".tbi"


@contextlib.contextmanager
def open_bcf_output(path: str) -> Iterator[IO[str]]:
    """A text stream for VCF records that ends up as BCF at `path` ('-' = stdout): the text goes to a
    temporary VCF, which pysam (htslib) re-encodes as BCF when the stream closes without error."""
    with tempfile.TemporaryDirectory(prefix="dnahnet-bcf-") as tmp:
        text = Path(tmp) / "records.vcf"
        with open(text, "w", encoding="utf-8") as fh:
            yield fh
        binary = Path(tmp) / "records.bcf"
        # A first pass over the records (keeping none, so a 10M-record VCF needs no more memory than a small one)
        # finds symbolic alleles and leaves the header as htslib completed it while parsing (VcfWriter has declared
        # the contigs and keys the records use: BCF refers to them by index); the second pass writes the BCF
        symbolic = False
        with pysam.VariantFile(str(text)) as vin:
            for rec in vin:
                symbolic = symbolic or any(a.startswith("<") for a in rec.alts or ())
            header = vin.header.copy()
        if symbolic and "END" not in header.info:  # htslib's BCF encoder refers to INFO/END for symbolic
            # alleles and writes an unreadable record when the header lacks it
            header.add_line('##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the '
                            'variant (declared by dnahnet for BCF output of symbolic alleles)">')
        with pysam.VariantFile(str(text)) as vin, pysam.VariantFile(str(binary), "wb", header=header) as vout:
            for rec in vin:  # the second pass, streamed (records translate to the first pass's header)
                vout.write(rec)
        if path == "-":
            sys.stdout.flush()
            with open(binary, "rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with atomic_path(path) as final:
            shutil.copyfile(binary, final)
        drop_stale_indexes(path)


# The VCF 4.3 specification's reserved genotype keys (section 1.6.2), declared as it defines them
RESERVED_FORMAT = {
    **dict.fromkeys(("AD", "ADF", "ADR"), "Number=R,Type=Integer"), "EC": "Number=A,Type=Integer",
    **dict.fromkeys(("DP", "GQ", "MQ", "PQ", "PS"), "Number=1,Type=Integer"), "HQ": "Number=2,Type=Integer",
    **dict.fromkeys(("GT", "FT"), "Number=1,Type=String"), **dict.fromkeys(("GL", "GP"), "Number=G,Type=Float"),
    **dict.fromkeys(("PL", "PP"), "Number=G,Type=Integer"),
}


# An undeclared INFO key is declared as htslib declares it (String, Number=.), which holds whatever its values are;
# only END is an Integer: htslib reads it as the record's end and writes it as an integer, so a String declaration
# broke BCF output (a TypeError, or END silently dropped). The spec's types for the other reserved keys (AF Number=A,
# DP Integer, ...) would contradict records that do not follow them (DP=abc, one AF on a two-ALT record).
RESERVED_INFO = {"END": "Number=1,Type=Integer"}


def _undeclared_info_type(key: str, kind: str) -> str:
    """Number and Type for an INFO key the input header does not declare (`kind`: Flag for a bare key)."""
    return RESERVED_INFO.get(key) or ("Number=0,Type=Flag" if kind == "Flag" else "Number=.,Type=String")


class VcfWriter:
    """Copies input VCF lines byte for byte, adding dnahnet's INFO fields (one value per ALT, '.' missing).

    Nothing the input carries is re-rendered: each record line keeps its text and only gains the dnahnet tags
    at the end of its INFO column, so undeclared keys, flags and values htslib would not parse survive as written.
    An earlier dnahnet run's output is re-scored cleanly: every `DNAHNET_*` INFO key (values and declarations,
    including those of options not used now, such as --calibrate's) and its `##dnahnet_*` provenance lines are
    dropped, so no stale value or second `##dnahnet_window` survives. INFO keys the header does not declare get a
    `##INFO=<...,Type=String>` line (Flag for a key no record gives a value) in the output header, FILTER names,
    FORMAT keys (the spec's types for its reserved keys) and contigs their `##FILTER`/`##FORMAT`/`##contig` lines,
    reported once through `note`: htslib reads undeclared FORMAT values as strings, and BCF cannot hold them. Record lines are buffered in a temporary file until `close`, because those declarations
    belong in the header, which precedes the records. Bytes that are not UTF-8 (a Latin-1 VCF 4.2) arrive as
    surrogates (VcfInput) and are written back as the same bytes.
    """

    def __init__(self, fh: IO[str], header_lines: Sequence[str], info_lines: Sequence[str],
                 meta: Sequence[tuple[str, str]] | None = None, note: Any = None):
        self.fh, self.note = fh, note
        self.header = [h for h in header_lines if not _is_dnahnet_header(h)]
        self.declared = {_info_id(h) for h in self.header if h.startswith("##INFO=")}
        self.filters = {_header_id(h, "FILTER") for h in self.header} | {"PASS", "."}
        self.info_lines = list(info_lines)
        self.meta = list(meta or ())
        self.undeclared: dict[str, str] = {}  # key -> "String" | "Flag"
        self.undeclared_filters: dict[str, None] = {}
        self.formats = {_header_id(h, "FORMAT") for h in self.header}
        self.contigs = {_header_id(h, "contig") for h in self.header}
        self.undeclared_formats: dict[str, None] = {}
        self.undeclared_contigs: dict[str, None] = {}
        self.body = tempfile.TemporaryFile("w+b")

    def write(self, line: str, info: Mapping[str, Sequence[Any]]) -> None:
        """Write the record `line` (its text as read) with INFO fields set from per-ALT value lists."""
        cols = line.split("\t")
        kept = ([] if cols[7] in (".", "") else  # an empty column as '.': no ';' before the first added key
                [f for f in cols[7].split(";") if not f.startswith(OWN_INFO_PREFIX)])
        for field in kept:
            key = field.split("=", 1)[0]
            if key and key not in self.declared and self.undeclared.get(key) != "String":  # one value: String
                self.undeclared[key] = "String" if "=" in field else "Flag"
        for name in cols[6].split(";"):
            if name and name not in self.filters:  # an empty FILTER column names no filter
                self.undeclared_filters.setdefault(name)
        if cols[0] not in self.contigs:
            self.undeclared_contigs.setdefault(cols[0])
        if len(cols) > 8 and cols[8] not in ("", "."):
            for key in cols[8].split(":"):
                if key and key not in self.formats:
                    self.undeclared_formats.setdefault(key)
        added = [f"{key}={','.join('.' if _missing(v) else format_value(v) for v in values)}"
                 for key, values in info.items() if cols[4] != "." and any(v is not None for v in values)]
        cols[7] = ";".join(kept + added) or "."
        self.body.write(("\t".join(cols) + "\n").encode("utf-8", "surrogateescape"))

    def close(self) -> None:
        """Write the header (with declarations for undeclared keys) and the buffered records."""
        why = 'Description="Not declared in the input header; declared by dnahnet">'
        extra = [f"##INFO=<ID={key},{_undeclared_info_type(key, kind)},{why}" for key, kind in self.undeclared.items()]
        extra += [f"##FILTER=<ID={name},{why}" for name in self.undeclared_filters]
        extra += [f"##FORMAT=<ID={key},{RESERVED_FORMAT.get(key, 'Number=.,Type=String')},{why}"
                  for key in self.undeclared_formats]
        extra += [f"##contig=<ID={name}>" for name in self.undeclared_contigs]
        if extra and self.note:
            names = [*self.undeclared, *(f"FILTER {f}" for f in self.undeclared_filters),
                     *(f"FORMAT {k}" for k in self.undeclared_formats), *(f"contig {c}" for c in self.undeclared_contigs)]
            self.note(f"keys and contigs not declared in the input header, declared in the output: {', '.join(names)}")
        meta = [f"##{k}={v}" for k, v in self.meta]
        header = "\n".join(self.header[:-1] + extra + self.info_lines + meta + self.header[-1:]) + "\n"
        self.fh.flush()
        out = self.fh.buffer  # bytes, so that the input's non-UTF-8 bytes go out as they came in
        out.write(header.encode("utf-8", "surrogateescape"))
        self.body.seek(0)
        shutil.copyfileobj(self.body, out)
        out.flush()
        self.body.close()


OWN_INFO_PREFIX = "DNAHNET_"


def _is_dnahnet_header(line: str) -> bool:
    """A header line an earlier dnahnet run wrote: a DNAHNET_* INFO declaration or ##dnahnet_* provenance."""
    return line.startswith("##dnahnet_") or (_info_id(line) or "").startswith(OWN_INFO_PREFIX)


def _header_id(line: str, kind: str) -> str | None:
    """ID of a `##KIND=<ID=...>` header line (None for other lines)."""
    prefix = f"##{kind}=<ID="
    if not line.startswith(prefix):
        return None
    return line[len(prefix):].split(",", 1)[0].rstrip(">")


def _info_id(line: str) -> str | None:
    return _header_id(line, "INFO")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
