"""Run directories without torch: file names, safe writes, staging, and the run record.

A run directory describes itself, so loading needs no outside config::

    RUN_DIR/
      config.json                the run record: resolved TrainConfig, model shape, threshold, data summary
      generator.safetensors      weights (the EMA copy when enabled); never pickle
      discriminator.safetensors
      history.jsonl              one JSON object of mean loss terms per epoch
      train_scores.safetensors   training scores of a saved estimator (float64)
      metrics.json, scores.csv   written by `agad evaluate`
      README.md                  model card, where one is written

Every file is written to a temporary name and renamed. A run is built in
``.NAME.staging`` beside its final place, under an exclusive lock on
``.NAME.staging.lock``, and renamed into place only when complete; a staging
folder that a killed run left behind is found by its name and removed (or
resumed from its ``checkpoint/``). Files and folders get the modes a plain
``open`` / ``mkdir`` would give (they follow the umask).

Everything read back from a run is validated before use: :func:`read_record`
checks config.json against :data:`RECORD_SCHEMA`, :func:`read_history` checks
each line of history.jsonl, and both bound what they read. Any ``OSError``
becomes one :class:`~agad.errors.AgadError` line through :func:`file_errors`.

This module imports numpy but never torch (weights live in :mod:`agad.checkpoint`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import io
import json
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .errors import AgadError

__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "DISCRIMINATOR_FILE", "FORMAT_VERSION", "GENERATOR_FILE", "HISTORY_FILE",
    "MAX_HISTORY_BYTES", "MAX_JSON_DEPTH", "MAX_RECORD_BYTES", "MAX_SCORES_BYTES", "METRICS_FILE", "MODEL_CARD_FILE",
    "RECORD_SCHEMA", "SCORES_FILE", "TRAIN_SCORES_FILE", "Spec",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_output_dir", "check_output_file",
    "file_errors", "load_config", "lock_path", "os_error_message", "parse_json", "read_history", "read_json",
    "read_record", "read_run_config", "read_scores_csv", "staging_dir", "staging_path", "validate_record",
    "read_train_scores", "write_history", "write_record", "write_scores_csv", "write_train_scores",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"
TRAIN_SCORES_FILE = "train_scores.safetensors"
CHECKPOINT_DIR = "checkpoint"
MODEL_CARD_FILE = "README.md"

# What a reader accepts: a record is a few KB, a history one short line per epoch.
MAX_RECORD_BYTES = 1 << 20
MAX_HISTORY_BYTES = 32 << 20
MAX_HISTORY_LINE = 64 << 10
MAX_JSON_DEPTH = 32
_MAX_INT_DIGITS = 4300  # Python's own default limit, fixed here whatever sys.set_int_max_str_digits says

_STAGING_SUFFIX = ".staging"
_LOCK_SUFFIX = ".staging.lock"
_REPLACED_SUFFIX = ".replaced"
_LONGEST_SIBLING = 1 + len(_LOCK_SUFFIX)  # ".NAME.staging.lock" is the longest name made beside a run
_DAMAGED = "the run directory is damaged, re-train it"


# ----------------------------------------------------------------- messages
def _shown(path: Any) -> str:
    """A path for a one-line message: control characters escaped."""
    s = str(path)
    return s if s.isprintable() else repr(s)


def _value(v: Any) -> str:
    """A value as a message shows it: short, one line, JSON words for JSON things."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, _BadNumber):
        return v.text if len(v.text) <= 24 else f"a {len(v.text)}-character number"
    if isinstance(v, int):
        digits = len(str(abs(v)))
        return str(v) if digits <= 24 else f"an integer of {digits} digits"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return repr(v) if len(v) <= 40 else repr(v[:40]) + "..."
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)}"
    return f"a {type(v).__name__}"


_ERRNO_ADVICE: dict[int, tuple[str, str]] = {
    errno.EROFS: ("the file system is read-only", "use a location on a writable disk"),
    errno.ENOSPC: ("no space left on the device", "free space on it or use another location"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space in your quota or use another location"),
    errno.EFBIG: ("the file is too large for the file system", "use a location on another file system"),
    errno.ENAMETOOLONG: ("a name in the path is too long for the file system", "choose a shorter path"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "move that file away or choose another path"),
    errno.EISDIR: ("it is a directory where a file is expected", "give a file name"),
    errno.EACCES: ("permission denied", "check the permissions of the path and its parent directories"),
    errno.EPERM: ("the operation is not permitted", "check the permissions and owner of the path"),
    errno.ELOOP: ("too many symbolic links (a loop?)", "replace the link by a real directory"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EEXIST: ("it already exists", "move it away or choose another path"),
    errno.ENOTEMPTY: ("the directory is not empty", "move it away or choose another path"),
    errno.EXDEV: ("it is on another file system", "keep the output on one file system"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENFILE: ("too many open files in the system", "close other programs and retry"),
    errno.EIO: ("an input/output error", "the disk may be failing: check it or use another location"),
    errno.EBUSY: ("the file or device is busy", "retry when it is free"),
    errno.ETXTBSY: ("the file is busy", "retry when it is free"),
    errno.EAGAIN: ("the resource is temporarily unavailable", "retry"),
    errno.ENXIO: ("no such device", "check the path"),
    errno.ENODEV: ("the file system does not support this", "use a location on another file system"),
}


def os_error_message(exc: OSError, path: str | os.PathLike) -> str:
    """One line naming ``path``, what the system said and what to do.

    >>> import errno
    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device"), "runs/x")
    'runs/x: no space left on the device (ENOSPC); free space on it or use another location'
    """
    code = exc.errno if isinstance(exc.errno, int) else None
    name = errno.errorcode.get(code, "") if code is not None else ""
    what, todo = _ERRNO_ADVICE.get(code, (exc.strerror or str(exc) or type(exc).__name__,
                                          "check the path and the disk"))
    what = " ".join(str(what).split())  # one line whatever the system's text
    where = ""
    for f in (exc.filename, exc.filename2):
        if f is not None and str(f) != str(path):
            where = f" at {_shown(os.fsdecode(f) if isinstance(f, bytes) else f)}"
            break
    return f"{_shown(path)}: {what}{f' ({name})' if name else ''}{where}; {todo}"


class file_errors(contextlib.ContextDecorator):
    """Turn any ``OSError`` raised inside into one :class:`AgadError` naming ``path``.

    A context manager and a decorator::

        with file_errors(out):
            out.mkdir()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def __enter__(self) -> "file_errors":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, OSError):
            raise AgadError(os_error_message(exc, self.path)) from None
        return False


# ----------------------------------------------------------------- safe writes
def _open_temp(path: Path) -> tuple[int, Path]:
    """A new hidden file beside ``path``; mode 0o666 less the umask (the kernel applies it, as for open())."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(64):
        tmp = path.parent / f".{path.name[:64]}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _make_parents(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # 0o777 less the umask
    except FileExistsError:  # say what the parent is (a file, a broken link, a link loop), not "it exists"
        os.stat(path.parent)  # raises ELOOP / ENOENT for a link that leads nowhere
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path.parent)) from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; never a half-written file.

    The parent folder is created if needed. Any ``OSError`` (full disk,
    read-only file system, ...) is one :class:`AgadError` naming ``path``, and
    the temporary file is removed.
    """
    path = Path(path)
    with file_errors(path):
        _make_parents(path)
        fd, tmp = _open_temp(path)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)  # the rename must not publish a file whose data is still in flight
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _first_nonfinite(obj: Any, where: str = "") -> tuple[str, Any] | None:
    """(key path, value) of the first number JSON cannot hold (NaN, infinity), else None."""
    if isinstance(obj, _BadNumber) or (isinstance(obj, float) and not math.isfinite(obj)):
        return where or "(top level)", obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _first_nonfinite(v, f"{where}.{k}" if where else str(k))
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = _first_nonfinite(v, f"{where}[{i}]")
            if hit:
                return hit
    return None


def _dumps(obj: Any, path: Any, **kw: Any) -> str:
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        hit = _first_nonfinite(obj)
        if hit is None:
            raise
        raise AgadError(f"cannot write {_shown(path)}: field '{hit[0]}' is {_value(hit[1])}, which JSON cannot "
                        "hold; nothing was written (a diverged training gives non-finite numbers)") from None


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically. A NaN or infinity is an AgadError naming its key, never written.

    >>> atomic_write_json("/nonexistent-dir/x.json", {"a": {"b": float("nan")}})
    Traceback (most recent call last):
    ...
    agad.errors.AgadError: cannot write /nonexistent-dir/x.json: field 'a.b' is nan, which JSON cannot hold; nothing was written (a diverged training gives non-finite numbers)
    """
    atomic_write_text(path, _dumps(obj, path, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------- output paths
def _name_max(existing: Path) -> int:
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _deepest_existing(path: Path) -> Path:
    anc = path.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    return anc


def _probe_writable(folder: Path, path: Path) -> None:
    """Create and remove a file in ``folder``: the only reliable test for EROFS, EACCES, quotas, ACLs."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is not None:
        try:
            st = statvfs(folder)
        except OSError:
            st = None
        if st is not None and st.f_flag & getattr(os, "ST_RDONLY", 1):
            raise AgadError(os_error_message(OSError(errno.EROFS, "read-only", str(folder)), path))
        free = None if st is None else (st.f_bfree if os.geteuid() == 0 else st.f_bavail)
        if st is not None and free == 0 and st.f_blocks > 0:
            raise AgadError(os_error_message(OSError(errno.ENOSPC, "no space", str(folder)), path))
    probe = folder / f".agad-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise AgadError(os_error_message(OSError(exc.errno, exc.strerror, str(folder)), path)) from None


def check_output_dir(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check, before a long training, that the run directory ``path`` can be written; returns it.

    Refused with one line naming the path and what to do: an existing path
    (unless ``overwrite``; a file always), a symbolic link where the run
    directory goes, a file or a broken link among its parents, a name too
    long for the file system, a parent that cannot be written (read-only,
    no permission, full disk). Missing parents are fine: they are made.
    """
    path = Path(path)
    shown = _shown(path)
    if "\x00" in str(path):
        raise AgadError(f"output {shown} contains a NUL character; choose another --out")
    with file_errors(path):
        anc = _deepest_existing(path)
        limit = _name_max(anc if anc.is_dir() else Path("."))
        for part in path.parts:
            if len(os.fsencode(part)) > limit:
                raise AgadError(f"output {shown}: the name {_value(part)} is too long for the file system "
                                f"({len(os.fsencode(part))} bytes, at most {limit}); choose a shorter --out")
        n = len(os.fsencode(path.name))
        if n + _LONGEST_SIBLING > limit:
            raise AgadError(f"output {shown}: the name is too long ({n} bytes; a run directory's name may have "
                            f"at most {limit - _LONGEST_SIBLING} here); choose a shorter --out")
        if len(os.fsencode(os.path.abspath(path))) + 128 > 4096:
            raise AgadError(f"output {shown}: the path is too long for the file system; choose a shorter --out")
        if path.is_symlink():
            raise AgadError(f"output {shown} is a symbolic link; give the directory it points to, "
                            "or another --out, not the link")
        if path.exists():
            if not path.is_dir():
                raise AgadError(f"output {shown} is a file, not a run directory; choose another --out")
            if not overwrite:
                raise AgadError(f"output directory {shown} already exists; choose another --out "
                                "or pass --force to replace it")
        if anc.is_symlink() and not anc.exists():
            raise AgadError(f"cannot create {shown}: {_shown(anc)} is a broken symbolic link (or a loop); "
                            "fix the link or choose another --out")
        if not anc.is_dir():
            raise AgadError(f"cannot create {shown}: {_shown(anc)} is a file, not a directory; "
                            "move that file away or choose another --out")
        _probe_writable(anc, path)
    return path


def check_output_file(out: str | os.PathLike, *, overwrite: bool, example: str) -> Path:
    """Refuse a directory or an existing file as an output path before any work is done."""
    out = Path(out)
    with file_errors(out):
        if out.is_dir():
            raise AgadError(f"--out {_shown(out)} is a directory; give a file name such as {_shown(out / example)}")
        if out.exists() and not overwrite:
            raise AgadError(f"output file {_shown(out)} already exists; choose another --out "
                            "or pass --force to replace it")
    return out


# ----------------------------------------------------------------- staging
def staging_path(final: str | os.PathLike) -> Path:
    """Where the run for ``final`` is built: ``.NAME.staging`` beside it (the same name every time)."""
    final = Path(final)
    return final.parent / f".{final.name}{_STAGING_SUFFIX}"


def lock_path(final: str | os.PathLike) -> Path:
    """The lock file held while the run for ``final`` is being written."""
    final = Path(final)
    return final.parent / f".{final.name}{_LOCK_SUFFIX}"


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path)


@contextlib.contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path = lock_path(final)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AgadError(f"another run is writing {_shown(final)} right now (it holds {_shown(path)}); "
                        "wait for it to finish or choose another --out") from None
    except OSError as exc:
        raise AgadError(os_error_message(exc, final)) from None
    try:
        yield
    finally:
        # removed while still held: a late comer either fails to lock this inode or makes a new one
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


def _recover(final: Path) -> None:
    """Undo what a killed run left beside ``final`` (the caller holds the lock)."""
    replaced = final.parent / f".{final.name}{_REPLACED_SUFFIX}"
    if os.path.lexists(replaced):
        if os.path.lexists(final):
            _remove(replaced)  # killed after the swap: only the old run's removal was left
        else:
            os.replace(replaced, final)  # killed mid-swap: the finished run goes back in place
    for old in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        _remove(old)  # the random-named staging folders of older versions


def _finish(staging: Path, final: Path, *, overwrite: bool, keep_checkpoint: bool) -> None:
    if not keep_checkpoint and os.path.lexists(staging / CHECKPOINT_DIR):
        _remove(staging / CHECKPOINT_DIR)
    if not os.path.lexists(final):
        os.replace(staging, final)
        return
    if not overwrite or final.is_symlink() or not final.is_dir():
        raise AgadError(f"output directory {_shown(final)} appeared while this run was written; "
                        "choose another --out or pass --force to replace it")
    replaced = final.parent / f".{final.name}{_REPLACED_SUFFIX}"
    if os.path.lexists(replaced):
        _remove(replaced)
    os.replace(final, replaced)  # a directory cannot be renamed onto a non-empty one: move the old run aside
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(replaced, final)
        raise
    shutil.rmtree(replaced, ignore_errors=True)


def _kept_note(staging: Path, final: Path) -> str:
    state = (f"its {CHECKPOINT_DIR}/ holds the last saved state: --resume continues from it"
             if (staging / CHECKPOINT_DIR).is_dir() else "no checkpoint was written yet")
    return (f"the unfinished run is kept in {_shown(staging)} for inspection ({state}); the next run into "
            f"{_shown(final)} removes it unless it resumes from it")


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                keep_on_error: bool = False, keep_checkpoint: bool = False) -> Iterator[Path]:
    """Yield the staging folder of ``final``; rename it into place when the block ends without error.

    - One writer per output: a second ``staging_dir`` of the same ``final``
      (thread or process) is refused at once with one line.
    - The staging folder is ``.NAME.staging`` beside ``final``; one left by a
      killed run is removed, or with ``resume=True`` kept and yielded as it is
      (continue from its ``checkpoint/``).
    - On success the ``checkpoint/`` sub-folder is removed (unless
      ``keep_checkpoint``) and the folder renamed to ``final``; an existing
      run is replaced only with ``overwrite``, never touched otherwise.
    - On error (Ctrl-C included) the staging folder is removed, unless
      ``keep_on_error``: then the message says where it is. An ``OSError``
      becomes one AgadError line.
    """
    final = Path(final)
    check_output_dir(final, overwrite=overwrite)
    with file_errors(final):
        _make_parents(final)
    with _exclusive(final):
        staging = staging_path(final)
        with file_errors(final):
            _recover(final)
            check_output_dir(final, overwrite=overwrite)  # again, now that no one else can write it
            if os.path.lexists(staging) and not (resume and staging.is_dir() and not staging.is_symlink()):
                _remove(staging)
            if not staging.exists():
                staging.mkdir()  # 0o777 less the umask, like any mkdir
        try:
            yield staging
            _finish(staging, final, overwrite=overwrite, keep_checkpoint=keep_checkpoint)
        except BaseException as exc:
            if keep_on_error and staging.is_dir():
                note = _kept_note(staging, final)
                if isinstance(exc, AgadError):
                    raise AgadError(f"{exc}; {note}") from None
                if isinstance(exc, OSError):
                    raise AgadError(f"{os_error_message(exc, final)}; {note}") from None
                exc.add_note(note)
                raise
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise AgadError(os_error_message(exc, final)) from None
            raise


# ----------------------------------------------------------------- bounded JSON
class _BadNumber:
    """A number the JSON text holds but a float cannot (NaN, Infinity, 1e400): reported with its field."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _parse_float(text: str) -> Any:
    v = float(text)
    return v if math.isfinite(v) else _BadNumber(text)


def _parse_int(text: str) -> Any:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _BadNumber(text)
    return int(text)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be nested deeper than it has brackets
    depth = deepest = 0
    for m in _BRACKETS.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(text: str, source: str | os.PathLike, *, advice: str = _DAMAGED) -> Any:
    """Parse JSON text with bounds: nesting at most MAX_JSON_DEPTH; one AgadError line naming ``source``.

    NaN, Infinity and numbers too large for a float are kept as markers
    that validation reports with their field (a record containing one is
    never returned by :func:`read_record`).
    """
    if _depth(text) > MAX_JSON_DEPTH:
        raise AgadError(f"{_shown(source)} is nested more than {MAX_JSON_DEPTH} levels deep; {advice}")
    try:
        return json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_BadNumber)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if "\n" in text.strip() else f"column {exc.colno}"
        raise AgadError(f"{_shown(source)} is not valid JSON ({exc.msg} at {at}); {advice}") from None
    except (ValueError, RecursionError) as exc:
        raise AgadError(f"{_shown(source)} is not valid JSON ({' '.join(str(exc).split())[:80]}); {advice}") from None


def _read_text(path: Path, max_bytes: int, advice: str) -> str:
    with file_errors(path):
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AgadError(f"{_shown(path)} is larger than {max_bytes // 1024} KB, more than a run writes; {advice}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgadError(f"{_shown(path)} is not UTF-8 text (byte {exc.start}); {advice}") from None


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_RECORD_BYTES, advice: str = _DAMAGED) -> Any:
    """A JSON file read with bounds (size, nesting, UTF-8); one AgadError line naming the file."""
    path = Path(path)
    return parse_json(_read_text(path, max_bytes, advice), path, advice=advice)


# ----------------------------------------------------------------- the run record
@dataclass(frozen=True)
class Spec:
    """What one field of a record may hold.

    ``kind``: "int", "number" (int or finite float), "str", "bool", "object"
    (a dict; ``fields`` describes the known keys, others pass), "choice"
    (one of ``choices``, compared with their type). ``lo``/``hi`` bound
    numbers (``lo_open``/``hi_open`` exclude the bound), ``abs_below`` bounds
    the magnitude, ``max_len`` a string.
    """

    kind: str
    required: bool = True
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    abs_below: float | None = None
    choices: tuple = ()
    max_len: int = 100_000
    fields: Mapping[str, "Spec"] | None = field(default=None, compare=False)

    def describe(self) -> str:
        if self.kind == "choice":
            names = [_value(c) for c in self.choices]
            what = " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)
        else:
            what = {"int": "an integer", "number": "a finite number", "str": "a string", "bool": "true or false",
                    "object": "an object"}[self.kind]
            lo, hi = _bound(self.lo), _bound(self.hi)
            if self.lo is not None and self.hi is not None:
                what += f" in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
            elif self.lo is not None:
                what += f" {'>' if self.lo_open else '>='} {lo}"
            elif self.hi is not None:
                what += f" {'<' if self.hi_open else '<='} {hi}"
            if self.abs_below is not None:
                what += f" of magnitude below {_bound(self.abs_below)}"
        return what + (" or null" if self.nullable else "")

    def accepts(self, v: Any) -> bool:
        if v is None:
            return self.nullable
        if self.kind == "choice":
            return any(type(v) is type(c) and v == c for c in self.choices)
        if self.kind == "str":
            return isinstance(v, str) and 0 < len(v) <= self.max_len
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "object":
            return isinstance(v, dict)
        if isinstance(v, bool) or not isinstance(v, int if self.kind == "int" else (int, float)):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return self.abs_below is None or abs(v) < self.abs_below


def _bound(x: float | None) -> str:
    return "" if x is None else f"{x:.0e}".replace("e+", "e") if abs(x) >= 1e6 else f"{x:g}"


def _int(lo=None, hi=None, **kw) -> Spec:
    return Spec("int", lo=lo, hi=hi, **kw)


def _num(lo=None, hi=None, **kw) -> Spec:
    return Spec("number", lo=lo, hi=hi, **kw)


def _obj(fields: Mapping[str, Spec] | None = None, **kw) -> Spec:
    return Spec("object", fields=fields, **kw)


_OPTIONAL = {"required": False}

#: config.json of a run: field -> what it may hold. Fields needed to rebuild and score a
#: model are required; the bookkeeping ones are checked when present. Unknown fields pass
#: (a newer writer may add some); ``config`` is checked by the ``validate_config`` hook.
RECORD_SCHEMA: dict[str, Spec] = {
    "format_version": _int(1),
    "agad_version": Spec("str", max_len=64, **_OPTIONAL),
    "config": _obj(),
    "model": _obj({
        "method": Spec("str", max_len=64),
        "backbone": Spec("str", max_len=64),
        "in_channels": Spec("choice", choices=(1, 3)),
        "image_size": _int(16, 1024),
        "advprop": Spec("bool", **_OPTIONAL),
        "generator_parameters": _int(0, **_OPTIONAL),
        "discriminator_parameters": _int(0, **_OPTIONAL),
        "scores_with": Spec("str", max_len=64, **_OPTIONAL),
    }),
    "preprocessing": _obj(**_OPTIONAL),
    "threshold": _num(abs_below=1e30),
    "contamination": _num(0.0, 0.5, lo_open=True, **_OPTIONAL),
    "threshold_source": Spec("str", max_len=200, **_OPTIONAL),
    "score_scaling": _obj({
        "method": Spec("str", max_len=64, **_OPTIONAL),
        "train_min": _num(abs_below=1e30),
        "train_max": _num(abs_below=1e30),
    }, **_OPTIONAL),
    "data": _obj(**_OPTIONAL),
    "validation": _obj(nullable=True, **_OPTIONAL),
    "kept_epoch": _int(1, **_OPTIONAL),
    "train_seconds": _num(0.0, **_OPTIONAL),
    "d_resets": _int(0, **_OPTIONAL),
    "world_size": _int(1, **_OPTIONAL),
    "environment": _obj(**_OPTIONAL),
    "command": Spec("str", **_OPTIONAL),
    "estimator": _obj(**_OPTIONAL),
}


def _check_fields(obj: dict, schema: Mapping[str, Spec], prefix: str, fail: Callable[[str], None]) -> None:
    for name, spec in schema.items():
        dotted = f"{prefix}{name}"
        if name not in obj:
            if spec.required:
                fail(f"field '{dotted}' is missing")
            continue
        v = obj[name]
        if not spec.accepts(v):
            fail(f"field '{dotted}' must be {spec.describe()}, got {_value(v)}")
        if spec.kind == "object" and spec.fields and isinstance(v, dict):
            _check_fields(v, spec.fields, dotted + ".", fail)


def _check_json_values(obj: Any, where: str, fail: Callable[[str], None], depth: int = 0) -> None:
    """Every value JSON can hold and read back: finite numbers, str keys, bounded nesting."""
    if depth > MAX_JSON_DEPTH:
        fail(f"field '{where}' is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(obj, _BadNumber) or (isinstance(obj, float) and not math.isfinite(obj)):
        fail(f"field '{where}' must be a finite number, got {_value(obj)}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                fail(f"field '{where}' has a key {_value(k)} that is not a string")
            _check_json_values(v, f"{where}.{k}" if where else k, fail, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_json_values(v, f"{where}[{i}]", fail, depth + 1)
    elif not (obj is None or isinstance(obj, (str, int, float))):  # bool is an int
        fail(f"field '{where}' holds {_value(obj)}, which is not a JSON value")


def validate_record(meta: Any, source: str | os.PathLike, *,
                    validate_config: Callable[[dict], Any] | None = None, advice: str = _DAMAGED) -> dict[str, Any]:
    """Check a run record against :data:`RECORD_SCHEMA`; returns it, or raises one AgadError line.

    ``validate_config`` is called with the ``config`` section (e.g.
    ``TrainConfig.from_dict``); its AgadError is reported against ``source``.

    >>> validate_record({"format_version": 1, "config": {}, "threshold": 0.5,
    ...                  "model": {"method": "agad", "backbone": "naive", "in_channels": "one", "image_size": 32}},
    ...                 "runs/x/config.json")
    Traceback (most recent call last):
    ...
    agad.errors.AgadError: runs/x/config.json: field 'model.in_channels' must be 1 or 3, got 'one'; the run directory is damaged, re-train it
    """
    src = _shown(source)

    def fail(problem: str) -> None:
        raise AgadError(f"{src}: {problem}; {advice}")

    if not isinstance(meta, dict):
        fail(f"must hold a JSON object, got {_value(meta)}")
    version = meta.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise AgadError(f"{src}: format_version {_value(version)} is newer than this agad reads "
                        f"({FORMAT_VERSION}); upgrade agad to read this run")
    _check_fields(meta, RECORD_SCHEMA, "", fail)
    scaling = meta.get("score_scaling")
    if isinstance(scaling, dict) and scaling["train_min"] > scaling["train_max"]:
        fail(f"field 'score_scaling.train_min' ({_value(scaling['train_min'])}) is above "
             f"'score_scaling.train_max' ({_value(scaling['train_max'])})")
    _check_json_values(meta, "", fail)
    if validate_config is not None:
        try:
            validate_config(meta["config"])
        except AgadError as exc:
            msg = str(exc)
            if not msg.startswith(src):
                msg = f"{src}: in field 'config': {msg.rstrip('.')}; {advice}"
            raise AgadError(msg) from None
        except (TypeError, ValueError) as exc:
            fail(f"field 'config' is not a valid training config ({' '.join(str(exc).split())[:100]})")
    return meta


def read_record(run_dir: str | os.PathLike, *,
                validate_config: Callable[[dict], Any] | None = None) -> dict[str, Any]:
    """The validated config.json of a run directory; one AgadError line naming the file and field.

    Reads at most MAX_RECORD_BYTES, refuses non-UTF-8 text, nesting deeper
    than MAX_JSON_DEPTH, NaN / Infinity and out-of-range fields.
    """
    run_dir = Path(run_dir)
    with file_errors(run_dir):
        if not run_dir.exists():
            raise AgadError(f"run directory {_shown(run_dir)} does not exist; "
                            f"train one with `agad train ... --out {_shown(run_dir)}`")
        if not run_dir.is_dir():
            raise AgadError(f"{_shown(run_dir)} is a file, not a run directory; point to the --out of `agad train`")
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise AgadError(f"{_shown(run_dir)} is not a run directory (no {CONFIG_FILE}); "
                            "point to the --out of `agad train`")
    return validate_record(read_json(path), path, validate_config=validate_config)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The validated config.json of a run (:func:`read_record` with the default checks)."""
    return read_record(run_dir)


def write_record(run_dir: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Validate a run record and write it as ``run_dir/config.json``, atomically; nothing is written if invalid."""
    path = Path(run_dir) / CONFIG_FILE
    validate_record(meta, path, advice="nothing was written (a diverged training gives non-finite numbers)")
    atomic_write_json(path, meta)


def load_config(run_dir: str | os.PathLike):
    """The TrainConfig a run was trained with, validated (its config.json's ``config`` section)."""
    from .config import TrainConfig

    path = Path(run_dir) / CONFIG_FILE
    holder: list = []
    read_record(run_dir, validate_config=lambda c: holder.append(TrainConfig.from_dict(c, source=_shown(path), record=True)))
    return holder[0]


# ----------------------------------------------------------------- history
def write_history(path: str | os.PathLike, history: list[dict[str, float]]) -> None:
    """One JSON object per epoch, atomically. A non-finite value (a diverged loss) is written as null."""
    lines = []
    for h in history:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in h.items()}
        lines.append(_dumps(clean, path, sort_keys=True) + "\n")
    atomic_write_text(path, "".join(lines))


def read_history(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """history.jsonl of a run, validated line by line ([] when the file is absent).

    Each line is a JSON object of numbers (null, a loss that was not finite,
    reads back as NaN) with an integer ``epoch`` that increases line by line.
    """
    path = Path(run_dir) / HISTORY_FILE
    with file_errors(path):
        if not path.is_file():
            return []
    advice = f"{_DAMAGED} (or delete {HISTORY_FILE}: it only records the losses)"
    text = _read_text(path, MAX_HISTORY_BYTES, advice)
    out: list[dict[str, float]] = []
    last = 0
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{_shown(path)}, line {n}"

        def fail(problem: str) -> None:
            raise AgadError(f"{where}: {problem}; {advice}")

        if len(line) > MAX_HISTORY_LINE:
            fail(f"the line is longer than {MAX_HISTORY_LINE // 1024} KB")
        rec = parse_json(line, where, advice=advice)
        if not isinstance(rec, dict):
            fail(f"must be a JSON object, got {_value(rec)}")
        epoch = rec.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            fail(f"field 'epoch' must be an integer >= 1, got {_value(epoch)}" if "epoch" in rec
                 else "field 'epoch' is missing")
        if epoch <= last:
            fail(f"epoch {epoch} does not follow epoch {last}")
        last = epoch
        row: dict[str, float] = {}
        for k, v in rec.items():
            if v is None:
                row[k] = float("nan")
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                fail(f"field '{k}' must be a finite number or null, got {_value(v)}")
            else:
                row[k] = v
        out.append(row)
    return out


# ----------------------------------------------------------------- scores
_TRAIN_SCORES_KEY = "decision_scores"
MAX_SCORES_BYTES = 1 << 30


def write_train_scores(path: str | os.PathLike, scores: np.ndarray) -> None:
    """train_scores.safetensors: the training images' scores (float64, one dimension, finite), atomically."""
    from safetensors.numpy import save

    path = Path(path)
    arr = np.ascontiguousarray(scores, dtype=np.float64)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise AgadError(f"cannot write {_shown(path)}: the training scores must be finite numbers in one "
                        f"dimension (got shape {arr.shape}); nothing was written")
    atomic_write_bytes(path, save({_TRAIN_SCORES_KEY: arr}))


def read_train_scores(path: str | os.PathLike) -> np.ndarray:
    """The scores written by :func:`write_train_scores`, validated; one AgadError line naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    advice = f"the file is damaged; delete {path.name} (predict_proba then needs a re-fit) or re-train"
    with file_errors(path), open(path, "rb") as f:
        data = f.read(MAX_SCORES_BYTES + 1)
    if len(data) > MAX_SCORES_BYTES:
        raise AgadError(f"{_shown(path)} is larger than {MAX_SCORES_BYTES >> 20} MB; {advice}")
    try:
        arrays = load(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise AgadError(f"cannot read {_shown(path)}: {' '.join(str(exc).split())[:160]}; {advice}") from None
    arr = arrays.get(_TRAIN_SCORES_KEY)
    if arr is None or arr.dtype != np.float64 or arr.ndim != 1:
        got = "nothing" if arr is None else f"{arr.dtype} of shape {arr.shape}"
        raise AgadError(f"{_shown(path)}: '{_TRAIN_SCORES_KEY}' must be float64 in one dimension, "
                        f"got {got}; {advice}")
    if not np.isfinite(arr).all():
        raise AgadError(f"{_shown(path)}: '{_TRAIN_SCORES_KEY}' holds non-finite values; {advice}")
    return arr


def write_scores_csv(path: str | os.PathLike, scores: np.ndarray, labels: np.ndarray | None = None,
                     ids: list[str] | None = None, predictions: np.ndarray | None = None) -> None:
    """scores.csv: one row per image (index or path, score, and label / prediction when given), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["index" if ids is None else "path", "score"]
    if labels is not None:
        header.append("label")
    if predictions is not None:
        header.append("prediction")
    w.writerow(header)
    for i, s in enumerate(scores):
        row: list[Any] = [i if ids is None else ids[i], f"{float(s):.6g}"]
        if labels is not None:
            row.append(int(labels[i]))
        if predictions is not None:
            row.append(int(predictions[i]))
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def read_scores_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores float64, labels or None) of a scores.csv written by :func:`write_scores_csv`."""
    path = Path(path)
    with file_errors(path), open(path, newline="", encoding="utf-8") as f:
        try:
            rows = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise AgadError(f"{_shown(path)} is not a readable CSV file ({exc}); write it again") from None
    has_labels = bool(rows) and "label" in rows[0]
    try:
        scores = np.array([float(r["score"]) for r in rows], dtype=np.float64)
        labels = np.array([int(r["label"]) for r in rows]) if has_labels else None
    except (KeyError, TypeError, ValueError):
        raise AgadError(f"{_shown(path)} lacks a numeric 'score' (or integer 'label') column in some row; "
                        "write it again with `agad evaluate`") from None
    return scores, labels
