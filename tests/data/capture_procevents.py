"""Capture real proc connector datagrams around one `sh -c 'exit 3'` (run as root):
writes tests/data/procevents/sh_exit3.bin (length-prefixed datagrams) and .json (the truth)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from memscope.procevents import ProcConnector

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "procevents")
conn = ProcConnector.open()
proc = subprocess.Popen(["sh", "-c", "exit 3"])
proc.wait()
time.sleep(0.2)
chunks = []
while True:
    try:
        chunks.append(conn.sock.recv(65536))
    except BlockingIOError:
        break
with open(os.path.join(OUT, "sh_exit3.bin"), "wb") as fh:
    for chunk in chunks:
        fh.write(struct.pack("=I", len(chunk)) + chunk)
with open(os.path.join(OUT, "sh_exit3.json"), "w") as fh:
    json.dump({"parent": os.getpid(), "child": proc.pid, "returncode": proc.returncode}, fh)
print(len(chunks), "datagrams", socket.gethostname())
