"""The safe-load step: unpickle model state without letting the bytes choose what code runs.

A pickle names the globals (classes, functions) it needs and the unpickler calls them: a plain
``pickle.loads`` of bytes read from Kafka, HTTP or a file runs whatever its writer chose, such as
``os.system``. :func:`loads` resolves only the globals model state needs:

- classes and functions of River (``river.*``), except its data-set, stream and evaluation
  modules, which read and write files;
- classes of stream_app (``stream_app.*``): its functions start brokers and write files;
- data-holding builtins, ``collections`` types, ``functools.partial``, ``random.Random``, and the
  NumPy and pandas internals that rebuild arrays, frames and random generators;
- anything from the modules of ``registry.trusted_modules`` (a user's own factories).

Anything else is refused with :class:`UntrustedGlobal`, which names the global. :data:`RENAMES`
maps an old ``module:qualname`` to its new place and :data:`MOVED_MODULES` an old module to its
new one, so a release can move a class and still read what the previous one wrote.

This module imports only the standard library (like :mod:`stream_app.artifact`, which uses it).

>>> import os, pickle
>>> loads(pickle.dumps({"weights": [1.0, 2.0]}))
{'weights': [1.0, 2.0]}
>>> loads(pickle.dumps(os.system))
Traceback (most recent call last):
...
stream_app.registry.safeload.UntrustedGlobal: refused to load posix:system: not an allowed module
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "ALLOWED",
    "MOVED_MODULES",
    "RENAMES",
    "SafeUnpickler",
    "UntrustedGlobal",
    "check_global",
    "loads",
]

ALLOWED: Final = frozenset(
    {
        *(
            f"builtins:{name}"
            for name in (
                "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
                "list", "object", "range", "set", "slice", "str", "tuple", "NoneType",
            )
        ),
        *(
            f"collections:{name}"
            for name in ("Counter", "OrderedDict", "defaultdict", "deque")
        ),
        "copyreg:_reconstructor",
        "functools:partial",
        "random:Random",
        "datetime:date",
        "datetime:datetime",
        "datetime:timedelta",
        "datetime:timezone",
        "numpy:dtype",
        "numpy:ndarray",
        "numpy._core.multiarray:_reconstruct",
        "numpy._core.multiarray:scalar",
        "numpy._core.numeric:_frombuffer",
        "numpy.random._pickle:__bit_generator_ctor",
        "numpy.random._pickle:__generator_ctor",
        "numpy.random._pickle:__randomstate_ctor",
        "numpy.random.bit_generator:SeedSequence",
        "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
        "numpy.random._mt19937:MT19937",
        "numpy.random._pcg64:PCG64",
        "pandas:DataFrame",
        "pandas:Index",
        "pandas:RangeIndex",
        "pandas:Series",
        "pandas:StringDtype",
        "pandas.arrays:StringArray",
        "pandas._libs.arrays:__pyx_unpickle_NDArrayBacked",
        "pandas._libs.internals:_unpickle_block",
        "pandas.core.indexes.base:_new_Index",
        "pandas.core.internals.managers:BlockManager",
        "pandas.core.internals.managers:SingleBlockManager",
    }
)  # fmt: skip
"""Exact ``module:qualname`` globals outside River and stream_app that model state may need."""

RENAMES: Final[Mapping[str, str]] = {
    # NumPy 2 moved numpy.core to numpy._core; NumPy 1.26 reads both.
    "numpy.core.multiarray:_reconstruct": "numpy._core.multiarray:_reconstruct",
    "numpy.core.multiarray:scalar": "numpy._core.multiarray:scalar",
    "numpy.core.numeric:_frombuffer": "numpy._core.numeric:_frombuffer",
    # The rolling quality window left the learn step for a module of its own (issue #18).
    "stream_app.learn:Quality": "stream_app.core.quality:Quality",
    "stream_app.core.learn:Quality": "stream_app.core.quality:Quality",
}
"""Old ``module:qualname`` to new: add an entry when a class stored in versions moves."""

MOVED_MODULES: Final[Mapping[str, str]] = {
    # Releases before the package layout kept every module at the top of stream_app.
    **{
        f"stream_app.{old}": f"stream_app.{new}"
        for old, new in (
            ("canary", "core.canary"), ("decode", "core.decode"), ("drift", "core.drift"),
            ("factory", "core.factory"), ("guard", "core.guard"), ("join", "core.join"),
            ("label", "core.label"), ("learn", "core.learn"), ("messages", "core.messages"),
            ("metrics", "core.metrics"), ("model_size", "core.model_size"),
            ("pipeline", "core.pipeline"), ("predict", "core.predict"), ("route", "core.route"),
            ("shed", "core.shed"), ("checkpoint", "registry.checkpoint"),
            ("registry", "registry.records"), ("transfer", "registry.transfer"),
        )
    },
}  # fmt: skip
"""Old module to new, for every class of a module that moved whole (after :data:`RENAMES`)."""

_PACKAGES: Final = ("river", "stream_app")
_RIVER_DENIED: Final = ("river.datasets", "river.stream", "river.evaluate")
"""River modules that download, read or write files: nothing in model state comes from them."""


class UntrustedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist; ``name`` is ``module:qualname``."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"refused to load {name}: {why}")
        self.name = name


def _within(module: str, prefixes: Iterable[str]) -> bool:
    """Tell whether ``module`` is one of ``prefixes`` or inside one of them.

    >>> _within("river.tree.nodes", ["river"]), _within("riverside", ["river"])
    (True, False)
    """
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def check_global(module: str, name: str, trusted: Iterable[str] = ()) -> str | None:
    """Say why ``module:name`` may not be loaded, before importing anything; None if it may.

    The resolved object is checked again by :class:`SafeUnpickler` (its own ``__module__``).

    >>> check_global("builtins", "eval"), check_global("river.linear_model", "LogisticRegression")
    ('not an allowed builtin', None)
    >>> check_global("stream_app.__main__", "main")
    'not an allowed module'
    """
    qualified = f"{module}:{name}"
    if qualified in ALLOWED:
        return None
    if module == "builtins":
        return "not an allowed builtin"
    if "__main__" in module.split("."):
        return "not an allowed module"
    if any(part.startswith("__") for part in name.split(".")):
        return "not an allowed name"
    trusted = tuple(trusted)
    if _within(module, trusted):
        return None
    if _within(module, _PACKAGES) and not _within(module, _RIVER_DENIED):
        return None
    return "not an allowed module"


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allowlisted globals (see the module's docstring)."""

    def __init__(
        self,
        file: io.BytesIO,
        trusted_modules: Iterable[str] = (),
        renames: Mapping[str, str] = RENAMES,
    ) -> None:
        super().__init__(file)
        self.trusted = tuple(trusted_modules)
        self.renames = renames

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if the allowlist holds it (after renames), else refuse."""
        module, _, name = self.renames.get(f"{module}:{name}", f"{module}:{name}").partition(":")
        module = MOVED_MODULES.get(module, module)
        why = check_global(module, name, self.trusted)
        if why is not None:
            raise UntrustedGlobal(f"{module}:{name}", why)
        if f"{module}:{name}" in ALLOWED:
            return super().find_class(module, name)
        obj = _resolve(module, name)
        home = getattr(obj, "__module__", None) or ""
        if _within(home, self.trusted):
            return obj
        if not _within(home, _PACKAGES) or _within(home, _RIVER_DENIED):
            raise UntrustedGlobal(f"{module}:{name}", f"it is {home or '?'} code, not allowed")
        if _within(home, ("stream_app",)) and not isinstance(obj, type):
            raise UntrustedGlobal(f"{module}:{name}", "only stream_app classes may be loaded")
        return obj


def _resolve(module: str, name: str) -> Any:
    """Import ``module`` and follow the dotted ``name`` through attributes (no module hops)."""
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
        if type(obj).__name__ == "module":
            raise UntrustedGlobal(f"{module}:{name}", "a name may not reach into another module")
    return obj


def loads(data: bytes, trusted_modules: Iterable[str] = ()) -> Any:
    """Unpickle ``data``, resolving only allowlisted globals; raise :class:`UntrustedGlobal`."""
    return SafeUnpickler(io.BytesIO(data), trusted_modules).load()
