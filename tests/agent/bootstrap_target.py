"""Target for the bootstrap tests (Python 3.8+, stdlib only).

Prints one JSON line describing its own state, forks a child that does the same, runs itself
again through exec (subprocess, `--exec-child`) and exits with status 3.
"""

import json
import os
import subprocess
import sys
import time
import tracemalloc


def state(role):
    sc = sys.modules.get("sitecustomize")
    return {
        "role": role,
        "pid": os.getpid(),
        "tracing": tracemalloc.is_tracing(),
        "frames": tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() else 0,
        "sitecustomize": getattr(sc, "__file__", None),
        "marker": getattr(sc, "MARKER", None),
        "bootstrap_on_path": any(p.rstrip("/").endswith("_bootstrap") for p in sys.path),
    }


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if "--exec-child" in sys.argv:
    emit(state("exec"))
    sys.exit(0)
emit(state("root"))
pid = os.fork()
if pid == 0:
    emit(state("fork"))
    time.sleep(0.3)  # lets the test talk to this child's agent
    os._exit(0)
subprocess.run([sys.executable, __file__, "--exec-child"], check=True)
os.waitpid(pid, 0)
sys.exit(3)
