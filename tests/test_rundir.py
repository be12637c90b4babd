"""agad.rundir: the run format without torch, safe writes, staging, one error path for the file system."""

from __future__ import annotations

import copy
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agad import rundir
from agad.config import TrainConfig
from agad.errors import AgadError
from agad.rundir import (
    CHECKPOINT_DIR, CONFIG_FILE, HISTORY_FILE, atomic_write_bytes, atomic_write_json, atomic_write_text,
    check_output_dir, file_errors, load_config, lock_path, os_error_message, read_history, read_record,
    read_scores_csv, read_train_scores, staging_dir, staging_path, validate_record, write_history, write_record,
    write_scores_csv, write_train_scores,
)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the fuzz tests below are skipped without it
    given = None

REPO = Path(__file__).resolve().parents[1]


def one_line_error(fn, *args, match: str | None = None, **kw) -> str:
    """Call fn, expect an AgadError of one line (containing ``match``); return its text."""
    with pytest.raises(AgadError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    if match is not None:
        assert match in msg, msg
    return msg


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def good_record() -> dict:
    """A record as `agad train` writes it (shape only; the numbers are made up)."""
    return {
        "format_version": 1,
        "agad_version": "0.1.0",
        "config": TrainConfig(epochs=2).to_dict(),
        "model": {"method": "agad", "backbone": "naive", "in_channels": 1, "image_size": 32, "advprop": True,
                  "generator_parameters": 1000, "discriminator_parameters": 500, "scores_with": "ema"},
        "preprocessing": {"resize_to": 32, "channels": 1, "scale": "x/127.5 - 1 (uint8 -> [-1, 1])"},
        "threshold": 0.25,
        "contamination": 0.1,
        "threshold_source": "quantile of training-normal scores",
        "score_scaling": {"method": "linear", "train_min": 0.1, "train_max": 0.4},
        "data": {"class_names": ["0", "1"], "n_normal_train": 10, "anomaly_classes": []},
        "validation": None,
        "kept_epoch": 2,
        "train_seconds": 1.5,
        "d_resets": 0,
        "world_size": 1,
        "environment": {"python": "3.11", "torch": "2.13", "device": "cpu", "amp": "None"},
        "command": "agad train",
    }


def make_run(tmp_path: Path, content: str | bytes | dict, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir(exist_ok=True)
    data = content if isinstance(content, (str, bytes)) else json.dumps(content)
    (run / CONFIG_FILE).write_bytes(data.encode() if isinstance(data, str) else data)
    return run


def with_field(path: str, value, record: dict | None = None) -> dict:
    rec = copy.deepcopy(record or good_record())
    *parents, last = path.split(".")
    node = rec
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return rec


_DELETE = object()


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ------------------------------------------------------------------ no torch
def test_importing_rundir_does_not_import_torch():
    code = "import sys, agad.rundir; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the run record
def test_a_good_record_round_trips(tmp_path):
    run = tmp_path / "run"
    write_record(run, good_record())
    assert read_record(run) == good_record()
    cfg = load_config(run)
    assert isinstance(cfg, TrainConfig) and cfg.epochs == 2


def test_every_archived_run_record_is_valid():
    records = sorted((REPO / "docs" / "runs").rglob(CONFIG_FILE))
    if not records:
        pytest.skip("no archived runs in this checkout")
    for path in records:
        assert read_record(path.parent)["model"]["in_channels"] in (1, 3)
        read_history(path.parent)


BAD_RECORDS = [
    # (what is wrong, how the record is built, field named in the message)
    ("config null", lambda: with_field("config", None), "'config'"),
    ("model a string", lambda: with_field("model", "naive"), "'model'"),
    ("in_channels text", lambda: with_field("model.in_channels", "one"),
     "'model.in_channels' must be 1 or 3, got 'one'"),
    ("in_channels 1e12", lambda: with_field("model.in_channels", 1e12), "'model.in_channels'"),
    ("in_channels true", lambda: with_field("model.in_channels", True), "'model.in_channels'"),
    ("image_size too small", lambda: with_field("model.image_size", 8), "'model.image_size'"),
    ("method missing", lambda: with_field("model.method", _DELETE), "'model.method' is missing"),
    ("threshold missing", lambda: with_field("threshold", _DELETE), "'threshold' is missing"),
    ("threshold text", lambda: with_field("threshold", "0.5"), "'threshold'"),
    ("threshold 400 digits", lambda: with_field("threshold", int("9" * 400)), "'threshold'"),
    ("threshold huge", lambda: with_field("threshold", 1e31), "'threshold'"),
    ("kept_epoch text", lambda: with_field("kept_epoch", "last"), "'kept_epoch'"),
    ("kept_epoch zero", lambda: with_field("kept_epoch", 0), "'kept_epoch'"),
    ("contamination zero", lambda: with_field("contamination", 0), "'contamination'"),
    ("contamination above half", lambda: with_field("contamination", 0.6), "'contamination'"),
    ("scaling reversed", lambda: with_field("score_scaling.train_min", 9.0), "'score_scaling.train_min'"),
    ("scaling not an object", lambda: with_field("score_scaling", [0, 1]), "'score_scaling'"),
    ("validation a list", lambda: with_field("validation", [1]), "'validation'"),
    ("world_size zero", lambda: with_field("world_size", 0), "'world_size'"),
    ("generator_parameters negative", lambda: with_field("model.generator_parameters", -1),
     "'model.generator_parameters'"),
    ("not an object", lambda: [good_record()], "must hold a JSON object"),
]


@pytest.mark.parametrize("what, build, named", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_a_damaged_record_is_one_line_naming_file_and_field(tmp_path, what, build, named):
    run = make_run(tmp_path, build())
    before = listing(run)
    msg = one_line_error(read_record, run, match=named)
    assert msg.startswith(str(run / CONFIG_FILE) + ":") and "re-train" in msg
    assert listing(run) == before  # reading never writes


def _text_with(field_text: str) -> str:
    """The good record's JSON with the threshold written as raw text."""
    return json.dumps(good_record()).replace('"threshold": 0.25', f'"threshold": {field_text}')


BAD_TEXTS = [
    ("bare NaN threshold", _text_with("NaN"), "field 'threshold' must be a finite number"),
    ("Infinity threshold", _text_with("-Infinity"), "field 'threshold'"),
    ("float overflow", _text_with("1" + "0" * 400 + ".5"), "field 'threshold'"),
    ("int beyond 4300 digits", _text_with("9" * 5000), "field 'threshold'"),
    ("NaN deep in data", json.dumps(good_record()).replace('"n_normal_train": 10', '"n_normal_train": NaN'),
     "field 'data.n_normal_train'"),
    ("deep nesting", json.dumps(good_record())[:-1] + ', "junk": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested more than"),
    ("not JSON", '{"format_version": 1,', "not valid JSON"),
    ("empty", "", "not valid JSON"),
]


@pytest.mark.parametrize("what, text, named", BAD_TEXTS, ids=[b[0] for b in BAD_TEXTS])
def test_a_damaged_record_text_is_one_line(tmp_path, what, text, named):
    run = make_run(tmp_path, text)
    msg = one_line_error(read_record, run, match=named)
    assert str(run / CONFIG_FILE) in msg


def test_non_utf8_and_oversized_records_are_refused(tmp_path):
    run = make_run(tmp_path, b'{"threshold": "\xff\xfe"}')
    one_line_error(read_record, run, match="not UTF-8")
    run = make_run(tmp_path, json.dumps({**good_record(), "pad": "x" * (rundir.MAX_RECORD_BYTES + 1)}))
    one_line_error(read_record, run, match="larger than")


def test_a_newer_format_asks_for_an_upgrade(tmp_path):
    run = make_run(tmp_path, with_field("format_version", rundir.FORMAT_VERSION + 1))
    one_line_error(read_record, run, match="upgrade agad")


def test_missing_run_directory_and_file_are_clear(tmp_path):
    one_line_error(read_record, tmp_path / "nope", match="does not exist")
    (tmp_path / "f").write_text("x")
    one_line_error(read_record, tmp_path / "f", match="is a file")
    (tmp_path / "empty").mkdir()
    one_line_error(read_record, tmp_path / "empty", match="no config.json")


def test_a_bad_config_section_names_the_file(tmp_path):
    run = make_run(tmp_path, with_field("config.epochs", "many"))
    msg = one_line_error(load_config, run, match="'epochs'")
    assert msg.startswith(str(run / CONFIG_FILE))
    run = make_run(tmp_path, with_field("config.no_such_key", 1), name="typo")
    one_line_error(load_config, run, match="unknown key 'no_such_key'")


def test_validate_config_hook_is_called(tmp_path):
    seen = []
    run = make_run(tmp_path, good_record())
    read_record(run, validate_config=seen.append)
    assert seen == [good_record()["config"]]

    def refuse(cfg):
        raise AgadError("The 'lr' parameter must be a number. Got 'x' instead.")

    one_line_error(read_record, run, validate_config=refuse, match="in field 'config': The 'lr' parameter")


def test_write_record_refuses_a_nan_threshold_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    msg = one_line_error(write_record, run, with_field("threshold", float("nan")), match="field 'threshold'")
    assert "nothing was written" in msg and listing(run) == []
    one_line_error(validate_record, with_field("data.n_test", float("inf")), "mem", match="'data.n_test'")


# ------------------------------------------------------------------ atomic writes
def test_atomic_json_refuses_non_finite_numbers_naming_the_key(tmp_path):
    path = tmp_path / "m.json"
    one_line_error(atomic_write_json, path, {"a": {"b": [1.0, float("-inf")]}}, match="field 'a.b[1]' is -inf")
    assert listing(tmp_path) == []
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}


def test_files_and_folders_follow_the_umask(tmp_path, umask022):
    atomic_write_text(tmp_path / "sub" / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "sub" / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o755
    with staging_dir(tmp_path / "run") as tmp:
        atomic_write_json(tmp / CONFIG_FILE, good_record())
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run" / CONFIG_FILE).stat().st_mode) == 0o644
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.txt", "x")
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600


def _fail_on(monkeypatch, name: str, code: int, when=lambda *a: True):
    real = getattr(os, name)

    def fake(*args, **kw):
        if when(*args):
            raise OSError(code, os.strerror(code))
        return real(*args, **kw)

    monkeypatch.setattr(os, name, fake)


@pytest.mark.parametrize("call, code, words", [
    ("replace", errno.ENOSPC, "no space left"),
    ("write", errno.ENOSPC, "no space left"),
    ("replace", errno.EROFS, "read-only"),
    ("write", errno.EIO, "input/output error"),
])
def test_a_failing_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, call, code, words):
    path = tmp_path / "data.bin"
    _fail_on(monkeypatch, call, code)
    msg = one_line_error(atomic_write_bytes, path, b"x" * 1000, match=words)
    assert str(path) in msg and errno.errorcode[code] in msg
    monkeypatch.undo()
    assert listing(tmp_path) == []


def test_real_file_system_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    one_line_error(atomic_write_bytes, tmp_path / "file" / "a.txt", b"x", match="ENOTDIR")  # under a file
    one_line_error(atomic_write_bytes, tmp_path / ("n" * 300), b"x", match="ENAMETOOLONG")
    one_line_error(atomic_write_bytes, tmp_path / "folder", b"x", match="EISDIR")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_line_error(atomic_write_bytes, tmp_path / "loop" / "a.txt", b"x", match="ELOOP")
    assert listing(tmp_path) == ["file", "folder", "loop"] and listing(tmp_path / "folder") == []


# ------------------------------------------------------------------ errors of the file system
@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR,
                                  errno.EACCES, errno.ELOOP, errno.EPERM, errno.EDQUOT, 9999])
def test_every_os_error_is_one_line_naming_the_path(code):
    exc = OSError(code, "some\nsystem text", "/x/y.tmp")
    msg = os_error_message(exc, "runs/a")
    assert msg.startswith("runs/a: ") and "\n" not in msg and "; " in msg
    assert "at /x/y.tmp" in msg
    if code in errno.errorcode:
        assert errno.errorcode[code] in msg


def test_file_errors_is_a_context_manager_and_a_decorator(tmp_path):
    with pytest.raises(AgadError, match="ENOTDIR"):
        with file_errors(tmp_path / "out"):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")

    @file_errors("some/file")
    def boom():
        raise OSError(errno.EROFS, "Read-only file system")

    one_line_error(boom, match="some/file: the file system is read-only (EROFS)")
    with file_errors("x"):  # no error: nothing happens
        pass
    with pytest.raises(KeyError):  # other errors pass through
        with file_errors("x"):
            raise KeyError("k")


# ------------------------------------------------------------------ check_output_dir
def test_check_output_dir_accepts_a_new_path_without_creating_it(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    assert check_output_dir(out, overwrite=False) == out
    assert listing(tmp_path) == []


def test_check_output_dir_refusals(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(check_output_dir, tmp_path / "file" / "run", overwrite=False, match="is a file, not a directory")
    one_line_error(check_output_dir, tmp_path / "file", overwrite=True, match="is a file, not a run directory")
    (tmp_path / "done").mkdir()
    one_line_error(check_output_dir, tmp_path / "done", overwrite=False, match="already exists")
    assert check_output_dir(tmp_path / "done", overwrite=True)
    (tmp_path / "link").symlink_to(tmp_path / "done")
    one_line_error(check_output_dir, tmp_path / "link", overwrite=True, match="symbolic link")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    one_line_error(check_output_dir, tmp_path / "dangling" / "run", overwrite=False, match="broken symbolic link")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_line_error(check_output_dir, tmp_path / "loop" / "run", overwrite=False, match="loop")
    one_line_error(check_output_dir, tmp_path / ("n" * 300), overwrite=False, match="too long")
    one_line_error(check_output_dir, tmp_path / ("n" * 250), overwrite=False, match="too long")


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                          (errno.ENOSPC, "no space left")])
def test_check_output_dir_probes_that_the_parent_is_writable(tmp_path, monkeypatch, code, words):
    _fail_on(monkeypatch, "open", code, when=lambda p, *a: ".agad-probe-" in str(p))
    msg = one_line_error(check_output_dir, tmp_path / "new" / "run", overwrite=False, match=words)
    assert str(tmp_path / "new" / "run") in msg and f"at {tmp_path}" in msg
    monkeypatch.undo()
    assert listing(tmp_path) == []


# ------------------------------------------------------------------ staging
def test_staging_renames_into_place_and_leaves_nothing_else(tmp_path):
    final = tmp_path / "run"
    with staging_dir(final) as tmp:
        assert tmp == staging_path(final) and tmp.name == ".run.staging"
        atomic_write_text(tmp / "a.txt", "1")
        (tmp / CHECKPOINT_DIR).mkdir()
        atomic_write_text(tmp / CHECKPOINT_DIR / "state", "s")
        assert lock_path(final).exists()
    assert listing(tmp_path) == ["run"] and listing(final) == ["a.txt"]  # checkpoint removed, lock file gone


def test_a_finished_run_is_never_touched_unless_overwrite(tmp_path):
    final = tmp_path / "run"
    with staging_dir(final) as tmp:
        atomic_write_text(tmp / "a.txt", "old")
    one_line_error(lambda: staging_dir(final).__enter__(), match="already exists")
    assert (final / "a.txt").read_text() == "old" and listing(tmp_path) == ["run"]
    with staging_dir(final, overwrite=True, keep_checkpoint=True) as tmp:
        atomic_write_text(tmp / "b.txt", "new")
        (tmp / CHECKPOINT_DIR).mkdir()
    assert listing(final) == ["b.txt", CHECKPOINT_DIR] and listing(tmp_path) == ["run"]


def test_an_error_removes_the_staging_folder(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(final) as tmp:
            atomic_write_text(tmp / "a.txt", "1")
            raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_keep_on_error_keeps_the_staging_folder_and_says_where(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(AgadError) as info:
        with staging_dir(final, keep_on_error=True) as tmp:
            (tmp / CHECKPOINT_DIR).mkdir()
            raise AgadError("training diverged at epoch 3; lower lr")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("training diverged") and str(staging_path(final)) in msg
    assert listing(tmp_path) == [".run.staging"] and (staging_path(final) / CHECKPOINT_DIR).is_dir()
    with pytest.raises(RuntimeError) as info:  # another error: the note is added to it
        with staging_dir(final, keep_on_error=True, resume=True):
            raise RuntimeError("boom")
    assert any(str(staging_path(final)) in n for n in info.value.__notes__)


def test_an_orphan_staging_folder_is_removed_or_resumed(tmp_path):
    final = tmp_path / "run"
    orphan = staging_path(final)
    orphan.mkdir()
    (orphan / CHECKPOINT_DIR).mkdir()
    (orphan / CHECKPOINT_DIR / "state").write_text("epoch 3")
    (tmp_path / ".run.ab12cd.tmp").mkdir()  # the random-named staging of older versions
    with staging_dir(final, resume=True, keep_checkpoint=True) as tmp:
        assert (tmp / CHECKPOINT_DIR / "state").read_text() == "epoch 3"
    assert listing(tmp_path) == ["run"] and (final / CHECKPOINT_DIR / "state").read_text() == "epoch 3"

    orphan.mkdir()
    (orphan / "half.txt").write_text("x")
    with staging_dir(tmp_path / "run", overwrite=True) as tmp:
        assert listing(tmp) == []  # a fresh start: the orphan was removed
    assert listing(tmp_path) == ["run"]


def test_the_staging_folder_of_a_killed_process_is_cleaned(tmp_path):
    final = tmp_path / "run"
    code = ("import os, signal, sys\nfrom agad.rundir import staging_dir\n"
            "with staging_dir(sys.argv[1]) as tmp:\n    (tmp / 'half.bin').write_bytes(b'x')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", code, str(final)], capture_output=True, timeout=60)
    assert out.returncode == -9 and (staging_path(final) / "half.bin").is_file()  # SIGKILL skips every cleanup
    with staging_dir(final) as tmp:  # the dead process's lock is gone with it; its staging folder is removed
        assert listing(tmp) == []
        atomic_write_text(tmp / "a.txt", "1")
    assert listing(tmp_path) == ["run"] and listing(final) == ["a.txt"]


def test_a_run_killed_mid_swap_is_put_back(tmp_path):
    final = tmp_path / "run"
    replaced = tmp_path / ".run.replaced"
    replaced.mkdir()
    (replaced / "a.txt").write_text("finished")
    one_line_error(lambda: staging_dir(final).__enter__(), match="already exists")
    assert (final / "a.txt").read_text() == "finished" and listing(tmp_path) == ["run"]


def test_a_second_staging_of_the_same_output_is_refused_in_a_thread(tmp_path):
    final = tmp_path / "run"
    errors: list[str] = []

    def second():
        try:
            with staging_dir(final):
                pass
        except AgadError as exc:
            errors.append(str(exc))

    with staging_dir(final) as tmp:
        t = threading.Thread(target=second)
        t.start()
        t.join(10)
        atomic_write_text(tmp / "a.txt", "first")
    assert len(errors) == 1 and "another run is writing" in errors[0] and "\n" not in errors[0]
    assert (final / "a.txt").read_text() == "first" and listing(tmp_path) == ["run"]


def test_a_second_staging_of_the_same_output_is_refused_in_a_process(tmp_path):
    final = tmp_path / "run"
    code = ("import sys\nfrom agad.rundir import staging_dir\nfrom agad.errors import AgadError\n"
            "try:\n    staging_dir(sys.argv[1]).__enter__()\nexcept AgadError as e:\n    print(e); sys.exit(2)\n")
    with staging_dir(final):
        out = subprocess.run([sys.executable, "-c", code, str(final)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "another run is writing" in out.stdout
    assert listing(tmp_path) == ["run"]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")])
def test_a_failing_rename_into_place_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code, words):
    final = tmp_path / "run"
    _fail_on(monkeypatch, "replace", code, when=lambda src, *a: str(src).endswith(".staging"))
    with pytest.raises(AgadError) as info:
        with staging_dir(final) as tmp:
            atomic_write_text(tmp / "a.txt", "1")
    monkeypatch.undo()
    assert words in str(info.value) and str(final) in str(info.value) and "\n" not in str(info.value)
    assert listing(tmp_path) == []


def test_an_os_error_inside_the_block_is_one_line(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(AgadError, match="no space left on the device"):
        with staging_dir(final):
            raise OSError(errno.ENOSPC, "No space left on device")  # e.g. from inside safetensors
    assert listing(tmp_path) == []


# ------------------------------------------------------------------ history
def test_history_round_trips_with_non_finite_losses_as_null(tmp_path):
    hist = [{"epoch": 1, "G/total": 1.5, "seconds": 0.1}, {"epoch": 2, "G/total": float("nan"), "nonfinite": 1.0}]
    write_history(tmp_path / HISTORY_FILE, hist)
    assert "NaN" not in (tmp_path / HISTORY_FILE).read_text() and "null" in (tmp_path / HISTORY_FILE).read_text()
    back = read_history(tmp_path)
    assert back[0] == hist[0] and back[1]["G/total"] != back[1]["G/total"] and back[1]["epoch"] == 2
    assert read_history(tmp_path / "absent") == []


BAD_HISTORY = [
    ("corrupt line", '{"epoch": 1, "x": 1}\n{"epoch": 2, "x": \n', "line 2", "not valid JSON"),
    ("text value", '{"epoch": 1, "x": "high"}\n', "line 1", "field 'x'"),
    ("a list", "[1, 2]\n", "line 1", "JSON object"),
    ("NaN constant", '{"epoch": 1, "x": NaN}\n', "line 1", "field 'x'"),
    ("epoch missing", '{"x": 1}\n', "line 1", "'epoch' is missing"),
    ("epoch text", '{"epoch": "one"}\n', "line 1", "'epoch'"),
    ("epoch repeats", '{"epoch": 1}\n\n{"epoch": 1}\n', "line 3", "does not follow"),
    ("nested", '{"epoch": 1, "x": {"y": 1}}\n', "line 1", "field 'x'"),
    ("deep", '{"epoch": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}\n", "line 1", "nested"),
    ("long line", '{"epoch": 1, "x": "' + "a" * 70_000 + '"}\n', "line 1", "longer than"),
    ("not UTF-8", b'{"epoch": 1}\n\xff\n', HISTORY_FILE, "UTF-8"),
]


@pytest.mark.parametrize("what, text, where, named", BAD_HISTORY, ids=[b[0] for b in BAD_HISTORY])
def test_a_damaged_history_names_the_line(tmp_path, what, text, where, named):
    data = text if isinstance(text, bytes) else text.encode()
    (tmp_path / HISTORY_FILE).write_bytes(data)
    msg = one_line_error(read_history, tmp_path, match=named)
    assert str(tmp_path / HISTORY_FILE) in msg and where in msg


# ------------------------------------------------------------------ scores
def test_scores_csv_round_trip_and_damage(tmp_path):
    import numpy as np

    write_scores_csv(tmp_path / "s.csv", np.array([0.5, 1.25]), np.array([0, 1]))
    scores, labels = read_scores_csv(tmp_path / "s.csv")
    assert scores.tolist() == [0.5, 1.25] and labels.tolist() == [0, 1]
    (tmp_path / "bad.csv").write_text("index,score\n0,high\n")
    one_line_error(read_scores_csv, tmp_path / "bad.csv", match="'score'")
    one_line_error(read_scores_csv, tmp_path / "none.csv", match="ENOENT")


def test_train_scores_round_trip_and_damage(tmp_path, umask022):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / rundir.TRAIN_SCORES_FILE
    write_train_scores(path, np.array([0.1, 0.2, 0.3], dtype=np.float32))
    assert read_train_scores(path).dtype == np.float64 and stat.S_IMODE(path.stat().st_mode) == 0o644
    one_line_error(write_train_scores, tmp_path / "nan.safetensors", np.array([np.nan]), match="nothing was written")
    save_file({"decision_scores": np.array([1.0, np.inf])}, str(path))
    one_line_error(read_train_scores, path, match="non-finite")
    save_file({"decision_scores": np.array([1, 2], dtype=np.int32)}, str(path))
    one_line_error(read_train_scores, path, match="must be float64")
    path.write_bytes(b"garbage")
    one_line_error(read_train_scores, path, match="cannot read")
    assert listing(tmp_path) == [rundir.TRAIN_SCORES_FILE]


# ------------------------------------------------------------------ fuzz
if given is not None:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )
    FIELDS = ["config", "model", "model.in_channels", "model.image_size", "model.method", "threshold",
              "contamination", "score_scaling", "score_scaling.train_min", "kept_epoch", "validation", "data",
              "format_version", "world_size"]
    FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

    def _check_record(run: Path) -> None:
        try:
            rec = read_record(run)
        except AgadError as exc:
            assert "\n" not in str(exc)
            return
        validate_record(rec, "again")  # what comes back is valid
        json.dumps(rec, allow_nan=False)

    @FUZZ
    @given(field=st.sampled_from(FIELDS), value=json_values)
    def test_fuzz_read_record_with_a_changed_field(tmp_path, field, value):
        run = make_run(tmp_path, json.dumps(with_field(field, value)))
        _check_record(run)

    @FUZZ
    @given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
           | json_values.map(lambda v: json.dumps(v).encode()))
    def test_fuzz_read_record_with_any_bytes(tmp_path, data):
        _check_record(make_run(tmp_path, data))

    @FUZZ
    @given(lines=st.lists(st.dictionaries(st.sampled_from(["epoch", "x", "G/total"]), json_values, max_size=3)
                          .map(json.dumps) | st.text(max_size=30), max_size=5))
    def test_fuzz_read_history(tmp_path, lines):
        (tmp_path / HISTORY_FILE).write_text("\n".join(lines))
        try:
            rows = read_history(tmp_path)
        except AgadError as exc:
            assert "\n" not in str(exc)
            return
        epochs = [r["epoch"] for r in rows]
        assert epochs == sorted(set(epochs)) and all(isinstance(v, (int, float)) for r in rows for v in r.values())
else:
    @pytest.mark.skip(reason="hypothesis is not installed (pip install hypothesis)")
    def test_fuzz_read_record_and_history():
        pass
