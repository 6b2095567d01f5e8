"""The caller's page snapshot, backed by the target's live memory for pages outside it.

The heap parser reads everything through one `Snapshot`: pages the caller passed in (e.g. a
child's copied pages, read once so that heap parsing and cause diffing see the same bytes)
are used in place, never copied; any other page needed (the rest of a pool, a chunk header,
a type object) is read from /proc/PID/mem once and kept in a side store.

Pages are addressed by a signed *code*: `row >= 0` is a row of the caller's array,
`-1 - j` is row j of the side store.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from memscope.cow.memreader import PAGE, MemReader, Unmapped
from memscope.procfs import MapEntry

__all__ = ["WORDS_PER_PAGE", "Snapshot", "writable_regions"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
WORDS_PER_PAGE = PAGE // 8
_PAGE_MASK = np.uint64(~(PAGE - 1) & 0xFFFFFFFFFFFFFFFF)


def _find(sorted_addrs: U64, pages: U64) -> tuple[I64, BOOL]:
    if not len(sorted_addrs):
        return np.zeros(len(pages), dtype=np.int64), np.zeros(len(pages), dtype=np.bool_)
    idx = np.searchsorted(sorted_addrs, pages).astype(np.int64)
    clipped = np.minimum(idx, len(sorted_addrs) - 1)
    return clipped, (idx < len(sorted_addrs)) & (sorted_addrs[clipped] == pages)


class Snapshot:
    def __init__(
        self, reader: MemReader, page_addrs: U64, page_bytes: npt.NDArray[np.uint8]
    ) -> None:
        addrs = np.asarray(page_addrs, dtype=np.uint64)
        if page_bytes.shape != (len(addrs), PAGE) or page_bytes.dtype != np.uint8:
            raise ValueError(f"page_bytes must be uint8 shaped ({len(addrs)}, {PAGE})")
        if len(addrs) > 1 and not bool(np.all(addrs[1:] > addrs[:-1])):
            order = np.argsort(addrs, kind="stable")
            addrs, page_bytes = addrs[order], page_bytes[order]
        self.reader = reader
        self.addrs = addrs
        self.data = np.ascontiguousarray(page_bytes)
        self.main_words = self.data.reshape(-1).view(np.uint64)
        self._x_addrs = np.zeros(0, dtype=np.uint64)
        self._x_words = np.zeros(0, dtype=np.uint64)
        self._x_valid = np.zeros(0, dtype=np.bool_)
        self._page_cache: dict[int, bytes | None] = {}

    def lookup(self, pages: U64) -> tuple[I64, BOOL]:
        """Row of each page in the caller's snapshot, and whether it is there."""
        return _find(self.addrs, pages)

    def ensure(self, pages: U64) -> tuple[I64, BOOL]:
        """Codes of `pages`, reading those not held yet; and which pages are readable."""
        pages = np.asarray(pages, dtype=np.uint64)
        row, have = _find(self.addrs, pages)
        xrow, xhave = _find(self._x_addrs, pages)
        missing = np.unique(pages[~have & ~xhave])
        if len(missing):
            data, ok = self.reader.read_pages(missing)
            addrs = np.concatenate((self._x_addrs, missing))
            order = np.argsort(addrs, kind="stable")
            words = np.concatenate(
                (self._x_words.reshape(-1, WORDS_PER_PAGE), data.view(np.uint64))
            )
            self._x_addrs = addrs[order]
            self._x_words = np.ascontiguousarray(words[order]).reshape(-1)
            self._x_valid = np.concatenate((self._x_valid, ok))[order]
            xrow, xhave = _find(self._x_addrs, pages)
        code = np.where(have, row, -1 - xrow)
        valid = have | (xhave & self._x_valid[xrow] if len(self._x_valid) else have)
        return code, valid

    def gather(self, code: I64, word: I64) -> U64:
        """Word number `word` (0..511) of the pages with these codes."""
        out = np.empty(len(code), dtype=np.uint64)
        main = code >= 0
        out[main] = self.main_words[code[main] * WORDS_PER_PAGE + word[main]]
        side = ~main
        if side.any():
            out[side] = self._x_words[(-1 - code[side]) * WORDS_PER_PAGE + word[side]]
        return out

    def words(self, addrs: U64) -> tuple[U64, BOOL]:
        """The 8-byte words at 8-aligned `addrs`, and which could be read."""
        addrs = np.asarray(addrs, dtype=np.uint64)
        code, valid = self.ensure(addrs & _PAGE_MASK)
        word = ((addrs & np.uint64(PAGE - 1)) >> np.uint64(3)).astype(np.int64)
        vals = self.gather(code, word)
        vals[~valid] = 0
        return vals, valid

    def row(self, page: int) -> int | None:
        """Row of `page` in the caller's snapshot, or None (a binary search: Python walks
        visit few pages, so no dict of every page is built)."""
        i = int(np.searchsorted(self.addrs, np.uint64(page)))
        return i if i < len(self.addrs) and int(self.addrs[i]) == page else None

    def page(self, page: int, ahead: int = 1) -> bytes | None:
        """One page as bytes (None if unreadable): for sequential walks in Python.

        On a miss, `ahead` pages from `page` on are read with one call and kept.
        """
        if page not in self._page_cache:
            row = self.row(page)
            if row is not None:
                self._page_cache[page] = self.data[row].tobytes()
            else:
                run = np.uint64(page) + np.arange(max(ahead, 1), dtype=np.uint64) * np.uint64(PAGE)
                data, valid = self.reader.read_pages(run)
                for i, addr in enumerate(run.tolist()):
                    if self.row(addr) is None:
                        self._page_cache[addr] = data[i].tobytes() if valid[i] else None
        return self._page_cache[page]

    def u64(self, addr: int) -> int:
        """One 8-aligned word, raising Unmapped when unreadable."""
        page = addr & ~(PAGE - 1)
        content = self.page(page)
        if content is None:
            raise Unmapped(addr)
        return int.from_bytes(content[addr - page : addr - page + 8], "little")


def writable_regions(maps: list[MapEntry]) -> list[tuple[str, int, int]]:
    """`[heap]` and anonymous read-write mappings, adjacent ones merged.

    One allocation can span several mappings: numpy, for one, madvises the huge-page-aligned
    part of its buffers, which splits the mapping of a single mmapped chunk.
    """
    out: list[tuple[str, int, int]] = []
    for m in sorted(maps, key=lambda m: m.start):
        if not m.perms.startswith("rw") or (m.path and m.path != "[heap]"):
            continue
        if out and out[-1][0] == m.path and out[-1][2] == m.start:
            out[-1] = (m.path, out[-1][1], m.end)
        else:
            out.append((m.path, m.start, m.end))
    return out
