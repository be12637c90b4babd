"""Named recipes: small sets of TrainConfig overrides, one TOML file each in this package.

A recipe file holds a ``description`` string and TrainConfig field values; everything it does not set keeps
TrainConfig's default. The shipped recipes:

- ``default``: the shipped default (no overrides): AdvProp auxiliary BN + scoring with an EMA of G; with
  labelled anomalies a label head beside G, running statistics of normal images only, 10% of the normal
  training images held out and the val-ratio epoch kept;
- ``paper``: the paper read literally: ``advprop = false``, ``ema_decay = 0.0``, ``val_fraction = 0.0``,
  ``epochs = 15`` (no step floor), the plain discriminator, the unbounded push, shared running statistics
  and no label head;
- ``no-ca``: the default without the contextual adversarial term (``ca = false``).

>>> RECIPES
('default', 'no-ca', 'paper')
>>> recipe("paper")
{'advprop': False, 'ema_decay': 0.0, 'val_fraction': 0.0, 'epochs': 15, 'd_spectral_norm': False, 'adcon_cap': 0.0, 'label_head': False, 'track_bn_anomalies': True}
>>> TrainConfig(**recipe("no-ca")).ca
False

The files are read with :mod:`importlib.resources`, so they are found in an installed package too.
"""

from __future__ import annotations

import functools
import tomllib
import types
import typing
from importlib import resources
from typing import Any

from ..config import TrainConfig
from ..errors import AgadError

__all__ = ["RECIPES", "check_overrides", "describe", "recipe"]

SUFFIX = ".toml"
DEFAULT = "default"


def _names() -> tuple[str, ...]:
    found = sorted(p.name[: -len(SUFFIX)] for p in resources.files(__name__).iterdir()
                   if p.name.endswith(SUFFIX) and p.is_file())
    return tuple(sorted(found, key=lambda n: (n != DEFAULT, n)))  # the default first, then by name


RECIPES: tuple[str, ...] = _names()


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, "a table")


def _matches(value: Any, tp: Any) -> bool:
    """Whether a TOML value fits a TrainConfig field's type hint (None never comes from TOML)."""
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    origin = typing.get_origin(tp)
    if origin is dict:
        return isinstance(value, dict)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp) if a is not type(None))
    return True  # a field type this check does not know: TrainConfig's own validation decides


def _bare(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is not dict and len(args) == 1 else tp


def check_overrides(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check that ``values`` are TrainConfig fields of the right types; raise one-line AgadErrors naming ``where``.

    >>> check_overrides({"epochs": 2}, "x.toml")
    {'epochs': 2}
    >>> check_overrides({"epochs": "two"}, "x.toml")
    Traceback (most recent call last):
    ...
    agad.errors.AgadError: x.toml: epochs must be an integer; got 'two'
    """
    hints = typing.get_type_hints(TrainConfig)
    for key, value in values.items():
        if key not in hints:
            raise AgadError(f"{where}: unknown config field {key!r}; valid fields are: "
                            f"{', '.join(TrainConfig.field_names())}")
        if not _matches(value, hints[key]):
            raise AgadError(f"{where}: {key} must be {_type_name(_bare(hints[key]))}; got {value!r}")
    return dict(values)


@functools.lru_cache(maxsize=None)
def _load(name: str) -> tuple[dict[str, Any], str]:
    if not RECIPES:  # a broken install: the package data was left out
        raise AgadError("no recipe files in the agad.recipes package: reinstall agad with its *.toml package data")
    if name not in RECIPES:
        raise AgadError(f"unknown recipe {name!r}; valid recipes are: {', '.join(RECIPES)}")
    where = f"recipe {name} (agad/recipes/{name}{SUFFIX})"
    try:
        data = tomllib.loads(resources.files(__name__).joinpath(name + SUFFIX).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AgadError(f"{where}: not valid TOML: {exc}") from None
    description = data.pop("description", None)
    if not isinstance(description, str) or not description.strip():
        raise AgadError(f"{where}: needs a description string saying what the recipe is")
    overrides = check_overrides(data, where)
    try:
        TrainConfig(**overrides)
    except AgadError as exc:
        raise AgadError(f"{where}: {exc}") from None
    return overrides, " ".join(description.split())


def recipe(name: str) -> dict[str, Any]:
    """The TrainConfig overrides of recipe ``name`` (a new dict; empty for ``default``).

    >>> recipe("default")
    {}
    """
    return dict(_load(name)[0])


def describe(name: str) -> str:
    """What recipe ``name`` is, in one paragraph.

    >>> describe("no-ca").startswith("The default without the contextual adversarial term")
    True
    """
    return _load(name)[1]
