"""The plugin manager: every entry point of the group ``nrm_plugins`` is a pluggy plugin.

Built-ins register through the same group (see ``pyproject.toml``), so ``nrm plugins`` shows them with
the origin ``nrm-plugins``; a third-party distribution shows its own name.  A plugin that fails to
import, or whose hook raises, is reported with the reason and skipped; it never breaks the tool.
"""
from __future__ import annotations

import importlib.metadata as importlib_metadata
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from . import hookspecs
from .errors import NRMError, PluginError, ReaderError, WriterError

GROUP = "nrm_plugins"
HEAD_BYTES = 4096


@dataclass
class PluginInfo:
    name: str
    origin: str  # distribution name, e.g. "nrm-plugins"
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str = ""  # why the plugin is skipped ("" = loaded)

    @property
    def builtin(self) -> bool:
        return self.origin == "nrm-plugins"


class PluginManager:
    """Loads the plugins once and dispatches to them."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.problems: list[str] = []  # hook failures seen at run time
        if load_entry_points:
            self.load_entry_points()

    # ------------------------------------------------------------------ loading
    def load_entry_points(self) -> None:
        seen = set()
        for ep in importlib_metadata.entry_points(group=GROUP):
            dist = getattr(ep, "dist", None)
            origin = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            key = (ep.name, ep.value)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            info = PluginInfo(name=ep.name, origin=origin, version=version, module=ep.value)
            self.info[ep.name] = info
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tool
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                continue
            self.register(plugin, ep.name, info)

    def register(self, plugin, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object or module (also for tests and interactive use)."""
        if info is None:
            info = PluginInfo(name=name, origin="(registered at run time)", version="",
                              module=getattr(plugin, "__name__", repr(plugin)))
            self.info[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. a hook with a wrong signature
            info.error = f"registration failed: {type(exc).__name__}: {exc}"
            return
        info.hooks = sorted(impl_name for impl_name in _hook_names()
                            if any(i.plugin_name == name for i in getattr(self.pm.hook, impl_name).get_hookimpls()))

    def plugins(self) -> list[PluginInfo]:
        return list(self.info.values())

    # ------------------------------------------------------------------ calling one plugin
    def _impls(self, hook: str):
        return getattr(self.pm.hook, hook).get_hookimpls()

    def _impl_of(self, hook: str, plugin_name: str):
        for impl in self._impls(hook):
            if impl.plugin_name == plugin_name:
                return impl
        return None

    def _call_each(self, hook: str, **kwargs):
        """Call ``hook`` on every plugin separately; yield (plugin name, result); failures are recorded."""
        for impl in reversed(self._impls(hook)):
            try:
                yield impl.plugin_name, impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                msg = f"plugin '{impl.plugin_name}': {hook} raised {type(exc).__name__}: {exc}"
                self.problems.append(msg)
                info = self.info.get(impl.plugin_name)
                if info is not None and not info.error:
                    info.error = msg
                warnings.warn(msg + " (skipped)", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ readers
    def identify(self, path) -> list[tuple[int, str]]:
        """Scores of every reader for ``path``, best first: ``[(score, plugin name), ...]``."""
        path = Path(path)
        head = b""
        if path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(HEAD_BYTES)
        scores = []
        for name, score in self._call_each("nrm_read_identify", path=path, head=head):
            if score:
                scores.append((int(score), name))
        scores.sort(key=lambda s: -s[0])
        return scores

    def read(self, path, options: dict | None = None):
        path = Path(path)
        if not path.exists():
            raise ReaderError(path, "no such file or folder")
        if path.is_file() and path.stat().st_size == 0:
            raise ReaderError(path, "the file is empty (0 bytes)")
        scores = self.identify(path)
        if not scores:
            tried = [i.plugin_name for i in self._impls("nrm_read_identify")]
            raise ReaderError(path, f"no reader recognises this file (tried: {', '.join(tried) or 'none'})")
        _, name = scores[0]
        impl = self._impl_of("nrm_read", name)
        if impl is None:
            raise PluginError(f"plugin '{name}' identified {path} but has no nrm_read hook")
        try:
            ds = impl.function(**{k: {"path": path, "options": dict(options or {})}[k] for k in impl.argnames})
        except NRMError:
            raise
        except MemoryError:
            raise ReaderError(path, f"not enough memory to read it with the '{name}' reader") from None
        except Exception as exc:  # noqa: BLE001 - a reader bug still names the file
            raise ReaderError(path, f"the '{name}' reader failed: {type(exc).__name__}: {exc}") from exc
        ds.attrs.setdefault("reader", name)
        return ds

    # ------------------------------------------------------------------ writers
    def write_formats(self) -> list[dict]:
        out = []
        for name, formats in self._call_each("nrm_write_formats"):
            for fmt in formats or []:
                out.append({**fmt, "plugin": name})
        return out

    def writer_for(self, path, format: str | None = None) -> dict:
        formats = self.write_formats()
        if format:
            for fmt in formats:
                if fmt["name"] == format:
                    return fmt
            raise WriterError(path, f"unknown output format '{format}'; known: {[f['name'] for f in formats]}")
        suffix = "".join(Path(path).suffixes[-1:]).lower()
        for fmt in formats:
            if suffix in [s.lower() for s in fmt.get("suffixes", [])]:
                return fmt
        raise WriterError(path, f"no writer for the suffix '{suffix}'; known suffixes: "
                                f"{sorted({s for f in formats for s in f.get('suffixes', [])})} (or use --to)")

    def write(self, dataset, path, format: str | None = None, options: dict | None = None) -> Path:
        path = Path(path)
        fmt = self.writer_for(path, format)
        impl = self._impl_of("nrm_write", fmt["plugin"])
        if impl is None:
            raise PluginError(f"plugin '{fmt['plugin']}' announces '{fmt['name']}' but has no nrm_write hook")
        args = {"dataset": dataset, "path": path, "format": fmt["name"], "options": dict(options or {})}
        try:
            impl.function(**{k: args[k] for k in impl.argnames})
        except NRMError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise WriterError(path, f"the '{fmt['plugin']}' writer failed: {type(exc).__name__}: {exc}") from exc
        return path

    # ------------------------------------------------------------------ methods and sources
    #: hook of each kind of provided item
    PROVIDED = {"contact": "nrm_contact_methods", "derivative": "nrm_derivative_methods",
                "analysis": "nrm_analyses", "hw": "nrm_hw_sources"}

    def provided(self, kind: str) -> dict:
        """``kind`` in ``contact``, ``derivative``, ``analysis``, ``hw``: {name: (plugin name, item)};
        the first plugin to offer a name keeps it."""
        out = {}
        for plugin, items in self._call_each(self.PROVIDED[kind]):
            for item in items or []:
                out.setdefault(item.name, (plugin, item))
        return out

    def methods(self, kind: str) -> dict:
        """``kind`` in ``contact``, ``derivative``, ``analysis``: {name: Method}."""
        return {name: item for name, (_, item) in self.provided(kind).items()}

    def method(self, kind: str, name: str):
        methods = self.methods(kind)
        if name not in methods:
            raise PluginError(f"no {kind} method '{name}'; registered: {sorted(methods)}")
        return methods[name]

    def hw_sources(self) -> dict:
        return {name: item for name, (_, item) in self.provided("hw").items()}


def _hook_names():
    return [n for n in dir(hookspecs) if n.startswith("nrm_")]


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager(reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (entry points loaded once)."""
    global _manager
    with _lock:
        if _manager is None or reload:
            _manager = PluginManager()
        return _manager


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
