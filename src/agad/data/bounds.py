"""Limits that keep a damaged or oversized dataset from exhausting the machine.

* :data:`MAX_IMAGE_SIZE`: the largest square image size (1024, the largest
  the networks take). The smallest is :data:`MIN_IMAGE_SIZE` (16).
* :func:`check_memory`: every dataset array is estimated before it is
  allocated; the estimate must fit in :data:`MEMORY_FRACTION` (80%) of the
  available memory, which is the smallest of ``MemAvailable`` in
  ``/proc/meminfo``, the cgroup's free allowance (``memory.max`` minus
  ``memory.current``) and the cap in ``$AGAD_MEMORY_LIMIT`` (bytes, or with a
  K/M/G/T suffix: ``AGAD_MEMORY_LIMIT=4G``). Where none of these can be read,
  the physical memory size is used.
* :data:`MAX_MEMBER_BYTES`: the most bytes one member of a CIFAR archive may
  hold (256 MiB; the largest official member, CIFAR-100's ``train``, has
  about 155 MB). IDX files need no stated limit: their header gives the exact
  size, and no more than that is ever decompressed.

Example:
    >>> check_memory(1024, what="a tiny array")  # fits: returns the estimate
    1024
    >>> format_bytes(3 * 2**30)
    '3.0 GiB'
"""

from __future__ import annotations

import math
import os
import re

from agad.errors import DataError

__all__ = [
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "MAX_MEMBER_BYTES",
    "MEMORY_FRACTION",
    "MEMORY_LIMIT_ENV",
    "available_memory",
    "check_memory",
    "format_bytes",
    "images_nbytes",
]

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
MAX_MEMBER_BYTES = 256 * 2**20
MEMORY_FRACTION = 0.8  # the rest is left for the networks, batches and the system
MEMORY_LIMIT_ENV = "AGAD_MEMORY_LIMIT"

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_bytes(n: int | float) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1 (``'1.5 MiB'``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # the loop always returns


def images_nbytes(n: int, channels: int, height: int, width: int | None = None) -> int:
    """Bytes of a uint8 (n, channels, height, width) array, as an exact Python int."""
    return int(n) * int(channels) * int(height) * int(height if width is None else width)


def _parse_limit(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise DataError(
            f"${MEMORY_LIMIT_ENV}={text!r} is not a size; give bytes or a number with K, M, G or T (e.g. 4G)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    # cgroup v2: a container's own limit, which /proc/meminfo does not show.
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
        return max(0, int(limit) - current)
    except (OSError, ValueError):
        return None


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def available_memory() -> int | None:
    """Bytes of memory a dataset may use now (see the module docstring); None if unknown.

    Example:
        >>> available_memory() is None or available_memory() > 0
        True
    """
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if not found:
        phys = _physical_memory()
        if phys is not None:
            found.append(phys)
    cap = os.environ.get(MEMORY_LIMIT_ENV)
    if cap:
        found.append(_parse_limit(cap))
    return min(found) if found else None


def check_memory(nbytes: int, *, what: str, hint: str = "use fewer images") -> int:
    """Refuse an allocation of ``nbytes`` that would not fit; returns ``nbytes``.

    ``what`` names the array ("fashion-mnist: 70000 images of 1x1024x1024"),
    ``hint`` says what to do instead. The message is one line with the
    estimate and the memory available.

    Example:
        >>> check_memory(10**30, what="a huge array", hint="pass a smaller --image-size")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        agad.errors.DataError: a huge array needs an estimated ...; pass a smaller --image-size
    """
    nbytes = int(nbytes)
    avail = available_memory()
    if avail is not None and nbytes > MEMORY_FRACTION * avail:
        raise DataError(
            f"{what} needs an estimated {format_bytes(nbytes)} of memory, but only {format_bytes(avail)} is "
            f"available (at most {math.floor(MEMORY_FRACTION * 100)}% of it is used for data; "
            f"${MEMORY_LIMIT_ENV} can lower the cap); {hint}"
        )
    return nbytes
