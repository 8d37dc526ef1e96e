"""The package's shape: no import cycle, the layers of pyproject's import-linter contracts, small modules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle():
    class G:  # a -> b -> c -> a, d -> a
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        modules = set(edges)

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert _cycles(G()) == [["a", "b", "c"]]


def test_no_import_cycle_in_asearcher():
    grimp = pytest.importorskip("grimp")
    # every import counts, those inside functions too: a lazy import is still a dependency
    graph = grimp.build_graph("asearcher", cache_dir=None)
    assert _cycles(graph) == []


def test_import_layers_hold():
    cli = pytest.importorskip("importlinter.cli")
    rc = cli.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    assert rc == 0, "an import breaks a layer contract in pyproject.toml (run `lint-imports` to see which)"


def test_no_module_over_the_size_limit():
    big = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "asearcher").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them): {big}"


def test_product_never_imports_tests():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "asearcher").rglob("*.py")
        if "from tests" in (t := p.read_text(encoding="utf-8")) or "import tests" in t
    ]
    assert not offenders
