"""The option table (agad.config.OPTIONS): it covers every TrainConfig field, validates each one by name, and
is what `agad train --help` and the AGAD estimator show."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import re

import pytest

from agad import AGAD
from agad.cli import main
from agad.config import (DEFAULTS, METHOD_LABELS, METHODS, OPTIONS, REMOVED_OPTIONS, RUNTIME_FIELDS, Option,
                         TrainConfig, check_labels)
from agad.errors import AgadError


def bad_values(opt: Option) -> list[object]:
    """Values each option must refuse: a wrong type, None where it is not optional, out of range, unknown choice."""
    bad: list[object] = [] if opt.optional else [None]
    if opt.kind == "bool":
        bad += ["yes", 1, 0.0]
    elif opt.kind == "choice":
        bad += ["no-such-" + opt.choices[0], 3, opt.choices[0].upper() + "!"]
    elif opt.kind == "str":
        bad += [5, "", ["x"]]
    elif opt.kind == "dict":
        bad += ["x", [1, 2]]
    elif opt.kind == "paths":
        bad += ["one/dir", [""], [3], ("a",)]
    elif opt.kind == "class":  # an index or a class folder's name
        bad += [-1, opt.hi + 1, True, 1.5, "", "  ", ["NORMAL"]]
    else:
        bad += ["3", True, math.nan]
        if opt.kind == "int":
            bad.append(2.5)
        else:
            bad.append(math.inf)
        if math.isfinite(opt.lo):
            bad.append(opt.lo if opt.lo_open else opt.lo - 1)
        if math.isfinite(opt.hi):
            bad.append(opt.hi if opt.hi_open else opt.hi + 1)
    return bad


CASES = [(name, value) for name, opt in OPTIONS.items() for value in bad_values(opt)]


KINDS = {"bool", "int", "float", "choice", "str", "dict", "paths", "class"}


def test_options_cover_exactly_the_config_fields():
    assert list(OPTIONS) == list(TrainConfig.field_names())
    assert RUNTIME_FIELDS == {name for name, opt in OPTIONS.items() if opt.runtime}
    assert RUNTIME_FIELDS and RUNTIME_FIELDS < set(OPTIONS)
    # DEFAULTS holds every default but the fresh containers (a dict, lists of folders)
    fresh = {f.name for f in dataclasses.fields(TrainConfig) if f.default_factory is not dataclasses.MISSING}
    assert "extra" in fresh and set(DEFAULTS) == set(TrainConfig.field_names()) - fresh
    assert {k: v for k, v in TrainConfig().to_dict().items() if k not in fresh} == DEFAULTS
    for name, opt in OPTIONS.items():
        assert opt.kind in KINDS, name
        assert opt.help and opt.group, name
        assert (opt.kind == "choice") == bool(opt.choices), name


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_default_passes_its_own_check(name):
    value = getattr(TrainConfig(), name)
    OPTIONS[name].check(name, value)  # raises if the table and the dataclass disagree
    if value is None:
        assert OPTIONS[name].optional, name


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_a_bad_value_is_one_line_naming_the_option(name, value):
    with pytest.raises(AgadError) as info:
        TrainConfig(**{name: value})
    msg = str(info.value)
    assert "\n" not in msg and f"'{name}'" in msg, msg
    with pytest.raises(AgadError, match=re.escape(f"'{name}'")):
        OPTIONS[name].check(name, value)


def test_every_kind_of_option_has_a_bad_value():
    assert {OPTIONS[name].kind for name, _ in CASES} == KINDS
    ranged = {name for name, opt in OPTIONS.items() if math.isfinite(opt.lo) or math.isfinite(opt.hi)}
    assert {"gamma", "epochs", "lr", "beta2", "ema_decay", "val_fraction"} <= ranged


def test_bounds_are_inclusive_or_open_as_the_table_says():
    TrainConfig(gamma=0.0, ema_decay=0.0, scoring_bn_anomaly_weight=1.0, image_size=16, epochs=1)
    for name, value in (("gamma", 1.0), ("ema_decay", 1.0), ("lr", 0.0), ("eps", 0.0)):
        with pytest.raises(AgadError, match=re.escape(f"'{name}' parameter must be in")):
            TrainConfig(**{name: value})


def test_optional_options_accept_none():
    optional = [name for name, opt in OPTIONS.items() if opt.optional]
    assert {"known_classes", "image_size", "val_fraction"} <= set(optional)
    cfg = TrainConfig(**{name: None for name in optional})
    assert all(getattr(cfg, name) is None for name in optional)


@pytest.mark.parametrize("name", list(REMOVED_OPTIONS))
def test_removed_options_load_at_their_kept_value_and_are_refused_otherwise(name):
    kept = REMOVED_OPTIONS[name]
    assert name not in OPTIONS and name not in TrainConfig.field_names()
    assert TrainConfig.from_dict({"epochs": 2, name: kept}) == TrainConfig(epochs=2)
    other = (not kept) if isinstance(kept, bool) else kept + "-other" if isinstance(kept, str) else kept + 1
    with pytest.raises(AgadError) as info:
        TrainConfig.from_dict({name: other}, source="old.json")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("old.json") and repr(name) in msg and "removed" in msg
    with pytest.raises(TypeError):  # gone from the dataclass itself: only records written earlier are read
        TrainConfig(**{name: kept})


def test_unknown_keys_are_refused_with_the_valid_ones_listed():
    with pytest.raises(AgadError, match=r"run.json: unknown key 'epoch'; valid keys are: .*epochs"):
        TrainConfig.from_dict({"epoch": 3}, source="run.json")
    with pytest.raises(AgadError, match="must be a table of options"):
        TrainConfig.from_dict(["epochs"])
    cfg = TrainConfig(normal_class=3, gamma=0.05, extra={"note": "x"})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_methods_and_what_they_do_with_labels():
    assert METHODS == tuple(METHOD_LABELS)
    assert {"agad", "ganomaly", "skip-ganomaly", "logreg", "cnn", "deep-sad"} == set(METHODS)
    assert set(METHOD_LABELS.values()) == {"uses", "ignores", "needs"}
    for method, rule in METHOD_LABELS.items():
        if rule == "ignores":
            check_labels(method, 0.0)
            with pytest.raises(AgadError, match="semi-supervised"):
                check_labels(method, 0.05)
        elif rule == "needs":
            check_labels(method, 0.05)
            with pytest.raises(AgadError, match="needs labelled anomalies"):
                check_labels(method, 0.0)
        else:
            check_labels(method, 0.0)
            check_labels(method, 0.05)
    with pytest.raises(AgadError, match="needs labelled anomalies"):  # the config applies the same rule
        TrainConfig(method="logreg")


@pytest.fixture(scope="module")
def train_help() -> dict[str, str]:
    """`agad train --help` as {flag invocation: its help text}, printed wide so that nothing wraps."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COLUMNS", "2000")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            main(["train", "--help"])
    finally:
        mp.undo()
    assert exc.value.code == 0
    entries: dict[str, str] = {}
    lines = out.getvalue().split("options:", 1)[1].splitlines()  # past the usage block
    for i, line in enumerate(lines):
        if line.startswith("  -"):
            invocation, _, help_ = line.strip().partition("  ")
            if not help_.strip() and i + 1 < len(lines):  # a long invocation: the help is on the next line
                help_ = lines[i + 1]
            entries[invocation.strip()] = " ".join(help_.split())
    return entries


def _shown(value: object) -> str:
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("name", [n for n, opt in OPTIONS.items() if opt.cli])
def test_every_cli_option_is_a_flag_showing_its_default(train_help, name):
    opt, flag = OPTIONS[name], "--" + name.replace("_", "-")
    if opt.kind == "paths":  # repeatable, one folder each: --normal-dir DIR; nothing by default
        invocation = "--" + name[: -len("_dirs")].replace("_", "-") + "-dir DIR"
        assert invocation in train_help, sorted(train_help)
        assert train_help[invocation] == opt.help
        return
    if opt.kind == "class":
        invocation = f"{flag} K|NAME"
    elif opt.kind == "bool":
        invocation = f"{flag}, --no-{flag[2:]}"
    elif opt.kind == "choice":
        invocation = f"{flag} {{{','.join(opt.choices)}}}"
    elif opt.kind in ("int", "float"):
        invocation = f"{flag} {opt.kind.upper()}"
    else:
        invocation = f"{flag} {name.upper()}"
    assert invocation in train_help, sorted(train_help)
    assert train_help[invocation] == f"{opt.help} (default: {_shown(DEFAULTS[name])})"


def test_options_off_the_cli_have_no_flag(train_help):
    hidden = [name for name, opt in OPTIONS.items() if not opt.cli]
    assert hidden == ["extra"]
    assert not any(inv.startswith("--extra") for inv in train_help)


def test_every_estimator_option_is_an_agad_parameter_with_the_same_default():
    sig = inspect.signature(AGAD)
    params = AGAD().get_params()
    estimator = [name for name, opt in OPTIONS.items() if opt.estimator]
    assert estimator and {"backbone", "epochs", "ca", "advprop", "device", "precision"} <= set(estimator)
    for name in estimator:
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert sig.parameters[name].default == DEFAULTS[name], name
        assert params[name] == DEFAULTS[name], name
    # what a run is about (data, protocol, method, seed, ...) is set by fit's input, not by parameters
    for name in (n for n, opt in OPTIONS.items() if not opt.estimator):
        assert name not in sig.parameters, name
    assert set(sig.parameters) == set(estimator) | {"contamination", "random_state", "verbose"}
