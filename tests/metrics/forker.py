"""A process tree driven over stdin, for exporter tests (stdlib only, Python 3.8+).

Commands, one per line; each answer is one flushed line on stdout:
  fork MIB   -> fork a worker that touches MIB MiB of fresh memory, then sleeps; prints its pid
               once the memory is resident
  kill PID   -> SIGKILL and reap a worker; prints "reaped PID"
  exit       -> kill every worker and exit 0
"""

import os
import signal
import sys
import time


def worker(mib, ready_w):
    data = bytearray(mib * 1024 * 1024)
    for i in range(0, len(data), 4096):
        data[i] = 1
    os.write(ready_w, b"x")
    os.close(ready_w)
    while True:
        time.sleep(60)


def main():
    children = []
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "fork":
            ready_r, ready_w = os.pipe()
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                try:
                    worker(int(words[1]), ready_w)
                finally:
                    os._exit(0)
            os.close(ready_w)
            os.read(ready_r, 1)
            os.close(ready_r)
            children.append(pid)
            print(pid, flush=True)
        elif words[0] == "kill":
            pid = int(words[1])
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            children.remove(pid)
            print("reaped", pid, flush=True)
        elif words[0] == "exit":
            break
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
