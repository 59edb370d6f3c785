"""`dnahnet score-variants` (VCF -> per-ALT log-likelihood ratios) and `dnahnet score-seqs` (per-sequence LL).

Variant score = mean over strands of dll, where dll = LL(ALT window) - LL(REF window): natural log, summed
over equal-length windows (see dnahnet_cli/genomics/variants.py for how windows are built). Negative means the
model finds the ALT less likely than the REF. dll_fwd scores the REF window and the ALT window that starts where it
starts; dll_rev the reverse complements of the REF window and of the ALT window that ends where it ends, so on
each strand the pair agrees up to the change (docs/score-variants.md says when this equals scoring the
reverse-complemented genome and VCF exactly).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import typer

from dnahnet_cli.genomics.alphabet import reverse_complement
from dnahnet_cli.model.default_model import MODEL_HELP
from dnahnet_cli.commands.common import (BATCH_SIZE, DEVICE, DTYPE, MAX_TOKENS, QUIET, announce, check_strand,
                                         load_engine, sequences_and_engine, split_names)
from dnahnet_cli.errors import DnahnetError, DnahnetRuntimeError
from dnahnet_cli.genomics.fileio import check_one_stdin, check_outputs, output_group, writes_in_place
from dnahnet_cli.genomics.genome import Genome, circular_from_gff, note
from dnahnet_cli.genomics.outputs import (TsvWriter, VcfWriter, open_bcf_output, open_output, provenance,
                                          format_value, is_bgzip_name, tabix_index_tsv)
from dnahnet_cli.commands.reporting import Progress
from dnahnet_cli.tasks.calibration import Background, default_cache_or_none, load_or_build, prepare_cache_dir
from dnahnet_cli.genomics.variants import (
    OK, SKIP_REF_MISMATCH, Allele, VcfInput, check_contigs, expand_record, infer_chrom_map, load_chrom_map,
    ref_status, resolve_contig, write_all_snvs_records,
)

VARIANT_COLUMNS = [
    "chrom", "pos", "id", "ref", "alt", "alt_index", "variant_class", "score", "dll_fwd", "dll_rev",
    "ll_ref", "ll_alt", "window_start0", "window_end", "circular_wrap", "status", "window_len",
    "window_placement", "ref_end",
]
SEQ_COLUMNS = ["name", "length", "n_scored", "sum_ll_fwd", "sum_ll_rev", "sum_ll", "mean_ll_fwd", "mean_ll_rev",
               "mean_ll", "status"]
CALIBRATION_COLUMNS = ["score_percentile", "score_z"]
CALIBRATION_INFO_LINES = [
    '##INFO=<ID=DNAHNET_PCT,Number=A,Type=Float,Description="dnahnet --calibrate: percent of random background '
    'SNVs of the reference whose score is <= this score (low = more damaging than most random SNVs)">',
    '##INFO=<ID=DNAHNET_Z,Number=A,Type=Float,Description="dnahnet --calibrate: (score - background mean) / '
    'background standard deviation">',
]
CHUNK_ALLELES = 256  # alleles scored per engine call (progress granularity, bounded memory)
STRAND_WORDS = {"both": "mean of both strands", "forward": "forward strand only",
                "reverse": "reverse-complement strand only"}


def info_lines(strand: str) -> list[str]:
    """The ##INFO declarations of dnahnet's VCF tags; DNAHNET_DLL's says which strands its value averages."""
    return [
        '##INFO=<ID=DNAHNET_DLL,Number=A,Type=Float,Description="dnahnet log-likelihood ratio LL(ALT)-LL(REF) '
        f'of equal-length windows, natural log, {STRAND_WORDS[strand]}; negative = ALT less likely; '
        '. = not scored">',
        '##INFO=<ID=DNAHNET_STATUS,Number=A,Type=String,Description="dnahnet status per ALT (OK or SKIP_* reason)">',
    ]


def _strand_pairs(strand: str, refs: list[str], alts: list[str],
                  alts_rev: list[str]) -> tuple[list[str], list[str], int]:
    """Windows to score for the chosen strands: forward, then reverse complements (REF with the ALT window that
    ends where it ends, so that read on that strand, too, both start at the same base)."""
    fwd = strand in ("both", "forward")
    rev = strand in ("both", "reverse")
    r = (refs if fwd else []) + ([reverse_complement(s) for s in refs] if rev else [])
    a = (alts if fwd else []) + ([reverse_complement(s) for s in alts_rev] if rev else [])
    return r, a, len(refs)


def score_alleles(engine: Any, alleles: list[Allele], strand: str) -> list[dict[str, Any]]:
    """Score the OK alleles (both strands by default); returns one output row per allele."""
    jobs = [a for a in alleles if a.status == OK]
    values: dict[int, dict[str, Any]] = {}
    if jobs:
        refs, alts, m = _strand_pairs(strand, [a.windows.ref for a in jobs], [a.windows.alt for a in jobs],
                                      [a.windows.alt_rev for a in jobs])
        ll_ref, ll_alt = (np.asarray(x, dtype=np.float64) for x in engine.loglik_pairs(refs, alts))
        for i, a in enumerate(jobs):
            idx = {"both": (i, m + i), "forward": (i,), "reverse": (i,)}[strand]
            r, al = ll_ref[list(idx)], ll_alt[list(idx)]
            dll = al - r
            values[id(a)] = {
                "dll_fwd": dll[0] if strand != "reverse" else None,
                "dll_rev": dll[-1] if strand != "forward" else None,
                "score": float(dll.mean()), "ll_ref": float(r.mean()), "ll_alt": float(al.mean()),
            }
    rows = []
    for a in alleles:
        row = {"chrom": a.chrom, "contig": a.contig, "pos": a.pos, "id": a.id, "ref": a.ref, "alt": a.alt,
               "alt_index": a.alt_index,
               "variant_class": a.variant_class, "status": a.status,
               "ref_end": a.ref_end}  # the tabix index spans the record, as `tabix -p vcf` does
        if a.windows is not None:
            w = a.windows
            row.update(window_start0=w.start0, window_end=w.end, circular_wrap=w.circular_wrap, window_len=w.n,
                       window_placement=w.placement)
        row.update(values.get(id(a), {}))
        rows.append(row)
    return rows


def _circular_names(genome: Genome, names: Iterable[str], gff: Optional[Path], all_circular: bool,
                    rename: dict[str, str]) -> set[str]:
    if all_circular:
        return set(genome.names)
    wanted = {rename.get(n, n) for n in split_names(names)}
    if gff is not None:
        wanted |= {n for n in circular_from_gff(gff, rename) if n in genome}
    return wanted


TSV_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bgz", ".txt", ".txt.gz", ".tab")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz")


def _output_format(fmt: str, output: str) -> str:
    """tsv, vcf or bcf: --format when given, else from the -o name (stdout, or a pipe or device such as
    `-o >(...)` or /dev/null: tsv); an unknown suffix is an error rather than a TSV under a misleading name."""
    if fmt != "auto":
        if fmt not in ("tsv", "vcf", "bcf"):
            raise DnahnetError(f"--format must be auto, tsv, vcf or bcf, not {fmt!r}")
        return fmt
    name = output.lower()
    if output == "-" or name.endswith(TSV_SUFFIXES) or writes_in_place(Path(output)):
        return "tsv"
    if name.endswith(VCF_SUFFIXES):
        return "vcf"
    if name.endswith(".bcf"):
        return "bcf"
    raise DnahnetError(f"--output {output}: unknown file type; name it .tsv[.gz], .vcf[.gz] or .bcf, "
                       "or give --format tsv|vcf|bcf")


# a VCF contig name (VCF 4.3, section 1.4.7): what --all-snvs can write as CHROM for htslib to read back
_VCF_CONTIG = re.compile(r"[0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*")


@contextlib.contextmanager
def _variants_file(vcf: Optional[str], all_snvs: Sequence[str], genome: Genome, quiet: bool) -> Iterator[str]:
    """The VCF to read: the user's, or for --all-snvs a temporary VCF of every SNV of the regions, in the order
    given (removed after)."""
    if not all_snvs:
        yield str(vcf)
        return
    import tempfile

    from dnahnet_cli.tasks.segment import parse_region

    regions = [(text, parse_region(text, genome.lengths, "--all-snvs")) for text in all_snvs]
    for text, region in regions:
        if not _VCF_CONTIG.fullmatch(region.chrom):
            raise DnahnetError(f"--all-snvs {text}: the FASTA record name {region.chrom!r} cannot be a VCF contig "
                               "name (no commas, angle brackets, brackets or whitespace; VCF 4.3, 1.4.7): rename it")
    if not quiet:
        spans = sorted((r.chrom, r.start0, r.end, text) for text, r in regions)
        for (c1, _, e1, t1), (c2, s2, _, t2) in zip(spans, spans[1:]):
            if c1 == c2 and s2 < e1:
                note(f"warning: --all-snvs {t1} and {t2} overlap: their shared SNVs are scored, and listed, twice")
    try:  # the records go to a temporary VCF (~35 bytes a base) in $TMPDIR; the folder is made here
        folder = tempfile.TemporaryDirectory(prefix="dnahnet-all-snvs-")
    except OSError as exc:
        raise DnahnetRuntimeError(f"--all-snvs needs a temporary folder for its records ({exc}); set TMPDIR to a "
                                  "writable folder") from None
    with folder as tmp:
        path = Path(tmp) / "all-snvs.vcf"
        with open(path, "w", encoding="utf-8") as fh:
            contigs = dict.fromkeys(region.chrom for _, region in regions)
            fh.write("##fileformat=VCFv4.2\n" + "".join(f"##contig=<ID={c},length={genome.length(c)}>\n"
                                                       for c in contigs)
                     + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
            for text, region in regions:
                written, left_out = write_all_snvs_records(fh, genome, region.chrom, region.start0, region.end)
                if not written:
                    raise DnahnetError(f"--all-snvs {text}: no A, C, G or T base in the region (nothing to mutate)")
                if not quiet:
                    note(f"--all-snvs {text}: {3 * written:,} SNVs at {written:,} positions"
                         + (f" ({left_out:,} positions that are not A, C, G or T left out)" if left_out else ""))
        yield str(path)


def run_score_variants(ref: str, vcf: Optional[str], output: str, model: str, window: Optional[int], strand: str,
                       strict: bool, chrom_map: Optional[Path], gff: Optional[Path], circular: list[str],
                       all_circular: bool, fmt: str, no_meta: bool, device: str, dtype: str, batch_size: int,
                       max_tokens: int, quiet: bool, keep_info: Optional[str] = None, na: str = "NA",
                       auto_chr: bool = False, calibrate: Optional[int] = None, calibrate_seed: int = 0,
                       calibrate_cache: Optional[Path] = None, all_snvs: Sequence[str] = ()) -> Counter:
    """The whole score-variants pipeline; returns the count of each status."""
    check_strand(strand)
    all_snvs = list(all_snvs or ())
    if (vcf is None) == (not all_snvs):
        raise DnahnetError("give a VCF, or --all-snvs REGION to score every SNV of a region" +
                           (", not both" if vcf is not None else ""))
    if all_snvs and (chrom_map or auto_chr):
        raise DnahnetError("--chrom-map and --auto-chr rename VCF contigs; --all-snvs names the FASTA's own")
    if all_snvs and keep_info:
        raise DnahnetError("--keep-info copies a VCF's INFO fields; --all-snvs records have none")
    check_outputs({"--output": output}, inputs={"REF": ref, "VCF": vcf, "--gff": gff, "--chrom-map": chrom_map})
    fmt = _output_format(fmt, output)
    if window is not None and window < 1:
        raise DnahnetError(f"--window must be a positive number of bases, not {window}")
    check_one_stdin({"REF": ref, "VCF": vcf, "--gff": gff})
    if calibrate is not None:
        calibrate_cache = (prepare_cache_dir(calibrate_cache) if calibrate_cache else
                           default_cache_or_none((lambda _: None) if quiet else note))
    genome = Genome.open(ref, quiet=quiet)
    bases = sum(genome.lengths.values())
    if calibrate is not None and calibrate > bases:  # refused before the model loads, not after sampling
        raise DnahnetError(f"--calibrate {calibrate:,}: {ref} has only {bases:,} bases to place background SNVs at")
    rename = load_chrom_map(chrom_map) if chrom_map else {}
    genome.set_circular(_circular_names(genome, circular, gff, all_circular, rename))
    with _variants_file(vcf, all_snvs, genome, quiet) as vcf_path, VcfInput(vcf_path) as vin:
        keep = info_keys(keep_info, vin.header, vin.path)
        if keep_info and fmt != "tsv":
            raise DnahnetError("--keep-info is for TSV output (VCF and BCF output keep every INFO field)")
        # Pass 1: syntax and contigs (and, under --strict, REF bases), all before any output is written.
        used: dict[str, None] = {}
        n_records = 0
        for _, rec in vin.records():
            n_records += 1
            used.setdefault(rec.chrom)
        if auto_chr:
            rename = _auto_chr(vin, list(used), genome, rename, quiet)
        missing = check_contigs(vin.path, list(used), vin.contig_lengths(), genome, rename, strict)
        if missing and not quiet:
            note(f"warning: records on {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''} get "
                 f"SKIP_NO_CONTIG: not in {ref} (--chrom-map or --auto-chr rename contigs; --strict makes this an "
                 "error)")
        if strict:
            for line, rec in vin.records():
                ref_status(rec, line, resolve_contig(rec.chrom, genome, rename), genome, vin.path, strict=True)
        if n_records == 0 and not quiet:
            note(f"{vin.path}: no variant records")

        engine = load_engine(model, device, dtype, batch_size, max_tokens)
        window = window or int(engine.window)
        announce(engine, quiet, window)
        background = None
        if calibrate is not None:
            background = load_or_build(genome, engine, lambda alleles: score_alleles(engine, alleles, strand),
                                       window, strand, calibrate, calibrate_seed,
                                       calibrate_cache, note=(lambda _: None) if quiet else note,
                                       progress=Progress("calibration SNVs", calibrate, quiet).update)
        meta = [] if no_meta else provenance(
            {"dnahnet_reference": ref, "dnahnet_vcf": vcf if vcf is not None else "none",
             **({"dnahnet_all_snvs": ";".join(all_snvs)} if all_snvs else {}),
             "dnahnet_window": window, "dnahnet_strand": strand,
             "dnahnet_score": "score = LL(ALT window) - LL(REF window) in nats (natural log), mean of the strands "
                              "scored; negative = ALT less likely than REF",
             "dnahnet_circular": ",".join(sorted(genome.circular)) or "none",
             **({"dnahnet_calibration": background.describe()} if background else {})}, engine.provenance)
        columns = VARIANT_COLUMNS + (CALIBRATION_COLUMNS if background else []) + [f"info_{k}" for k in keep]
        counts: Counter = Counter()
        off_centre = done = 0
        progress = Progress("score-variants records", n_records, quiet)
        with (open_bcf_output(output) if fmt == "bcf" else open_output(output)) as fh:
            declared = info_lines(strand) + (CALIBRATION_INFO_LINES if background else [])
            writer = (VcfWriter(fh, vin.header_text(), declared, meta, note=None if quiet else note)
                      if fmt in ("vcf", "bcf") else TsvWriter(fh, columns, meta, na=na))
            for chunk in _chunked_records(vin, genome, rename, window, strict, strand):
                for row in _write_chunk(writer, engine, chunk, strand, keep, background):
                    counts[row["status"]] += 1
                    off_centre += _moved_by_a_linear_end(row, genome)
                done += len(chunk)
                progress.update(done)
            if isinstance(writer, VcfWriter):
                writer.close()
    if fmt in ("tsv", "vcf") and is_bgzip_name(output) and not writes_in_place(Path(output)):  # not a pipe
        index = (tabix_index_tsv(output, end_col=VARIANT_COLUMNS.index("ref_end")) if fmt == "tsv" else
                 tabix_index_tsv(output, preset="vcf"))
        if not quiet:
            unsorted = "the --all-snvs regions are not in order" if all_snvs else "the VCF is not"
            note(f"tabix index {index}" if index else f"{output}: rows are not position-sorted ({unsorted}), "
                 "so no tabix index was written")
    if not quiet:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        note(f"score-variants: {n_records} records, {sum(counts.values())} ALT alleles ({summary or 'none'}) "
             f"in {progress.elapsed():.1f} s")
        if counts and not counts.get(OK):
            note(f"warning: no ALT allele was scored: every one was skipped ({summary}; the status column says why)")
        if counts.get(SKIP_REF_MISMATCH):
            note(f"{counts[SKIP_REF_MISMATCH]} ALT alleles skipped: REF differs from {ref} "
                 "(--strict makes this an error)")
        if off_centre:
            note(f"{off_centre} ALT alleles near the ends of linear contigs got off-centre windows; bacterial "
                 "replicons are usually circular (--gff, --circular NAME or --all-circular)")
    return counts


def _moved_by_a_linear_end(row: dict[str, Any], genome: Genome) -> bool:
    """An off-centre window that a linear contig's end pushed inwards (what the circular hint is about); windows
    off centre for a long insertion, anywhere on any contig, are not."""
    if row.get("window_placement") != "off_centre":
        return False
    contig = row["contig"]  # the FASTA's name (after --chrom-map)
    return not genome.is_circular(contig) and (row["window_start0"] == 0 or row["window_end"] == genome.length(contig))


def _auto_chr(vin: VcfInput, used: list[str], genome: Genome, rename: dict[str, str],
              quiet: bool) -> dict[str, str]:
    """--chrom-map plus the renames --auto-chr infers, each said on stderr."""
    inferred = infer_chrom_map(used, genome, vin.contig_lengths(), rename)
    if not quiet:
        for old, (new, why) in inferred.items():
            note(f"--auto-chr: VCF contig {old} -> FASTA {new} ({why})")
    return {**rename, **{old: new for old, (new, _) in inferred.items()}}


def _chunked_records(vin: VcfInput, genome: Genome, rename: dict[str, str], window: int, strict: bool,
                     strand: str) -> Iterable[list[tuple[Any, list[Allele], str]]]:
    """(record, its alleles, its line as written) in input order, in chunks of about CHUNK_ALLELES alleles."""
    chunk: list[tuple[Any, list[Allele], str]] = []
    n = 0
    for line, rec, text in vin.records_with_text():
        alleles = expand_record(rec, line, genome, rename, window, vin.path, strict=strict, strand=strand,
                                text=text)
        chunk.append((rec, alleles, text))
        n += len(alleles)
        if n >= CHUNK_ALLELES:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def info_keys(spec: Optional[str], header: Any, vcf_path: str) -> list[str]:
    """--keep-info: 'all' = every INFO key the header declares; else comma-separated keys, each declared."""
    if not spec:
        return []
    declared = list(header.info)
    if spec.strip() == "all":
        return declared
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in keys if k not in declared]
    if unknown:
        raise DnahnetError(f"--keep-info {','.join(unknown)}: not declared in the header of {vcf_path} "
                           f"(declared: {', '.join(declared) or 'none'})")
    return keys


def _info_value(rec: Any, key: str, alt_index: int, text: str) -> Any:
    """INFO value for one ALT: the ALT's own entry for Number=A/R fields (missing when the record gives it none),
    the whole value otherwise. `text` is the record's line as read: END, and values that are not UTF-8, come
    from there."""
    if key == "END":  # htslib moves END out of rec.info (into rec.stop): read it from the record's text
        given = _info_text(text, key)
        return int(given) if given and given.lstrip("-").isdigit() else None
    if key not in rec.info:
        return 0 if rec.header.info[key].type == "Flag" else None
    number = rec.header.info[key].number
    try:
        value = rec.info[key]
    except UnicodeDecodeError:  # pysam decodes strictly; the text keeps the bytes (written back as read)
        raw = _info_text(text, key) or ""
        value = tuple(raw.split(",")) if number in ("A", "R") or "," in raw else raw
    if number in ("A", "R"):
        values = value if isinstance(value, tuple) else (value,)
        k = alt_index - 1 if number == "A" else alt_index
        if not 0 <= k < len(values):  # a miscounted field: this ALT has no value of its own
            return None
        value = values[k]
    elif isinstance(value, tuple):
        return ",".join("." if v is None else format_value(v) for v in value)  # floats: 7 significant digits
    return 1 if value is True else value


def _info_text(text: str, key: str) -> str | None:
    """The value of INFO `key` as written in a record's line (None when absent)."""
    given = [f[len(key) + 1:] for f in text.rstrip("\r\n").split("\t")[7].split(";") if f.startswith(f"{key}=")]
    return given[0] if given else None


def _write_chunk(writer: TsvWriter | VcfWriter, engine: Any, chunk: list[tuple[Any, list[Allele], str]],
                 strand: str, keep_info: list[str] = (), background: Optional[Background] = None) -> list[dict[str, Any]]:
    """Score a chunk and write it: one TSV row per ALT, or each VCF record with per-ALT INFO values."""
    rows = score_alleles(engine, [a for _, alleles, _ in chunk for a in alleles], strand)
    if background is not None:
        for row in rows:
            row.update(score_percentile=background.percentile(row.get("score")), score_z=background.z(row.get("score")))
    if isinstance(writer, TsvWriter):
        if keep_info:
            records = [(rec, text) for rec, alleles, text in chunk for _ in alleles]
            for row, (rec, text) in zip(rows, records):
                row.update({f"info_{k}": _info_value(rec, k, row["alt_index"], text) for k in keep_info})
        for row in rows:
            writer.write(row)
        return rows
    it = iter(rows)
    for _, alleles, text in chunk:
        mine = [next(it) for _ in alleles]
        info = {"DNAHNET_DLL": [r.get("score") for r in mine], "DNAHNET_STATUS": [r["status"] for r in mine]}
        if background is not None:
            info.update(DNAHNET_PCT=[r["score_percentile"] for r in mine], DNAHNET_Z=[r["score_z"] for r in mine])
        writer.write(text, info)
    return rows


# -- score-seqs -------------------------------------------------------------------------------------
def seq_logprobs(engine: Any, seqs: list[str], window: int, context: int, entropy: bool = False) -> list[np.ndarray]:
    """Per-base log p (with `entropy`: (2, L) arrays, log p and the prediction's entropy in bits): sequences up to
    `window` bases are batched; longer ones go through overlapping windows (each base scored with at least
    `context` bases of left context, see engine.logprobs_long)."""
    short = [i for i, s in enumerate(seqs) if len(s) <= window]
    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    for i, lp in zip(short, engine.logprobs([seqs[i] for i in short], entropy) if short else []):
        out[i] = np.asarray(lp, dtype=np.float64)
    for i, s in enumerate(seqs):
        if len(s) > window:
            out[i] = np.asarray(engine.logprobs_long(s, window, context, entropy), dtype=np.float64)
    return out


def run_score_seqs(seqs_path: str, output: str, model: str, per_base: Optional[str], window: Optional[int],
                   context: Optional[int], strand: str, no_meta: bool, device: str, dtype: str, batch_size: int,
                   max_tokens: int, quiet: bool, sort: str = "name", entropy: Optional[str] = None) -> int:
    """Score every sequence of a FASTA; returns the number of sequences. The TSV follows the FASTA's order; the
    bedGraphs are sorted by record name in byte order (`sort -k1,1 -k2,2n` order) unless sort == "none"."""
    from dnahnet_cli.tasks.batching import budget_ranges  # imports torch: not at the top (`--help` stays fast)

    check_strand(strand)
    if sort not in ("name", "none"):
        raise DnahnetError(f"--sort must be name or none, not {sort!r}")
    check_outputs({"--output": output, "--per-base": per_base, "--entropy": entropy}, inputs={"SEQS": seqs_path})
    records, engine, window, context = sequences_and_engine(seqs_path, model, device, dtype, batch_size, max_tokens,
                                                            window, context, quiet)
    meta = [] if no_meta else provenance({"dnahnet_input": seqs_path, "dnahnet_window": window,
                                          "dnahnet_context": context, "dnahnet_strand": strand,
                                          "dnahnet_units": "log-likelihoods in nats (natural log); higher = more likely"},
                                         engine.provenance)
    progress = Progress("score-seqs sequences", len(records), quiet)
    tracks = per_base or entropy
    order = (sorted(range(len(records)), key=lambda i: records[i][0].encode()) if tracks and sort == "name"
             else list(range(len(records))))  # scoring order = bedGraph order; TSV rows are put back in input order
    rows: dict[str, dict] = {}
    with output_group() as outputs:  # all files stay temporary until every one is written
        fh = outputs.enter_context(open_output(output))
        bg = outputs.enter_context(open_output(per_base)) if per_base else None
        eg = outputs.enter_context(open_output(entropy)) if entropy else None
        writer = TsvWriter(fh, SEQ_COLUMNS, meta)
        ordered = [records[i] for i in order]
        for lo, hi in budget_ranges([len(s) for _, s in ordered], SEQ_CHUNK_BASES):
            names = [n for n, _ in ordered[lo:hi]]
            seqs = [s.upper() for _, s in ordered[lo:hi]]
            both = eg is not None  # (2, L) arrays: log p, then entropy
            fwd = seq_logprobs(engine, seqs, window, context, both) if strand != "reverse" else [None] * len(seqs)
            rev = ([x[..., ::-1] for x in seq_logprobs(engine, [reverse_complement(s) for s in seqs], window,
                                                         context, both)]
                   if strand != "forward" else [None] * len(seqs))
            for name, seq, f, r in zip(names, seqs, fwd, rev):
                if both:  # split each strand's (2, L) array into its log p and entropy rows
                    bits = [x[1] for x in (f, r) if x is not None]
                    f, r = (None if x is None else x[0] for x in (f, r))
                per = _strand_mean([x for x in (f, r) if x is not None], len(seq))
                rows[name] = _seq_row(name, len(seq), f, r, per)
                if bg is not None:
                    _write_bedgraph(bg, name, per)
                if eg is not None:
                    _write_bedgraph(eg, name, _strand_mean(bits, len(seq)))
            progress.update(hi)
        for name, _ in records:
            writer.write(rows[name])
    statuses = Counter(row["status"] for row in rows.values())
    if not quiet and not statuses.get(OK):  # as score-variants says when it scored nothing
        summary = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        note(f"warning: no sequence was scored: every one was skipped ({summary}; the status column says why)")
    return len(records)


SEQ_CHUNK_BASES = 1 << 20  # sequences scored together per engine call


def _strand_mean(strands: list[np.ndarray], length: int) -> np.ndarray:
    """Per-base mean of the strands' log p; NaN where no strand scores the base (N/IUPAC)."""
    if not strands or length == 0:
        return np.zeros(0)
    stack = np.vstack(strands)
    ok = np.isfinite(stack)
    n = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _seq_row(name: str, length: int, fwd: np.ndarray | None, rev: np.ndarray | None, per: np.ndarray) -> dict:
    n_scored = int(np.isfinite(per).sum())
    row: dict[str, Any] = {"name": name, "length": length, "n_scored": n_scored,
                           "status": OK if n_scored else ("SKIP_EMPTY" if not length else "SKIP_NO_ACGT")}
    if n_scored:
        for suffix, arr in (("_fwd", fwd), ("_rev", rev), ("", per)):
            if arr is not None:
                total = float(np.nansum(arr))
                row[f"sum_ll{suffix}"], row[f"mean_ll{suffix}"] = total, total / n_scored
    return row


def _write_bedgraph(fh, name: str, values: np.ndarray) -> None:
    """4-column bedGraph, 0-based half-open, one line per scored base (N/IUPAC bases are left out)."""
    pos = np.flatnonzero(np.isfinite(values))
    fh.writelines(f"{name}\t{p}\t{p + 1}\t{values[p]:.6g}\n" for p in pos.tolist())


# -- CLI ------------------------------------------------------------------------------------------
HELP = {
    "ref": "Reference FASTA (plain, gzip, or bgzip with .fai/.gzi).",
    "vcf": "Variants: .vcf, .vcf.gz (bgzip or gzip), .bcf, or - for stdin (omit with --all-snvs).",
    "output": "Output file: *.tsv[.gz|.bgz], *.txt[.gz], *.tab = TSV, *.vcf[.gz|.bgz] = VCF, *.bcf = BCF (*.gz, *.bgz = bgzip); - = stdout (TSV).",
    "window": "Window in bases, >= 16 (default: the model's training length).",
    "strand": "both (mean of forward and reverse complement), forward or reverse.",
    "chrom_map": "Rename VCF contigs: 'old new' lines (bcftools --rename-chrs format).",
    "gff": "GFF3 whose region features mark Is_circular=true replicons (gzip ok; - = stdin).",
    "circular": "Circular contig name(s); repeat or comma-separate.",
    "seq_window": "Longest stretch the model sees at once (default: the model's training length).",
    "context": "Minimum left context for sequences longer than the window (default: window/2).",
}


def register(app: typer.Typer) -> None:
    @app.command("score-variants")
    def score_variants_cmd(
        ref: str = typer.Argument(..., help=HELP["ref"]),
        vcf: Optional[str] = typer.Argument(None, help=HELP["vcf"]),
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        output: str = typer.Option("-", "--output", "-o", help=HELP["output"]),
        all_snvs: list[str] = typer.Option([], "--all-snvs", help="Instead of a VCF: score every SNV of REGION (CHROM or CHROM:START-END, 1-based, inclusive; repeat for more regions), three ALTs per A/C/G/T base, each scored as if a VCF had listed it (in silico saturation mutagenesis)."),
        fmt: str = typer.Option("auto", "--format", help="auto (from the -o name, as --output lists; stdout: tsv), tsv, vcf or bcf."),
        window: Optional[int] = typer.Option(None, "--window", "-w", min=16, help=HELP["window"]),
        strand: str = typer.Option("both", "--strand", help=HELP["strand"]),
        strict: bool = typer.Option(False, "--strict", help="Exit with an error (code 2) on any REF mismatch, REF outside its contig (POS 0 included) or contig missing from the FASTA."),
        chrom_map: Optional[Path] = typer.Option(None, "--chrom-map", help=HELP["chrom_map"]),
        gff: Optional[Path] = typer.Option(None, "--gff", help=HELP["gff"]),
        circular: list[str] = typer.Option([], "--circular", help=HELP["circular"]),
        all_circular: bool = typer.Option(False, "--all-circular", help="Treat every contig as circular."),
        no_meta: bool = typer.Option(False, "--no-meta", help="Leave out the ## provenance lines."),
        na: str = typer.Option("NA", "--na", help="TSV missing-value token (e.g. '.' for bcftools annotate)."),
        keep_info: Optional[str] = typer.Option(None, "--keep-info", help="TSV: copy these INFO keys (comma-separated, or 'all') into info_KEY columns; Number=A/R fields give each ALT its own value."),
        auto_chr: bool = typer.Option(False, "--auto-chr", help="Rename VCF contigs the FASTA lacks when exactly one FASTA record fits: chr prefix, accession version, or a unique ##contig length (RefSeq/GenBank pairs); each rename is said on stderr."),
        calibrate: Optional[int] = typer.Option(None, "--calibrate", min=2, help="Also report each score's percentile and z-score against N random SNVs of the reference (costs as much as scoring N SNVs once; cached), e.g. --calibrate 1000."),
        calibrate_seed: int = typer.Option(0, "--calibrate-seed", min=0, help="Seed of the --calibrate background."),
        calibrate_cache: Optional[Path] = typer.Option(None, "--calibrate-cache", help="Directory of cached --calibrate backgrounds (default: $DNAHNET_CACHE_DIR, else $XDG_CACHE_HOME/dnahnet, else ~/.cache/dnahnet)."),
        device: str = DEVICE,
        dtype: str = DTYPE,
        batch_size: int = BATCH_SIZE,
        max_tokens: int = MAX_TOKENS,
        quiet: bool = QUIET,
    ) -> None:
        """Score every ALT allele of a VCF: score = LL(ALT window) - LL(REF window), mean of both strands.

        Windows are length-matched, so indels carry no length bias; circular replicons wrap across the
        origin. Unscorable ALTs (symbolic, breakend, *, ., REF mismatch, ...) keep a row with a status.

        Example: dnahnet score-variants ref.fa.gz calls.vcf.gz --model models/small -o scores.tsv
        """
        run_score_variants(ref, vcf, output, model, window, strand, strict, chrom_map, gff, circular, all_circular,
                           fmt, no_meta, device, dtype, batch_size, max_tokens, quiet, keep_info, na,
                           auto_chr=auto_chr, calibrate=calibrate, calibrate_seed=calibrate_seed,
                           calibrate_cache=calibrate_cache, all_snvs=all_snvs)

    @app.command("score-seqs")
    def score_seqs_cmd(
        seqs: str = typer.Argument(..., help="FASTA of sequences to score (plain or gzip; - = stdin)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
        output: str = typer.Option("-", "--output", "-o", help="Per-sequence TSV; - = stdout."),
        per_base: Optional[str] = typer.Option(None, "--per-base", help="Also write log p of each base as bedGraph."),
        window: Optional[int] = typer.Option(None, "--window", "-w", min=16, help=HELP["seq_window"]),
        context: Optional[int] = typer.Option(None, "--context", min=0, help=HELP["context"]),
        strand: str = typer.Option("both", "--strand", help=HELP["strand"]),
        entropy: Optional[str] = typer.Option(None, "--entropy", help="Also write, as bedGraph, the entropy in bits (0 = certain, 2 = uniform) of the model's prediction at each base, before reading it (strands averaged as --per-base)."),
        sort: str = typer.Option("name", "--sort", help="--per-base/--entropy bedGraph order: name (record names in byte order, as sort -k1,1 -k2,2n expects) or none (FASTA order)."),
        no_meta: bool = typer.Option(False, "--no-meta", help="Leave out the ## provenance lines."),
        device: str = DEVICE,
        dtype: str = DTYPE,
        batch_size: int = BATCH_SIZE,
        max_tokens: int = MAX_TOKENS,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    ) -> None:
        """Log-likelihood of each sequence: sum and mean per base, forward, reverse complement, averaged.

        --per-base writes a 4-column bedGraph (0-based) of log p(base | preceding bases), the mean of the
        two strands by default (the reverse strand's value for a base is that of its complement).

        Example: dnahnet score-seqs contigs.fa --model models/small --per-base ll.bedgraph > ll.tsv
        """
        run_score_seqs(seqs, output, model, per_base, window, context, strand, no_meta, device, dtype, batch_size,
                       max_tokens, quiet, sort, entropy)
