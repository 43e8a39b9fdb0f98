"""Import a package's submodules without running the package's ``__init__``.

Some libraries' ``__init__`` imports everything they offer, while the sidecar uses one corner:
``prometheus_client/__init__`` imports its exposition module (``http.server``, ``wsgiref``,
``urllib.request``, ``gzip``: ~1 MiB of RSS) to serve metrics, which we serve ourselves;
:func:`without_init` puts the package module in ``sys.modules`` unexecuted, so its submodules
import as usual, and gives it a PEP 562 ``__getattr__``: a submodule asked for by name is
imported (that is also how ``from . import values`` inside the package finds it), anything else
(``prometheus_client.generate_latest``, ``__version__``) runs the real ``__init__`` first.
Whatever else runs in the process sees the package it expects; it only pays for the rest when
it asks. A package whose ``__init__`` binds a submodule's name to something else names it in
``rebound`` (``uvicorn.main`` is a module and, after uvicorn's ``__init__``, a function: see
``api/http/server.py``): asked for by name, it runs the real ``__init__`` like a name that is
no submodule.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importlib.abc imports importlib.resources (and tempfile) at run time
    from importlib.abc import Loader


def without_init(package: str, rebound: Collection[str] = (), **early: str) -> ModuleType:
    """The package module of ``package``, made without running its ``__init__`` if nothing
    has imported it yet (else the module already there).

    ``rebound`` names submodules that the package's ``__init__`` binds to something else
    (uvicorn's ``main``, a function there): asked of the package, they run its ``__init__``
    first instead of resolving to the submodule. ``early`` maps names the package's own
    submodules take from the package (``from uvicorn import Config``) to
    ``"submodule:attribute"``; they are set on it before anything else. Raises
    ``ImportError`` when ``package`` is not an installed package (or one of ``early`` fails
    to import: the package module is then taken out of ``sys.modules`` again).
    """
    if package in sys.modules:
        return sys.modules[package]
    pkg, loader = _unexecuted(package, is_package=True)
    done = False

    def rest(name: str) -> Any:
        nonlocal done
        if (
            not name.startswith("__")
            and name not in rebound
            and importlib.util.find_spec(f"{package}.{name}")
        ):
            return importlib.import_module(f"{package}.{name}")
        if not done:
            done = True
            loader.exec_module(pkg)
            if name in pkg.__dict__:
                return pkg.__dict__[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    _place(package, pkg, rest)
    try:
        for name, where in early.items():
            module, attr = where.split(":")
            setattr(pkg, name, getattr(importlib.import_module(f"{package}.{module}"), attr))
    except BaseException:
        del sys.modules[package]
        raise
    return pkg


def deferred(module: str) -> ModuleType:
    """The module ``module``, made without running its code if nothing has imported it yet
    (else the module already there): its code runs when any of its names is first asked for.

    For a module that another imports at its top and uses only on a path we never take:
    ``google.protobuf.descriptor_pool`` imports the pure-Python message implementation (and
    through it ``text_format``, the decoder and encoder: 1.1 MiB of RSS), which the upb
    backend never calls. ``import`` and ``from package import module`` both find the module
    unexecuted; ``module.name`` (or ``from module import *``) runs it first. Raises
    ``ImportError`` when it is not installed.
    """
    if module in sys.modules:
        return sys.modules[module]
    mod, loader = _unexecuted(module, is_package=False)
    ran = False

    def rest(name: str) -> Any:
        nonlocal ran
        # The import system's probes (``__path__``: is it a package?) leave it unexecuted.
        if not ran and (name == "__all__" or not name.startswith("__")):
            ran = True
            loader.exec_module(mod)
            if name in mod.__dict__:
                return mod.__dict__[name]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    _place(module, mod, rest)
    return mod


def _unexecuted(name: str, *, is_package: bool) -> tuple[ModuleType, Loader]:
    """The module ``name`` made from its spec, its code not run, and the loader that runs it.
    Raises ``ImportError`` when it is not installed (or, ``is_package``, is no package)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"{name} is not installed")
    if is_package and spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an installed package")
    return importlib.util.module_from_spec(spec), spec.loader


def _place(name: str, mod: ModuleType, fallback: Callable[[str], Any]) -> None:
    """Put the unexecuted ``mod`` where the import system would: in ``sys.modules`` and named
    by its parent package; ``fallback`` answers the names it does not have yet (PEP 562)."""
    setattr(mod, "__getattr__", fallback)  # noqa: B010 - PEP 562: the module's fallback
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, mod)
