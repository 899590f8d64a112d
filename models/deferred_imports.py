"""Defer the import of library sub-packages the models never use on their hot path.

A pipeline process imports the whole model layer before its first event, and a restart
after a crash waits for it. Two sub-packages made half of that time while serving no
prediction: River's drift package imports its example data sets (``river.drift.datasets``,
which import scikit-learn and pandas), and River's metrics import ``scipy.stats`` for
metrics the models do not compute. :func:`defer` puts a stand-in module in their place;
the real module is imported the first time any of its attributes is used, and the
stand-in takes over its namespace, so code that uses it sees no difference.

Only sub-packages that are imported but not used at import time may be deferred (a
``from module import name`` of their contents loads them at once: correct, only not
faster), and only those that their parent binds itself (``from . import x`` in its
``__init__``, or a module ``__getattr__``), since the parent is not told of the stand-in:
both deferred here are.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from pathlib import Path

DEFERRED = ("river.drift.datasets", "scipy.stats")
"""What :func:`defer_library_imports` defers."""

_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """A module whose real code runs on first use of one of its attributes."""

    def __getattr__(self, attr: str) -> object:
        # Called only for attributes the stand-in does not have yet.
        name = self.__name__
        with _lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
            self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer(name: str) -> bool:
    """Put a stand-in for the sub-package ``name`` in ``sys.modules`` (if not imported).

    Its parent package is not imported here (a parent that imports it would defeat the
    purpose), so the module is located from the top-level package's directory.

    Returns:
        Whether a stand-in was installed (False when already imported or not found).

    Example:
        >>> defer("json.tool") or "json.tool" in sys.modules
        True
        >>> from json import tool
        >>> callable(tool.main)
        True
    """
    if name in sys.modules or "." not in name:
        return False
    top, *middle, _ = name.split(".")
    top_spec = importlib.util.find_spec(top)
    if top_spec is None or top_spec.origin is None:
        return False
    base = Path(top_spec.origin).parent.joinpath(*middle)
    spec = importlib.machinery.PathFinder.find_spec(name, [str(base)])
    if spec is None:
        return False
    module = _Deferred(name)
    module.__spec__ = spec
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:  # a package
        module.__package__ = name
        module.__path__ = list(spec.submodule_search_locations)
    else:
        module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module
    return True


def defer_library_imports() -> None:
    """Defer every module of :data:`DEFERRED` that is not imported yet."""
    for name in DEFERRED:
        defer(name)
