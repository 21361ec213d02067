"""The package's layout: a core, one subpackage per stage, imports that flow one way and never cycle.

Read from the source with `ast`, so every import counts, including the ones deferred into functions.
"""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
STAGES = {"base": "00", "tokenizer": "01", "cpt": "02", "sft": "03", "dpo": "04", "scaling": "05", "ceval": "06",
          "curation": "07"}
# Front ends call the stages, as the notebooks do; they are not part of the core the stages build on.
FRONT_ENDS = {"zhllm.cli", "zhllm.recipes"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((SRC / "zhllm").rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _stage_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _is_core(name: str) -> bool:
    parts = name.split(".")
    return name not in FRONT_ENDS and (len(parts) == 1 or (len(parts) == 2 and not _is_package(name)))


def _imports(name: str):
    """(statement, alias, imported-from module, imported name or None, the module it reaches) per zhllm import."""
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "zhllm":
                    target = alias.name
                    while target not in MODULES:  # `import zhllm.x.y` where y is not a module
                        target = target.rsplit(".", 1)[0]
                    yield node, alias, alias.name, None, target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if _is_package(name) else name.rsplit(".", 1)[0]
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "zhllm":
                continue
            assert source in MODULES, f"{name}: imports from {source}, which is not a module of the package"
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield node, alias, source, alias.name, sub if sub in MODULES else source


def _graph() -> dict[str, set[str]]:
    return {name: {target for *_, target in _imports(name) if target != name} for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _bound_names(package: str) -> set[str]:
    """Names a package's `__init__` binds: its re-exports, submodules it imports, its own definitions."""
    names = set()
    for node in TREES[package].body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_every_stage_is_a_subpackage():
    for stage in STAGES:
        assert f"zhllm.{stage}" in MODULES and _is_package(f"zhllm.{stage}"), f"zhllm/{stage}/ is missing"
    assert "zhllm.labs" in MODULES


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert any(graph.values())  # the parser found imports at all
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_core_never_imports_a_stage():
    for name in filter(_is_core, MODULES):
        for node, _, _, _, target in _imports(name):
            assert not _stage_of(target) and not target.startswith("zhllm.labs") and target not in FRONT_ENDS, \
                f"{MODULES[name].relative_to(REPO)}:{node.lineno}: the core module {name} imports {target}"


def test_a_stage_uses_another_stage_only_through_its_package():
    for name in MODULES:
        own = _stage_of(name)
        if not own:
            continue
        aliases = set()
        for node, alias, source, imported, target in _imports(name):
            other = _stage_of(target)
            if not other or other == own:
                continue
            where = f"{MODULES[name].relative_to(REPO)}:{node.lineno}"
            package = f"zhllm.{other}"
            if imported is None:  # import zhllm.x
                assert target == package, f"{where}: import {source} reaches inside stage {other!r}"
                aliases.add(alias.asname or "zhllm")
                continue
            if source == "zhllm":  # from .. import sft
                assert imported == other, f"{where}: unexpected import of {imported} from zhllm"
            else:  # from ..sft import train
                assert source == package, f"{where}: from {source} import {imported} reaches inside stage {other!r}"
                assert not imported.startswith("_") and imported in _bound_names(package), \
                    f"{where}: {imported} is not a public name of {package}"
            aliases.add(alias.asname or alias.name)
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                assert not node.attr.startswith("_"), \
                    f"{MODULES[name].relative_to(REPO)}:{node.lineno}: private {node.value.id}.{node.attr}"


def test_outside_a_stage_only_public_names_are_imported_from_it():
    for name in MODULES:
        if _stage_of(name):
            continue
        for node, _, source, imported, _ in _imports(name):
            if _stage_of(source) and imported:
                assert not imported.startswith("_"), \
                    f"{MODULES[name].relative_to(REPO)}:{node.lineno}: private {imported} from {source}"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_init_names_its_notebook_and_modules(stage):
    package = f"zhllm.{stage}"
    doc = ast.get_docstring(TREES[package]) or ""
    notebooks = [p.name for p in (REPO / "notebooks").glob(f"{STAGES[stage]}_*.py")]
    assert len(notebooks) == 1 and f"notebooks/{notebooks[0]}" in doc, f"{package} names its notebook"
    for lab in (REPO / "labs").glob(f"{STAGES[stage]}_*.py"):
        assert f"labs/{lab.name}" in doc, f"{package} names its lab"
    for module in MODULES:
        if module.startswith(package + ".") and module.count(".") == 2:
            assert f"`{module.rsplit('.', 1)[1]}`" in doc, f"{package}'s docstring says what {module} holds"


@pytest.mark.parametrize("stage", STAGES)
def test_each_notebook_header_names_its_package(stage):
    (notebook,) = (REPO / "notebooks").glob(f"{STAGES[stage]}_*.py")
    first_markdown = re.search(r"^# %% \[markdown\]\n((?:#.*\n)+)", notebook.read_text(), re.M)
    assert first_markdown and f"`zhllm.{stage}`" in first_markdown.group(1), \
        f"the header of {notebook.name} names zhllm.{stage}"


def test_module_names_carry_no_stage_prefix():
    for name in filter(lambda m: not m.startswith("zhllm.labs"), MODULES):  # lab checks follow the labs' names
        leaf = name.rsplit(".", 1)[-1]
        assert not any(leaf.startswith(f"{stage}_") for stage in STAGES), f"{name}: drop the stage prefix"
