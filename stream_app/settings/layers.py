"""The layers of settings: defaults < TOML files < the environment, for any tree of sections.

A *tree* is a frozen dataclass whose fields are *sections*: frozen dataclasses of plain values
(str, int, float, bool, a tuple or a dict), each checking its own fields in ``__post_init__``. The
worker's :class:`~stream_app.settings.Settings` is one tree; the tools extend it with their own
sections (``stream_app.tools.settings``). Both load through :func:`load`, so a file key or an
environment variable means the same thing whoever reads it, and the worker never imports the tools
to do so: it is told only the names of their sections, and passes over them.

>>> from stream_app.settings import Settings
>>> env = {"STREAM_APP_WEB__PORT": "7000", "STREAM_APP_DEMO__RATE": "5"}
>>> load(Settings, env, files=[], elsewhere=("demo",)).web.port
7000
>>> load(Settings, env, files=[])
Traceback (most recent call last):
    ...
stream_app.errors.ConfigError: environment: unknown settings section [demo]
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeVar

from stream_app.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "MASK",
    "SHORT_ENV",
    "MaskedRepr",
    "Tree",
    "as_dict",
    "config_files",
    "load",
    "rebuild",
]

ENV_PREFIX: Final = "STREAM_APP_"
DEFAULT_CONFIG_FILE: Final = Path(__file__).resolve().parents[2] / "config" / "default.toml"
CONFIG_ENV: Final = "STREAM_APP_CONFIG"
"""The environment variable naming a TOML file layered over ``config/default.toml``."""
MASK: Final = "***"
"""What a repr shows in place of a secret."""

SHORT_ENV: Final[Mapping[str, tuple[str, str]]] = {
    "STREAM_APP_BROKER": ("app", "broker"),
    "STREAM_APP_ID": ("app", "id"),
    "STREAM_APP_DATA_DIR": ("app", "data_dir"),
    "STREAM_APP_WEB_PORT": ("web", "port"),
    "STREAM_APP_PARTITIONS": ("topics", "partitions"),
}
"""The short environment names the contract promises, as (section, key)."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class Tree(Protocol):
    """A frozen dataclass whose fields are sections (what :func:`load` builds)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


T = TypeVar("T", bound=Tree)


class MaskedRepr:
    """A repr that shows ``***`` for the secrets a section names, so a logged repr leaks nothing."""

    SECRETS: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            shown.append(f"{f.name}={MASK if f.name in self.SECRETS and value else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


def config_files(env: Mapping[str, str]) -> list[Path]:
    """Return the files to layer: ``config/default.toml`` (if present), then ``$STREAM_APP_CONFIG``.

    >>> config_files({"STREAM_APP_CONFIG": "/etc/mine.toml"})[-1]
    PosixPath('/etc/mine.toml')
    """
    files = [DEFAULT_CONFIG_FILE] if DEFAULT_CONFIG_FILE.exists() else []
    if env.get(CONFIG_ENV):
        files.append(Path(env[CONFIG_ENV]))
    return files


def load(
    tree: type[T],
    env: Mapping[str, str] | None = None,
    files: Sequence[Path] | None = None,
    *,
    elsewhere: Collection[str] = (),
) -> T:
    """Build ``tree`` from the layers: its defaults, ``files`` in order, then ``env``.

    ``env`` defaults to ``os.environ`` and ``files`` to :func:`config_files`. An unknown section,
    key or type is refused with a :class:`~stream_app.errors.ConfigError` naming it, except the
    sections named in ``elsewhere``: another tree reads and checks those, this one passes over them.
    """
    env = os.environ if env is None else env
    files = config_files(env) if files is None else files
    layered = as_dict(tree())
    for path in files:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        layered = _merge(tree, layered, data, str(path), strings=False, elsewhere=elsewhere)
    from_env = _from_env(env)
    return _build(
        tree, _merge(tree, layered, from_env, "environment", strings=True, elsewhere=elsewhere)
    )


def rebuild(settings: T, sections: Mapping[str, Mapping[str, Any]]) -> T:
    """Return ``settings`` with some keys of some sections replaced, checked as in a file."""
    tree = type(settings)
    return _build(tree, _merge(tree, as_dict(settings), sections, "replace()", strings=False))


def as_dict(settings: Tree) -> dict[str, dict[str, Any]]:
    """Return a tree as plain nested dicts (the shape of the TOML files)."""
    return {
        name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        for name, section in dataclasses.asdict(settings).items()
    }


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Return the resolved field types of a tree or a section (resolved once: they never change)."""
    return typing.get_type_hints(cls)


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``STREAM_APP_*`` variables as a nested dict of raw strings."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if name in SHORT_ENV:
            section, key = SHORT_ENV[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        else:
            continue
        out.setdefault(section, {})[key] = value
    return out


def _merge(
    tree: type[Tree],
    base: dict[str, dict[str, Any]],
    layer: Mapping[str, Any],
    origin: str,
    *,
    strings: bool,
    elsewhere: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """Overlay ``layer`` on ``base``, refusing unknown sections, keys and types.

    ``strings`` says the layer's values are text to parse (the environment); a TOML file's values
    must already have the setting's type.
    """
    merged = {section: dict(values) for section, values in base.items()}
    hints = _hints(tree)
    for section, values in layer.items():
        if section in elsewhere and section not in merged:
            continue
        if section not in merged or not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: unknown settings section [{section}]")
        section_hints = _hints(hints[section])
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}")
            where = f"{origin}: {section}.{key}"
            merged[section][key] = _coerce(value, section_hints[key], where, strings=strings)
    return merged


def _coerce(value: Any, kind: Any, where: str, *, strings: bool) -> Any:
    """Convert ``value`` (a TOML value or an environment string) to the setting's type.

    >>> _coerce("off", bool, "env", strings=True), _coerce(2, float, "file", strings=False)
    (False, 2.0)
    """
    origin = typing.get_origin(kind)
    if origin in (tuple, dict):
        if strings and isinstance(value, str):  # the environment spells them as TOML values
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{where}: expected a TOML {origin.__name__}: {exc}") from exc
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(value)
        if origin is dict and isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{where}: expected a {'list' if origin is tuple else 'table'}")
    if strings and isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        try:
            return kind(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _build(tree: type[T], data: Mapping[str, Mapping[str, Any]]) -> T:
    """Instantiate a tree from a merged nested dict; each section checks its own fields."""
    hints = _hints(tree)
    return tree(**{name: hints[name](**data[name]) for name in hints})
