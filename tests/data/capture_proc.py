"""Regenerate tests/data/proc: a captured /proc of a small live tree.

A python parent (with 100k ints preloaded) forks a child that forks a grandchild, and spawns a
copy of /bin/sleep named "x) (y z" (a hostile comm with spaces and parentheses). Their
stat, statm, status, smaps_rollup, smaps, maps, cmdline and exe link are copied, plus the
non-member PID 1. Run as: python3 tests/data/capture_proc.py
"""

import os
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "proc")
HOSTILE = "/tmp/x) (y z"
CHILD = r'''
import os, time
data = list(range(100000))
if os.fork() == 0:
    if os.fork() == 0:
        time.sleep(30); os._exit(0)
    time.sleep(30); os._exit(0)
os.spawnv(os.P_NOWAIT, "/tmp/x) (y z", ["/tmp/x) (y z", "30"])
print(os.getpid(), flush=True)
time.sleep(30)
'''


def ppid_of(pid: str) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        st = fh.read()
    return int(st[st.rindex(b")") + 2 :].split()[1])


def main() -> None:
    shutil.copy("/bin/sleep", HOSTILE)
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    proc = subprocess.Popen(["python3", "-c", CHILD], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    parent = int(proc.stdout.readline())
    time.sleep(0.5)
    tree = [parent]
    for _ in range(2):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in tree:
                try:
                    if ppid_of(name) in tree:
                        tree.append(int(name))
                except OSError:
                    pass
    for pid in tree:
        os.makedirs(f"{ROOT}/{pid}")
        for name in ("stat", "statm", "status", "smaps_rollup", "smaps", "maps", "cmdline"):
            with open(f"/proc/{pid}/{name}", "rb") as src, open(f"{ROOT}/{pid}/{name}", "wb") as dst:
                dst.write(src.read())
        os.symlink(os.readlink(f"/proc/{pid}/exe"), f"{ROOT}/{pid}/exe")
    os.makedirs(f"{ROOT}/1")
    for name in ("stat", "statm", "status", "cmdline"):
        with open(f"/proc/1/{name}", "rb") as src, open(f"{ROOT}/1/{name}", "wb") as dst:
            dst.write(src.read())
    for pid in tree:
        os.kill(pid, 9)
    print("captured", tree)


if __name__ == "__main__":
    main()
