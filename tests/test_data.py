"""Training data: FASTA discovery, the memory-mapped token cache, windows, sampling, sharding (model-free)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dnahnet_cli.genomics.alphabet import BOS, PAD, encode, reverse_complement_ids
from dnahnet_cli.train.corpus import (BatchPrefetcher, ShardedLoader, WindowSampler, discover_fasta, encode_file, file_windows, open_corpus,
                              val_indices)
from dnahnet_cli.errors import DnahnetError
from dnahnet_cli.genomics.fasta import iter_fasta
from conftest import MISSING_DATA, SHARED_DATA

DATA = SHARED_DATA
VAL_GENOME = DATA / "corpus" / "val" / "GCF_002356215.1.fa.gz"  # 3.1 Mb, 5 records
PLASMIDS = DATA / "corpus" / "train" / "NC_016833.1.fa.gz"  # 230 kb, 3 records
needs_data = pytest.mark.skipif(not VAL_GENOME.exists(), reason=MISSING_DATA)


def _write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def real_records() -> list[tuple[str, str]]:
    if not PLASMIDS.exists():
        pytest.skip(MISSING_DATA)
    return list(iter_fasta(PLASMIDS))


def test_discover_files_and_directories(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    for name in ("b.fa", "a.fasta.gz", "sub/c.fna", "notes.txt", "x.fa.fai"):
        (d / name).write_text(">r\nACGT\n")
    found = discover_fasta([d, d / "b.fa"])  # the explicit duplicate is dropped
    assert [p.relative_to(d).as_posix() for p in found] == ["a.fasta.gz", "b.fa", "sub/c.fna"]
    with pytest.raises(DnahnetError, match="file not found"):
        discover_fasta([tmp_path / "missing.fa"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DnahnetError, match="no FASTA files"):
        discover_fasta([tmp_path / "empty"])


def test_symlinked_folders_in_a_data_directory_are_searched_once(tmp_path):
    """A corpus assembled from links to other folders: Path.rglob skipped them (silently less data); a link back up
    the tree must not loop or count a file twice."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.fa").write_text(">a\nACGT\n")
    (tmp_path / "real" / "sub" / "b.fa").write_text(">b\nACGT\n")
    (tmp_path / "corpus" / "linked").symlink_to(tmp_path / "real" / "sub")
    (tmp_path / "real" / "sub" / "loop").symlink_to(tmp_path / "corpus")
    found = discover_fasta([tmp_path / "corpus"])
    assert [f.name for f in found] == ["a.fa", "b.fa"]


@needs_data
def test_cache_is_one_byte_per_base_and_matches_the_fasta(tmp_path, real_records):
    calls = []
    ef = encode_file(PLASMIDS, tmp_path, log=calls.append)
    assert isinstance(ef.tokens, np.memmap) and ef.tokens.dtype == np.uint8
    total = sum(len(s) for _, s in real_records)
    assert ef.tokens.size == total
    cache_files = list(tmp_path.glob("*.u8"))
    assert len(cache_files) == 1 and cache_files[0].stat().st_size == total  # 1 byte per base on disk
    assert ef.names == [n for n, _ in real_records]
    for (_, seq), off, n in zip(real_records, ef.offsets, ef.lengths):
        assert n == len(seq)
        np.testing.assert_array_equal(ef.tokens[off:off + n], encode(seq))
    # second open: served from the cache, no re-encoding
    again = encode_file(PLASMIDS, tmp_path, log=calls.append)
    assert len(calls) == 1
    np.testing.assert_array_equal(again.tokens, ef.tokens)


def test_cache_key_follows_size_and_mtime(tmp_path):
    f = _write(tmp_path / "g.fa", ">r1\nACGTACGT\n")
    cache = tmp_path / "cache"
    calls = []
    encode_file(f, cache, log=calls.append)
    encode_file(f, cache, log=calls.append)
    assert len(calls) == 1
    _write(f, ">r1\nACGTACGTTT\n")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    ef = encode_file(f, cache, log=calls.append)
    assert len(calls) == 2 and ef.tokens.size == 10


def test_letter_policy_lowercase_iupac_u(tmp_path):
    f = _write(tmp_path / "g.fa.gz", ">r1 soft-masked\nacgtNRYu\n>r2\nACGT\n", gz=True)
    ef = encode_file(f, tmp_path / "c")
    np.testing.assert_array_equal(ef.tokens[:8], encode("ACGTNNNT"))
    assert ef.names == ["r1", "r2"]


@pytest.mark.parametrize("text,msg", [
    ("", "empty FASTA"),
    ("hello world\nthis is not fasta\n", "not a FASTA file"),
    (">prot\nMKVLEFIPQ\n", "protein"),
])
def test_bad_fasta_gives_clear_error_and_no_cache(tmp_path, text, msg):
    f = _write(tmp_path / "bad.fa", text)
    cache = tmp_path / "cache"
    with pytest.raises(DnahnetError, match=msg) as err:
        open_corpus([f], cache, 64)
    assert "bad.fa" in str(err.value)
    assert not list(cache.glob("*.json")) and not list(cache.glob("*.u8"))  # nothing half-written


def test_windows_policy(tmp_path):
    seq_len, min_len = 11, 4  # 10 nt per window
    recs = {
        "long": "ACGT" * 6 + "AC",  # 26 nt -> 10, 10, 6
        "tail": "A" * 12,  # 12 nt -> 10, tail of 2 dropped (< min_len)
        "short": "ACG",  # shorter than min_len: skipped
        "gappy": "N" * 8 + "AC" + "ACGTACGTAC",  # first window 80% N: dropped
    }
    f = _write(tmp_path / "g.fa", "".join(f">{k}\n{v}\n" for k, v in recs.items()))
    ef = encode_file(f, tmp_path / "c")
    win, st = file_windows(ef, seq_len, min_len, max_n_frac=0.5)
    rec_of = np.searchsorted(ef.offsets, win["start"], side="right") - 1
    got = [(ef.names[r], int(s - ef.offsets[r]), int(n)) for r, s, n in zip(rec_of, win["start"], win["length"])]
    assert got == [("long", 0, 10), ("long", 10, 10), ("long", 20, 6), ("tail", 0, 10), ("gappy", 10, 10)]
    assert (st.short_records, st.dropped_tails, st.dropped_n, st.windows) == (1, 1, 1, 5)


@needs_data
def test_real_genome_windows_tile_records_without_crossing(tmp_path):
    corpus = open_corpus([VAL_GENOME], tmp_path, seq_len=1024)
    ef = corpus.files[0]
    w = corpus.windows
    assert (w["length"] <= 1023).all() and (w["length"] >= 64).all()
    ends = np.cumsum(ef.lengths)
    rec = np.searchsorted(ends, w["start"], side="right")
    assert (w["start"] + w["length"] <= ends[rec]).all()  # no window crosses a record boundary
    order = np.argsort(w["start"])
    assert (w["start"][order][1:] >= (w["start"] + w["length"])[order][:-1]).all()  # non-overlapping
    assert corpus.stats.window_bases == int(w["length"].sum()) and corpus.stats.window_bases > 0.999 * ef.tokens.size
    # a second open reads the window table from the cache and agrees
    again = open_corpus([VAL_GENOME], tmp_path, seq_len=1024)
    np.testing.assert_array_equal(again.windows, corpus.windows)


def test_seq_len_below_two_is_an_error(tmp_path):
    f = _write(tmp_path / "g.fa", ">r\nACGT\n")
    with pytest.raises(DnahnetError, match="seq-len"):
        open_corpus([f], tmp_path / "c", seq_len=1)


def test_all_short_records_is_an_error(tmp_path):
    f = _write(tmp_path / "g.fa", ">r\nACGT\n")
    with pytest.raises(DnahnetError, match="no training windows"):
        open_corpus([f], tmp_path / "c", seq_len=64, min_length=64)


def test_window_cache_key_keeps_close_n_thresholds_apart(tmp_path):
    """The window cache is keyed by the exact max_n_frac: 0.1 keeps a 10-nt record with one N, 0.09999999 drops
    it, whichever of the two ran first in the same cache directory (a rounded key used to make them share)."""
    f = _write(tmp_path / "g.fa", ">r\nACGTNACGTA\n")
    assert len(open_corpus([f], tmp_path / "c", seq_len=11, min_length=4, max_n_frac=0.1).windows) == 1
    with pytest.raises(DnahnetError, match="no training windows"):
        open_corpus([f], tmp_path / "c", seq_len=11, min_length=4, max_n_frac=0.09999999)


def test_damaged_or_read_only_corpus_caches(tmp_path, monkeypatch):
    """A cut index (JSON) or window table (npz) gave a traceback instead of a rebuild; a cache folder that cannot be
    written gave a PermissionError traceback, even when it already held everything needed."""
    from dnahnet_cli.train import corpus as corpus_mod

    f = _write(tmp_path / "g.fa", ">r\n" + "ACGT" * 50 + "\n")
    cache = tmp_path / "c"
    first = len(open_corpus([f], cache, seq_len=33, min_length=8).windows)
    (idx,) = cache.glob("*.json")
    (win,) = cache.glob("*.npz")
    for path in (idx, win):
        path.write_bytes(path.read_bytes()[:50])
        assert len(open_corpus([f], cache, seq_len=33, min_length=8).windows) == first  # rebuilt
    writable = os.access
    monkeypatch.setattr(corpus_mod.os, "access",  # as another user sees a shared cache (root may write anywhere)
                        lambda p, mode: writable(p, mode) and not (mode & os.W_OK and str(cache) in str(p)))
    assert len(open_corpus([f], cache, seq_len=33, min_length=8).windows) == first  # read-only, complete: fine
    with pytest.raises(DnahnetError, match=r"--cache-dir .*c: not writable, and the corpus is not cached there yet"):
        open_corpus([f], cache, seq_len=65, min_length=8)  # new windows would have to be written


def test_windows_exactly_at_the_n_threshold_are_kept(tmp_path):
    """Windows with more than max_n_frac N are dropped; one exactly at it is kept. 0.57 * 100 is
    56.99999999999999 in floats, so a 100-nt window with 57 N was once dropped at max_n_frac=0.57."""
    f = _write(tmp_path / "g.fa", ">a\n" + "N" * 57 + "A" * 43 + "\n>b\n" + "N" * 29 + "C" * 71 + "\n"
               ">c\n" + "N" * 58 + "A" * 42 + "\n")
    for frac, kept in ((0.57, 2), (0.58, 3), (0.29, 1)):
        corpus = open_corpus([f], tmp_path / "c", seq_len=101, min_length=64, max_n_frac=frac)
        assert len(corpus.windows) == kept, frac


def test_sampler_is_deterministic_epochwise_and_resumable():
    s = WindowSampler(50, seed=3)
    idx, rc = s.take(0, 120)
    for e in range(2):  # every epoch is a permutation
        assert sorted(idx[e * 50:(e + 1) * 50]) == list(range(50))
    assert not np.array_equal(idx[:50], idx[50:100])  # reshuffled per epoch
    fresh = WindowSampler(50, seed=3)
    parts = [fresh.take(a, b - a) for a, b in ((0, 7), (7, 61), (61, 120))]  # any split, any restart point
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), idx)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), rc)
    assert not np.array_equal(WindowSampler(50, seed=4).take(0, 50)[0], idx[:50])
    big = WindowSampler(20000, seed=0).take(0, 20000)[1]
    assert 0.48 < big.mean() < 0.52
    assert not WindowSampler(100, seed=0, rc_prob=0.0).take(0, 100)[1].any()


@needs_data
def test_batches_rc_and_padding(tmp_path):
    corpus = open_corpus([PLASMIDS], tmp_path, seq_len=128)
    short = int(np.argmin(corpus.windows["length"]))
    assert corpus.windows["length"][short] < 127
    ids, mask = corpus.batch([0, short], rc=[True, False])
    assert ids.shape == (2, 128) and (ids[:, 0] == BOS).all()
    np.testing.assert_array_equal(ids[0, 1:].numpy(), reverse_complement_ids(corpus.window(0)))
    n = int(corpus.windows["length"][short])
    assert (ids[1, 1 + n:] == PAD).all() and mask is not None and mask.sum(1).tolist() == [128, n + 1]
    full, none_mask = corpus.batch([0, 1])
    assert none_mask is None and full.dtype.is_floating_point is False


@needs_data
def test_ranks_and_accumulation_see_the_same_global_batch(tmp_path):
    corpus = open_corpus([PLASMIDS], tmp_path, seq_len=64)
    one = ShardedLoader(corpus, WindowSampler(len(corpus), 0), batch_size=3, accum=2, rank=0, world=1)
    ranks = [ShardedLoader(corpus, WindowSampler(len(corpus), 0), batch_size=3, accum=1, rank=r, world=2)
             for r in range(2)]
    assert one.global_batch == ranks[0].global_batch == 6
    for consumed in (0, 6, 12):
        mb = one.micro_batches(consumed)
        for r in range(2):
            (ids_r, _), = ranks[r].micro_batches(consumed)
            assert (mb[r][0] == ids_r).all()
    # consecutive steps never repeat windows within an epoch
    seen = [tuple(ids[:, 1:9].flatten().tolist()) for c in range(0, 60, 6) for ids, _ in one.micro_batches(c)]
    assert len(set(seen)) == len(seen)


def test_val_indices_spread_and_all():
    v = val_indices(1000, 10)
    assert len(v) == 10 and v[0] == 0 and v[-1] == 999 and (np.diff(v) > 90).all()
    assert list(val_indices(5, 0)) == list(range(5))


@needs_data
def test_prefetched_batches_equal_the_loaders(tmp_path):
    """The prefetcher hands out exactly what the loader gives for each position: in sequence (prepared ahead, on its
    worker thread, across an epoch boundary) and after a jump (a resume), where it computes on the spot."""
    corpus = open_corpus([PLASMIDS], tmp_path, seq_len=64)
    loader = ShardedLoader(corpus, WindowSampler(len(corpus), 3, rc_prob=0.5), batch_size=2, accum=2)
    reference = ShardedLoader(corpus, WindowSampler(len(corpus), 3, rc_prob=0.5), batch_size=2, accum=2)
    prefetch = BatchPrefetcher(loader)
    try:
        epoch = len(corpus)
        for consumed in [*range(0, 40, 4), epoch - 4, epoch, epoch + 4, 8, 12]:
            got, want = prefetch.get(consumed), reference.micro_batches(consumed)
            assert len(got) == len(want) == 2
            for (ids, mask), (ids_ref, mask_ref) in zip(got, want):
                assert torch.equal(ids, ids_ref) and (mask is None) == (mask_ref is None)
    finally:
        prefetch.close()
