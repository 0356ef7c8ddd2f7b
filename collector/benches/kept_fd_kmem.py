#!/usr/bin/env python3
"""Kernel memory pinned by cgroupfs descriptors kept open, as the collector's
open_files_per_cgroup does: opens N descriptors of a cgroup file (and reads each once, which
allocates its seq_file buffer), or N O_PATH descriptors of a cgroup directory, and reports the
slab growth (/proc/meminfo SUnreclaim + SReclaimable) per descriptor.
Usage: collector/benches/kept_fd_kmem.py [N]  (default 5000; needs a v1 memory or a v2 cgroup mount)
"""
import os
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def slab_kib():
    d = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            d[k] = int(v.split()[0])
    return d["SUnreclaim"] + d["SReclaimable"]


def measure(label, opener):
    base = slab_kib()
    fds = [opener() for _ in range(N)]
    grown = slab_kib() - base
    for fd in fds:
        os.close(fd)
    print(f"{label}: {grown * 1024 / N:.0f} bytes per descriptor ({N} descriptors, +{grown} KiB slab)")


root = "/sys/fs/cgroup/memory" if os.path.isdir("/sys/fs/cgroup/memory") else "/sys/fs/cgroup"
stat = os.path.join(root, "memory.stat")


def open_and_read():
    fd = os.open(stat, os.O_RDONLY)
    os.pread(fd, 65536, 0)
    return fd


measure(f"kept file ({stat}, read once)", open_and_read)
measure(f"kept directory ({root}, O_PATH)", lambda: os.open(root, os.O_PATH | os.O_DIRECTORY))
