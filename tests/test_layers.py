"""The layers contract: imports run one way.

    format  <-  masks, encoders  <-  decoders  <-  reader, writer, public API  <-  CLI

Every module of ``tcscodec/`` and ``cli/`` is parsed (not imported) and all
its ``import`` statements are collected, those inside functions included:
a lazy import is still a dependency a reader of the code must follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package folder -> installed package name (cli/ installs as tcscodec.cli)
PACKAGES = {ROOT / "tcscodec": "tcscodec", ROOT / "cli": "tcscodec.cli"}

#: the one import allowed to close a cycle: the decoder registry imports the
#: built-in decoders on first use (base -> _builtin -> gap_tv/learned -> base),
#: so that ``import tcscodec.decoders`` stays cheap (no torch) and plug-ins
#: register the same way
ALLOWED_BACK_EDGE = ("tcscodec.decoders.base", "tcscodec.decoders._builtin")


def _module_name(path: Path) -> str:
    for folder, package in PACKAGES.items():
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for folder in PACKAGES for p in sorted(folder.rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) is, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The tcscodec modules ``module`` imports anywhere in its source."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from . import x" imports the submodule x; "from .m import y" a name in m
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(sources, forbidden) -> list[str]:
    return [f"{m} imports {t}" for m in sorted(GRAPH) if _in(m, *sources)
            for t in sorted(GRAPH[m]) if _in(t, *forbidden)]


def test_the_parser_sees_imports():
    # guards the contract itself: a parser that saw nothing would pass every rule
    assert "tcscodec.format.header" in GRAPH["tcscodec.format.container"]
    assert "tcscodec.cuda_encoder" in GRAPH["tcscodec.encoder_factory"]  # a lazy import, inside a function
    assert "tcscodec.decoders.gap_tv" in GRAPH["tcscodec.decoders._builtin"]  # "from . import gap_tv"
    assert "tcscodec.cli.commands" in GRAPH["tcscodec.cli.main"]


def test_format_imports_only_format_and_errors():
    bad = [f"{m} imports {t}" for m in sorted(GRAPH) if _in(m, "tcscodec.format")
           for t in sorted(GRAPH[m]) if not _in(t, "tcscodec.format", "tcscodec.errors")]
    assert not bad, bad


ENCODING = ["tcscodec.masks", "tcscodec.measurement", "tcscodec.encoder", "tcscodec.cuda_encoder",
            "tcscodec.encoder_factory", "tcscodec.cpu_kernels", "tcscodec.rice_kernels", "tcscodec.quantize",
            "tcscodec.quantize_kernels", "tcscodec.work_pool", "tcscodec.motion", "tcscodec.motion_check", "tcscodec.registration",
            "tcscodec.grouping"]
ABOVE_DECODERS = ["tcscodec.reader", "tcscodec.reader_motion", "tcscodec.writer", "tcscodec.api", "tcscodec.cli", "tcscodec.evaluation"]


def test_masks_and_encoders_import_no_decoder_or_front_end():
    assert not _violations(ENCODING, ["tcscodec.decoders", *ABOVE_DECODERS, "tcscodec.training"])


def test_decoders_import_no_front_end():
    assert not _violations(["tcscodec.decoders"], ABOVE_DECODERS)


def test_nothing_in_the_package_imports_the_cli():
    bad = [v for v in _violations(["tcscodec"], ["tcscodec.cli"]) if not v.startswith("tcscodec.cli")]
    # tcscodec/__main__.py is ``python -m tcscodec``: the CLI's own entry point
    assert bad == ["tcscodec.__main__ imports tcscodec.cli.main"], bad


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_strongly_connected_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    # a package's __init__ re-exporting its submodules is not a cycle a reader has to untangle:
    # edges from a module to its own package are left out
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, ts in GRAPH.items()}
    source, target = ALLOWED_BACK_EDGE
    assert target in graph[source]  # the exception is still needed; drop it when it is not
    graph[source] = graph[source] - {target}
    cycles = [sorted(c) for c in strongly_connected(graph)]
    assert not cycles, cycles


#: modules allowed over 700 lines: the simulator (one physical model, read as a whole)
LONG_MODULES = {"tcscodec.simulate"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("tcscodec.")
                                          and not m.startswith("tcscodec.cli")))
def test_module_size(module):
    # a module a newcomer can read in one sitting; the simulator is the one long module
    if module not in LONG_MODULES:
        assert len(MODULES[module].read_text(encoding="utf-8").splitlines()) <= 700


#: private names another module may import: tcscodec.evaluation re-exports one helper for its tests
PRIVATE_IMPORTS_ALLOWED = {("tcscodec.evaluation", "tcscodec.evaluation.codecs._strip_sei")}


def test_modules_use_each_others_public_names():
    # a name another module needs is part of its owner's interface: no leading underscore
    bad = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")
                source = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in MODULES:
                continue
            for alias in node.names:
                name = f"{source}.{alias.name}"
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and name not in MODULES and (module, name) not in PRIVATE_IMPORTS_ALLOWED:
                    bad.append(f"{module} imports {name}")
    assert not bad, bad
