"""Nucleotide alphabet policy: case, IUPAC, invalid letters, reverse complement."""

import numpy as np
import pytest

from dnahnet_cli.genomics.alphabet import A, C, G, N, T, AlphabetError, decode, encode, reverse_complement, reverse_complement_ids


def test_encoding_is_case_insensitive_and_maps_iupac_to_n():
    assert encode("ACGTacgt").tolist() == [A, C, G, T, A, C, G, T]
    assert encode("NRYSWKMBDHVnry").tolist() == [N] * 14
    assert encode("U").tolist() == [T]
    assert decode(encode("acgtn")) == "ACGTN"


@pytest.mark.parametrize("seq,pos,char", [("ACGX", 4, "X"), ("AC-T", 3, "-"), ("MKLVE", 3, "L"), ("ACÑGT", 3, "Ñ")])
def test_invalid_letters_are_reported_with_position(seq, pos, char):
    with pytest.raises(AlphabetError) as err:
        encode(seq)
    assert err.value.position + 1 == pos and err.value.char == char


def test_reverse_complement():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("acgR") == "Ycgt"
    ids = encode("AACGTN")
    assert np.array_equal(reverse_complement_ids(ids), encode("NACGTT"))
