"""mmapped chunk headers as two glibc versions write them (words captured from live targets).

A 32 MiB bytearray (0x2000001 bytes requested) gets a 0x2001000-byte mapping whose chunk
header size word reads 0x2001002 under glibc 2.36 (pyenv's CPython 3.8-3.13 here) and
0x2000ff2 under glibc 2.43 (Debian's CPython 3.14/3.15): the mapping less 16 bytes.
"""

from __future__ import annotations

import pytest

from memscope.cow.heap_malloc import _mmapped_chunk

START = 0x7F0F14E71000
MAPPING = 0x2001000


class Words:
    """The one word _mmapped_chunk reads: the chunk's size field at START + 8."""

    def __init__(self, size_word: int) -> None:
        self.size_word = size_word

    def u64(self, addr: int) -> int:
        assert addr == START + 8
        return self.size_word


@pytest.mark.parametrize(
    ("word", "size"),
    [
        (0x2001002, 0x2001000),  # glibc 2.36
        (0x2000FF2, 0x2000FF0),  # glibc 2.43
        (0x2000FF3, 0),  # PREV_INUSE set too: not an mmapped chunk header
        (0x2000FE2, 0),  # neither a page multiple nor one less 16
        (0x2001006, 0),  # NON_MAIN_ARENA: a thread arena chunk
        (0x4002002, 0),  # runs past the mapping
    ],
)
def test_mmapped_chunk_sizes(word: int, size: int) -> None:
    assert _mmapped_chunk(Words(word), START, START + MAPPING) == size  # type: ignore[arg-type]
