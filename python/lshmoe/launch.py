"""Runs one process per rank on this machine with torchrun's variables, the
way the examples and tests of the binding start their jobs:

    codes = lshmoe.launch.run_local([sys.executable, "train.py", ...], world=4)

Ports: MASTER_PORT and the next `ports - 1` are all free when chosen, and
below the kernel's ephemeral range (32768 up), so that outgoing connections
of other jobs cannot take them meanwhile. A rank that fails ends the job:
the others are killed rather than left waiting for it. Exit code 77 (the
rank skipped, as ctest counts it) is not a failure.
"""

import os
import random
import socket
import subprocess
import time


def free_ports(count):
    """The first of `count` consecutive free ports in [20000, 32000)."""
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("", port))
            return base
        except OSError:
            continue
    raise RuntimeError("lshmoe.launch: no free block of ports")


def run_local(cmd, world, timeout=3600.0, env=None, ports=8):
    """Runs `cmd` as ranks 0..world-1; returns their exit codes (124 for the
    ranks killed at the timeout or after another rank failed)."""
    port = free_ports(ports)
    procs = []
    for r in range(world):
        rank_env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                        NCCL_HOSTID=f"lshmoe-rank-{r}",  # ranks sharing one GPU
                        UCX_TLS=os.environ.get("UCX_TLS", "tcp,self"),
                        UCX_WARN_UNUSED_ENV_VARS="n")
        rank_env.update(env or {})
        procs.append(subprocess.Popen(cmd, env=rank_env))
    deadline = time.time() + timeout
    while True:
        codes = [p.poll() for p in procs]
        # 77 is a rank that skipped (ctest's convention), not one that failed.
        failed = any(c not in (None, 0, 77) for c in codes)
        if all(c is not None for c in codes):
            return codes
        if failed or time.time() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return [p.wait() if c is not None else 124 for p, c in zip(procs, codes)]
        time.sleep(0.05)
