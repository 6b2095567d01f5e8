"""tracemalloc control inside the target: start, cheap detach in forked children, and
address-to-traceback resolution.

Runs inside targets: stdlib only, Python 3.8+ syntax, every public function contains its errors.

Why a "detach" and not tracemalloc.stop() in a forked worker: stop() frees every trace of the
parent's heap in the child, which costs time in each worker and dirties (COW-copies) the pages
holding tracemalloc's own tables, polluting the very measurement memscope makes. Instead the
child restores the allocator functions saved before tracemalloc.start() (PyMem_SetAllocator for
the raw, mem and object domains) and clears tracemalloc's `tracing` flag, so that
_Py_NewReference stops looking objects up in the trace table. The parent's traces stay intact and
untouched in the child. Where the flag cannot be located, the child keeps the allocator swap
only (measured ~1.3-1.9x on allocation-heavy code instead of ~1.0x); where the allocators could
not be saved, it falls back to tracemalloc.stop().
"""

from __future__ import annotations

import atexit
import ctypes
import os
import struct
import sys
import time
import tracemalloc
from typing import Any, Dict, List, Optional, Tuple

_DOMAINS = (0, 1, 2)  # PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ
_SCAN_LIMIT = 1 << 20  # bytes of _PyRuntime scanned for tracemalloc's config (3.12+)


class _Allocator(ctypes.Structure):
    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("malloc", ctypes.c_void_p),
        ("calloc", ctypes.c_void_p),
        ("realloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
    ]


def _api() -> Any:
    api = ctypes.pythonapi
    api.PyMem_GetAllocator.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    api.PyMem_GetAllocator.restype = None
    api.PyMem_SetAllocator.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    api.PyMem_SetAllocator.restype = None
    api._PyTraceMalloc_GetTraceback.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    api._PyTraceMalloc_GetTraceback.restype = ctypes.py_object
    return api


def _mapping_end(addr: int) -> int:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            if lo <= addr < hi:
                return hi
    return addr


_BATCH = 2000  # lookups between two yields of the GIL (resolve's duty cycle)
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))


def _host_frames(tb: Tuple[Tuple[str, int], ...], max_frames: int) -> List[List[Any]]:
    """The traceback without memscope's agent frames (as [file, line] lists), at most
    `max_frames`; empty when only the agent's frames were there (the block is then reported
    untraced: it is memscope's, not the host's)."""
    return [[f, n] for f, n in tb if not f.startswith(_AGENT_DIR)][:max_frames]


class Tracer:
    """Owns tracemalloc for one process; see the module docstring."""

    def __init__(self) -> None:
        self.frames = 0
        self.mode = "off"  # off | tracing | detached | detached-partial | stopped
        self.origin_pid = 0  # pid of the process whose traces describe our inherited heap
        self._saved: Optional[List[_Allocator]] = None  # allocators before tracemalloc
        self._hooks: Optional[List[_Allocator]] = None  # tracemalloc's hooks
        self._flag_addr = 0
        self.error = ""

    # -- start ---------------------------------------------------------------------------
    def start(self, frames: int, pid: int) -> None:
        frames = max(1, min(int(frames), 1000))
        self.frames = frames
        self.origin_pid = pid
        if tracemalloc.is_tracing():  # e.g. PYTHONTRACEMALLOC: originals are already hooked
            self.mode = "tracing"
            return
        self._saved = self._get_allocators()
        if self._saved is None:
            self.error = "allocators: not available through ctypes"
        if self._saved is not None and sys.version_info < (3, 12):
            try:
                cfg = ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_tracemalloc_config")
                self._flag_addr = ctypes.addressof(cfg) + 4  # {initialized, tracing, ...}
            except Exception as exc:
                self.error = "flag: %s" % exc
            tracemalloc.start(frames)
        elif self._saved is not None:
            self._flag_addr = self._calibrate(frames)
        else:
            tracemalloc.start(frames)
        self.mode = "tracing"
        self._hooks = self._get_allocators() if self._saved is not None else None

    def _get_allocators(self) -> Optional[List[_Allocator]]:
        try:
            api = _api()
            out = []
            for d in _DOMAINS:
                a = _Allocator()
                api.PyMem_GetAllocator(d, ctypes.byref(a))
                out.append(a)
            return out
        except Exception:
            return None

    def _set_allocators(self, allocs: List[_Allocator]) -> None:
        api = _api()
        for d, a in zip(_DOMAINS, allocs):  # noqa: B905  (3.8 has no strict=)
            api.PyMem_SetAllocator(d, ctypes.byref(a))

    def pause(self) -> bool:
        """Stop recording new allocations (traces and lookups stay) while the agent itself
        works, so that serving a request neither costs tracing time nor rewrites
        tracemalloc's tables (which would un-share their pages with forked workers).
        Allocations other threads make meanwhile go untraced. Returns whether it paused."""
        if self.mode != "tracing" or self._saved is None or self._hooks is None:
            return False
        try:
            self._set_allocators(self._saved)
            return True
        except Exception:
            return False

    def resume(self) -> None:
        if self._hooks is not None and self.mode == "tracing":
            try:
                self._set_allocators(self._hooks)
            except Exception:
                pass

    def _calibrate(self, frames: int) -> int:
        """Find tracemalloc's config {initialized, tracing, max_nframe} inside _PyRuntime
        (3.12+, where it is not an exported symbol) by watching it change across
        start/stop/start. Returns the address of `tracing`, or 0. Leaves tracing on."""
        try:
            base = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
            size = min(_SCAN_LIMIT, _mapping_end(base) - base) // 4 * 4

            def snap() -> bytes:
                return ctypes.string_at(base, size)

            alt = frames + 1
            s0 = snap()
            tracemalloc.start(alt)
            s1 = snap()
            tracemalloc.stop()
            s2 = snap()
            tracemalloc.start(frames)
            s3 = snap()
            on_alt = struct.pack("ii", 1, alt)
            on_now = struct.pack("ii", 1, frames)
            off = struct.pack("i", 0)
            hits = []
            i = s1.find(on_alt)
            while i >= 0:
                if i % 4 == 0 and s3[i : i + 8] == on_now and s0[i : i + 4] == off == s2[i : i + 4]:
                    hits.append(i)
                i = s1.find(on_alt, i + 1)
            if len(hits) == 1:
                return base + hits[0]
            self.error = "flag: %d candidates" % len(hits)
        except Exception as exc:
            self.error = "flag: %s" % exc
            if not tracemalloc.is_tracing():
                tracemalloc.start(frames)
        return 0

    # -- fork ----------------------------------------------------------------------------
    def detach_in_child(self) -> None:
        """Stop paying for tracing in a forked child, keeping the inherited traces intact."""
        if self.mode != "tracing":
            return
        try:
            if self._saved is None:
                tracemalloc.stop()
                self.mode = "stopped"
                return
            self._set_allocators(self._saved)
            if self._flag_addr:
                ctypes.c_int.from_address(self._flag_addr).value = 0
                self.mode = "detached"
                atexit.register(lambda: self.skip_teardown())
            else:
                self.mode = "detached-partial"
        except Exception as exc:
            self.error = "detach: %s" % exc

    def skip_teardown(self) -> None:
        """At the exit of a detached child: mark tracemalloc finalized, so that interpreter
        finalization does not free the inherited traces one by one. Freeing them writes into
        every page of tracemalloc's tables, copying all of them from the parent in a process
        about to die (measured: bench/bench_trace_exit.py). The config is
        {initialized, tracing, max_nframe}: `initialized` sits just before the flag."""
        try:
            if self.mode != "detached" or not self._flag_addr:
                return
            initialized = ctypes.c_int.from_address(self._flag_addr - 4)
            tracing = ctypes.c_int.from_address(self._flag_addr)
            if initialized.value == 1 and tracing.value == 0:  # INITIALIZED, detached
                initialized.value = 2  # TRACEMALLOC_FINALIZED: _PyTraceMalloc_Fini returns
        except Exception as exc:
            self.error = "teardown: %s" % exc

    def stop(self) -> None:
        """Stop tracing for good (frees the traces)."""
        if self.mode == "tracing":
            try:
                tracemalloc.stop()
            except Exception:
                pass
            self.mode = "stopped"

    # -- resolution ----------------------------------------------------------------------
    def resolve(self, addrs: List[int], max_frames: int, duty: float = 1.0) -> Dict[str, Any]:
        """Tracebacks of the allocator blocks starting at `addrs` (domain 0), without touching
        the objects. Returns {"tracebacks": [[[file, line], ...] most recent first],
        "index": [i into tracebacks, or -1 if untraced]}.

        memscope's own frames (this package) are cut from every traceback; a block allocated
        by the agent alone is reported untraced (-1). `duty` < 1 bounds the share of time the
        lookups hold the GIL: after each batch the agent sleeps (1/duty - 1) times as long as
        the batch took, so the host's threads keep at least 1 - duty of it."""
        if self.mode != "tracing" or not tracemalloc.is_tracing():
            raise RuntimeError("this process is not tracing (mode %s)" % self.mode)
        get = _api()._PyTraceMalloc_GetTraceback
        table: Dict[Tuple[Any, ...], int] = {}
        out: List[List[List[Any]]] = []
        index: List[int] = []
        rest = (1.0 / duty - 1.0) if 0.0 < duty < 1.0 else 0.0
        for lo in range(0, len(addrs), _BATCH):
            t0 = time.perf_counter()
            for addr in addrs[lo : lo + _BATCH]:
                tb = get(0, addr)
                if not tb:
                    index.append(-1)
                    continue
                i = table.get(tb)
                if i is None:
                    frames = _host_frames(tb, max_frames)
                    i = table[tb] = len(out) if frames else -1
                    if frames:
                        out.append(frames)
                index.append(i)
            if rest:
                time.sleep((time.perf_counter() - t0) * rest)
        return {"tracebacks": out, "index": index}

    def describe(self) -> Dict[str, Any]:
        traced, _peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        return {
            "mode": self.mode,
            "frames": self.frames,
            "origin_pid": self.origin_pid,
            "traced_bytes": traced,
            "error": self.error,
        }
