"""The library's map holds: one home per concept, no module reaching into another's private names,
and every module of utils/ listed in the README's Layout (a newcomer finds any concept in one hop)."""

from __future__ import annotations

import ast
import re

from conftest import REPO

UTILS = REPO / "utils"
SOURCES = sorted(p for p in UTILS.rglob("*.py") if "assets" not in p.parts)


def _trees():
    for path in SOURCES:
        yield path.relative_to(REPO), ast.parse(path.read_text(encoding="utf-8"))


def test_no_private_names_imported_across_modules():
    bad = []
    for rel, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils"):
                bad += [f"{rel}:{node.lineno} from {node.module} import {a.name}"
                        for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "private names imported across modules (make them public where they live):\n" + "\n".join(bad)


def test_one_definition_per_shared_concept():
    """A second copy is a second behaviour waiting to happen (two AUROCs once differed on an empty class)."""
    concepts = ("auroc", "logistic_probe", "stop_layer", "model_activations", "cache_activations", "encode",
                "sae_hook_name", "concept_precision_recall", "search_latents", "find_interpretable_latents")
    homes: dict[str, list[str]] = {c: [] for c in concepts}
    for rel, tree in _trees():
        for node in tree.body:                                                # module-level functions only
            if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in homes:
                homes[node.name.lstrip("_")].append(str(rel))
    assert {c: h for c, h in homes.items() if len(h) != 1} == {}


def test_readme_layout_lists_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    listed = set(re.findall(r"^\s+([\w/]+(?:\.py|/))", layout, flags=re.M))
    modules = {p.name for p in UTILS.glob("*.py") if p.name != "__init__.py"}
    packages = {f"{p.name}/" for p in UTILS.iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name != "checks"}
    missing = sorted((modules | packages) - listed)
    assert not missing, f"README 'Layout' does not list {missing}"
