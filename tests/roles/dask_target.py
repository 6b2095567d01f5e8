"""A Dask LocalCluster on 127.0.0.1: 2 worker processes, which its nannies spawn (fresh
interpreters that then set the title "dask worker [...]"); 10 tasks, then 2 s idle."""

from __future__ import annotations

import time

from dask.distributed import Client, LocalCluster


def square(x: int) -> int:
    return x * x

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(sum(client.gather(client.map(square, range(10)))), flush=True)
        time.sleep(2)
