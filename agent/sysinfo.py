"""System facts for the heartbeat: CPU, load, memory, disk, temperature, uptime, clock sync."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from pathlib import Path
from typing import Any

import psutil

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
STA_UNSYNC = 0x0040
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: we only read 'status'; the rest is padding room.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 512)]


def clock_synchronised() -> bool | None:
    """True if the kernel says NTP keeps the clock in sync (as timedatectl shows); None if
    the OS does not say."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        # Under a systemd seccomp filter adjtimex may be refused: ask timesyncd instead.
        return True if TIMESYNCD_FLAG.exists() else None
    return not (tx.status & STA_UNSYNC)


def temperature_c() -> float | None:
    """Board temperature (Raspberry Pi thermal zone, or psutil's first sensor), or None."""
    try:
        return round(int(THERMAL.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        pass
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    for readings in sensors.values():
        for r in readings:
            if r.current:
                return round(float(r.current), 1)
    return None


def system_status(data_dir: Path, now: float | None = None) -> dict[str, Any]:
    """The ``system`` section of a heartbeat."""
    now = time.time() if now is None else now
    mem = psutil.virtual_memory()
    try:
        disk = psutil.disk_usage(str(data_dir))
        disk_free_mb: int | None = disk.free // (1024 * 1024)
        disk_free_pct: float | None = round(100 - disk.percent, 1)
    except OSError:
        disk_free_mb = disk_free_pct = None
    load1, load5, load15 = os.getloadavg()
    proc = psutil.Process()
    return {
        "cpu_pct": round(psutil.cpu_percent(interval=None), 1),
        "agent_cpu_pct": round(proc.cpu_percent(interval=None), 1),
        "agent_rss_mb": round(proc.memory_info().rss / (1024 * 1024), 1),
        "load": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "mem_used_pct": round(mem.percent, 1),
        "mem_available_mb": mem.available // (1024 * 1024),
        "disk_free_mb": disk_free_mb,
        "disk_free_pct": disk_free_pct,
        "temp_c": temperature_c(),
        "uptime_s": int(now - psutil.boot_time()),
        "clock_synced": clock_synchronised(),
    }


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt() parameters from <malloc.h>
PR_SET_THP_DISABLE = 41  # prctl() option from <linux/prctl.h>


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc() -> bool:
    """Keep the daemon's memory near what it uses (glibc; elsewhere a no-op, False).

    Pictures are megabytes each. By default glibc raises its mmap threshold to the size of
    the largest block freed (up to 32 MB), after which every picture comes from the heap
    arenas, whose freed pages are rarely given back: RSS creeps up to the sum of the
    peaks. A fixed 1 MB threshold gives each picture its own mapping, returned on free;
    two arenas are plenty for a handful of threads. And no transparent huge pages: x264
    asks for them for every picture buffer it allocates, which rounds each up to whole
    2 MB pages, all resident (about 6.5 MB more per live camera, for no measurable speed).
    Call it first thing in the process.
    """
    libc = _libc()
    try:
        if libc is not None:
            libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
        return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
                    and libc.mallopt(M_ARENA_MAX, 2))
    except AttributeError:
        return False


def trim_memory() -> None:
    """Give the kernel back the free pages inside the malloc arenas (cheap; call it now
    and then, e.g. with each heartbeat)."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.malloc_trim(0)
