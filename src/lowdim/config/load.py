"""Read a parameter file and build the sections a stage reads, each validated before it is used.

`load(params_file, overrides, *Sections)` checks the file's layout (a mapping of known sections),
then builds each requested section: every key known, every type and value checked. Errors raise
`ConfigError` with a message that names the key (e.g. ``grid.base_lr.sgd[0]``) and says what to do.
Per-field rules are declared on the fields (`Annotated[int, Positive]`) and read by `_coerce`;
rules over several fields of one section are the section's `check()` method (`check(where)` when
its messages name keys below a place that varies: a block of the list `grid[2]`).

When the environment variable `LOWDIM_PARAMS_LOG` names a file, the sections `load` returns log
each key the stage reads to it (`reads_logged`), so a test can compare them with the stage's
`params` in dvc.yaml; unset, `load` returns the plain sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

OPTIMIZERS = ("sgd", "sgdn", "adam")
# Every section a parameter file may hold, dotted for nested ones; each has a module of the same
# dotted name under lowdim.config, whose class names it in `SECTION`.
SECTIONS = ("data", "grid", "models", "train", "predictions", "distances", "embedding",
            "trajectories", "intervals", "studies.corners", "studies.synthetic",
            "studies.averaging", "studies.tangents", "studies.joint", "figures")
# Top-level keys that are not sections.
NAMES = ("profile",)


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the offending key."""


# --------------------------------------------------------------------------- field markers


def _shown(value: Any) -> Any:
    """A value as written in the parameter file (tuples back to lists)."""
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Check:
    """A rule on one value, declared as `Annotated[type, Check(test, says)]`; `says` follows
    "key = value: " in the message."""

    test: Callable[[Any], bool]
    says: str

    def check(self, value: Any, key: str) -> None:
        if not self.test(value):
            raise ConfigError(f"{key} = {_shown(value)!r}: {self.says}")


Positive = Check(lambda v: v > 0, "must be positive")


def Range(lo: float, hi: float, closed: str = "neither", note: str = "") -> Check:
    """A number between `lo` and `hi`; `closed`: which ends belong (neither, left, right, both)."""
    left, right = closed in ("left", "both"), closed in ("right", "both")

    def test(v: float) -> bool:
        return (lo <= v if left else lo < v) and (v <= hi if right else v < hi)

    interval = f"{'[' if left else '('}{lo:g}, {hi:g}{']' if right else ')'}"
    return Check(test, f"must be in {interval}{note}")


@dataclass(frozen=True)
class OneOf:
    """A name from a fixed list; the message suggests the closest one."""

    names: tuple[str, ...]

    def check(self, value: Any, key: str) -> None:
        check_one_of(value, self.names, key)


@dataclass(frozen=True)
class Unique:
    """A list that names each value once."""

    def check(self, value: Any, key: str) -> None:
        if len(set(value)) != len(value):
            raise ConfigError(f"{key} = {list(value)} repeats a value: list each once")


@dataclass(frozen=True)
class OneOrList:
    """A list of mappings that may also be written as its one mapping, as `Annotated[tuple[Block,
    ...], OneOrList()]`: the mapping keeps the list's key (`grid.arch`), the items of a list are
    numbered (`grid[2].arch`)."""

    def read(self, hint: Any, value: Any, key: str) -> Any:
        """`value` as a tuple of the items of `hint` (a `tuple[Item, ...]`), each built."""
        if isinstance(value, Mapping):
            return (_coerce(typing.get_args(hint)[0], value, key),)
        return _coerce(hint, value, key)

    def check(self, value: Any, key: str) -> None:
        """Nothing more to check: `read` built every item."""


def check_one_of(value: Any, allowed: tuple[str, ...], key: str) -> None:
    """Raise ConfigError unless `value` is one of `allowed` (with a "did you mean")."""
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key} = {value!r} is not known{hint}: use one of {', '.join(allowed)}")


def check_in_grid(value: Any, axis: tuple[str, ...], key: str, axis_name: str, todo: str) -> None:
    """Raise ConfigError unless `value` is on a grid axis (`todo`: what the user should do)."""
    if value not in axis:
        raise ConfigError(f"{key} = {value!r} is not in {axis_name} ({', '.join(axis)}): {todo}")


# --------------------------------------------------------------------------- reading


def load(params_file: str | Path, overrides: Mapping[str, Any] | None, *sections: type) -> Any:
    """The requested sections of a parameter file with `overrides` merged in, each built and
    validated: one object for one section class, else a tuple in the order asked. With
    `LOWDIM_PARAMS_LOG` set, each section logs the keys read from it (`reads_logged`)."""
    built = from_dict(read(params_file, overrides), *sections)
    if not os.environ.get(PARAMS_LOG):
        return built
    logged = tuple(reads_logged(s, s.SECTION) for s in (built if len(sections) > 1 else [built]))
    return logged[0] if len(logged) == 1 else logged


def read(params_file: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A parameter file as a mapping, `overrides` merged in; its layout (not its keys) checked."""
    path = Path(params_file)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist: pass params.yaml or a profile")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    check_layout(overrides or {}, "overrides: ")
    return deep_merge(raw, overrides or {})


def from_dict(raw: Mapping[str, Any], *sections: type) -> Any:
    """The requested sections of a nested mapping (as read from YAML), built and validated."""
    if not sections:
        raise TypeError("name at least one section class, e.g. load(path, {}, DistancesConfig)")
    check_layout(raw)
    built = tuple(build(cls, section_of(raw, cls.SECTION), cls.SECTION) for cls in sections)
    return built[0] if len(built) == 1 else built


def check_layout(raw: Mapping[str, Any], prefix: str = "") -> None:
    """Every top-level key (and every key under `studies`) names a known section."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix}the parameter file must be a mapping, got {raw!r}")
    top = NAMES + tuple(dict.fromkeys(s.split(".")[0] for s in SECTIONS))
    for key in raw:
        if key not in top:
            raise ConfigError(prefix + _unknown_key_message(str(key), key, top))
    for parent in {s.split(".")[0] for s in SECTIONS if "." in s} & set(raw):
        children = tuple(s.split(".")[1] for s in SECTIONS if s.startswith(parent + "."))
        if not isinstance(raw[parent], Mapping):
            raise ConfigError(f"{prefix}{parent} must be a mapping, got {raw[parent]!r}")
        for key in raw[parent]:
            if key not in children:
                raise ConfigError(prefix + _unknown_key_message(_join(parent, key), key,
                                                                children))


def section_of(raw: Mapping[str, Any], section: str) -> Any:
    """The raw value of a dotted section; an absent section is empty (its defaults apply)."""
    if section not in SECTIONS:
        raise TypeError(f"{section!r} is not a section of the parameter file: one of {SECTIONS}")
    value: Any = raw
    for part in section.split("."):
        value = value.get(part, {}) if isinstance(value, Mapping) else value
    return value


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `overrides` merged in, recursively for nested mappings."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def as_dict(section: Any) -> Any:
    """A plain (YAML/JSON-ready) version of a config object."""
    if dataclasses.is_dataclass(section):
        if items := getattr(section, "ITEMS", None):
            return as_dict(getattr(section, items))
        return {f.name: as_dict(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, dict):
        return {k: as_dict(v) for k, v in section.items()}
    if isinstance(section, tuple | list):
        return [as_dict(v) for v in section]
    return section


# --------------------------------------------------------------------------- structure


def build(cls: type, raw: Any, where: str = "") -> Any:
    """Dataclass `cls` from mapping `raw`, keys and types checked recursively, then its own
    `check()`. A class with `ITEMS` holds the whole section in that one field: a mapping of free
    keys (`models`), or the blocks of a list (`grid`)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    if items := getattr(cls, "ITEMS", None):
        return _checked(cls(**{items: _coerce(hints[items], raw, where)}), where)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'the parameter file'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key_message(_join(where, key), key, fields))
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in raw:
            values[name] = _coerce(hints[name], raw[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {key}: every profile must set it (see profiles/)")
    return _checked(cls(**values), where)


def _checked(section: Any, where: str) -> Any:
    """`section` after its rules over several fields (its `check()`, if any) pass; a `check`
    that takes an argument is given the section's key (`where`), for its messages."""
    check = getattr(section, "check", None)
    if check is not None:
        check(where) if inspect.signature(check).parameters else check()
    return section


def _unknown_key_message(key: str, name: Any, fields: Any) -> str:
    close = difflib.get_close_matches(str(name), list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter key {key}{hint}: valid keys here are {', '.join(fields)}"


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against type `hint` and its markers; lists become tuples, ints floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        reader = next((m for m in hint.__metadata__ if isinstance(m, OneOrList)), None)
        value = reader.read(args[0], value, key) if reader else _coerce(args[0], value, key)
        for marker in hint.__metadata__:
            marker.check(value, key)
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {value!r}: must be a list, e.g. [{value!r}]")
        if not value:
            raise ConfigError(f"{key} is an empty list: give at least one value")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} = {value!r}: must be a mapping")
        return {_dict_key(args[0], k, key): _coerce(args[1], v, _join(key, k))
                for k, v in value.items()}
    return _scalar(hint, value, key)


def _coerce_union(args: tuple[Any, ...], value: Any, key: str) -> Any:
    """The first alternative whose type accepts `value`, then that alternative's markers."""
    if value is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    if len(inner) == 1:
        return _coerce(inner[0], value, key)
    for alternative in inner:
        try:
            _coerce(_bare(alternative), value, key)
        except ConfigError:
            continue
        return _coerce(alternative, value, key)
    raise ConfigError(f"{key} = {value!r}: must be {' or '.join(map(_describe, inner))}")


def _dict_key(hint: Any, name: Any, where: str) -> str:
    """A mapping's key as a string, checked by the markers of `Annotated[str, ...]`."""
    name = str(name)
    if typing.get_origin(hint) is Annotated:
        for marker in hint.__metadata__:
            marker.check(name, _join(where, name))
    return name


def _bare(hint: Any) -> Any:
    """`hint` without its markers."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _describe(hint: Any) -> str:
    """What a value of type `hint` looks like, for messages: 'auto', 'a whole number'."""
    hint = _bare(hint)
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {int: "a whole number", float: "a number", str: "a string",
            bool: "true or false"}.get(hint, str(hint))


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} = {value!r}: must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: must be a string")
        return value
    raise TypeError(f"unsupported type {hint} for {key}")  # a bug in lowdim.config, not in params


# --------------------------------------------------------------------------- the keys a stage reads

PARAMS_LOG = "LOWDIM_PARAMS_LOG"  # a file: every key a stage reads is appended to it


def reads_logged(section: Any, prefix: str) -> Any:
    """A copy of a built section that appends each key read from it to the `PARAMS_LOG` file:
    a field (`train.device`; a nested section's fields by their dotted keys, `train.ray.num_gpus`),
    a key of a mapping-like section (`models.fc`; its whole mapping when iterated: `models`)."""
    logged = object.__new__(_logging_class(type(section)))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            value = reads_logged(value, f"{prefix}.{f.name}")
        object.__setattr__(logged, f.name, value)
    object.__setattr__(logged, "_plain", section)
    object.__setattr__(logged, "_prefix", prefix)
    return logged


@functools.cache
def _logging_class(cls: type) -> type:
    """A subclass of section class `cls` whose reads are logged; named as `cls` (same repr)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    items = getattr(cls, "ITEMS", None)

    def __getattribute__(self: Any, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in fields and not dataclasses.is_dataclass(value):
            prefix = object.__getattribute__(self, "_prefix")
            _log_read(prefix if name == items else f"{prefix}.{name}")
        return value

    namespace: dict[str, Any] = {
        "__getattribute__": __getattribute__, "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        # pickled (to a worker process) as a logging copy of the plain section
        "__reduce__": lambda self: (reads_logged, (self._plain, self._prefix))}
    if items:  # a mapping-like section: logged by key, and whole when iterated or sized
        def getitem(self: Any, key: str) -> Any:
            _log_read(f"{self._prefix}.{key}")
            return self._plain[key]

        def whole(method: str) -> Callable[[Any], Any]:
            return lambda self: (_log_read(self._prefix), getattr(self._plain, method)())[1]

        namespace |= {"__getitem__": getitem, "__iter__": whole("__iter__"),
                      "__len__": whole("__len__")}
    return type(cls)(cls.__name__, (cls,), namespace)


_LOGGED: set[tuple[str, str]] = set()


def _log_read(key: str) -> None:
    """Append `{"stage": $DVC_STAGE, "key": key}` to the `PARAMS_LOG` file, once per process."""
    path, stage = os.environ.get(PARAMS_LOG), os.environ.get("DVC_STAGE", "")
    if path and (stage, key) not in _LOGGED:
        _LOGGED.add((stage, key))
        with open(path, "a") as log:
            log.write(json.dumps({"stage": stage, "key": key}) + "\n")
