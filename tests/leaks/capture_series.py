"""Capture the memory series of a real leaky_worker recording for the offline leak tests.

    memscope run -q -o lw.memscope -- python3 fixtures/leaky_worker.py --workers 2 \\
        --leaky-workers 1 --duration 8 --delay 0.5 --hold 0.5
    python tests/leaks/capture_series.py lw.memscope LEAK_BYTES_PER_S > tests/data/leaks/X.json
"""

from __future__ import annotations

import json
import sys

from memscope.recording import open_recording


def main() -> None:
    rec = open_recording(sys.argv[1])
    out = {"truth_leak_bytes_per_s": float(sys.argv[2]), "processes": []}
    for p in rec.processes:
        rows = [
            [s.t, s["uss"], s["rss"], s["rss_shared"]] for s in rec.samples(p.id)
        ]
        out["processes"].append({"pid": p.pid, "ppid": p.ppid, "role": p.role, "samples": rows})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
