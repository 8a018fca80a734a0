"""The package's boundaries, checked on its source.

* The MovieLens app is a client of the library: it imports only
  ``seqattn_tfrs`` itself (and its own modules) and uses only names in
  ``seqattn_tfrs.__all__``.
* No module reads another object's private attributes that this package
  defines (``obj._name`` where ``obj`` is not ``self``/``cls``).
* ``seqattn_tfrs.core`` imports neither TensorFlow nor any Keras.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import seqattn_tfrs

PACKAGE = pathlib.Path(seqattn_tfrs.__file__).parent
LIBRARY = [
    p for p in PACKAGE.rglob("*.py") if "movielens" not in p.parts[len(PACKAGE.parts) :]
]
APP = sorted((PACKAGE / "movielens").glob("*.py"))


def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _private_names_defined() -> set[str]:
    """Private attribute and method names the package's own classes define."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("_"):
                        names.add(item.name)
                    if (
                        isinstance(item, ast.Attribute)
                        and isinstance(item.value, ast.Name)
                        and item.value.id == "self"
                        and isinstance(item.ctx, ast.Store)
                        and item.attr.startswith("_")
                    ):
                        names.add(item.attr)
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


@pytest.mark.parametrize("path", APP, ids=lambda p: p.name)
def test_the_app_uses_only_the_public_api(path):
    public = set(seqattn_tfrs.__all__)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "seqattn_tfrs"
        ):
            if node.module.startswith("seqattn_tfrs.movielens"):
                continue
            assert node.module == "seqattn_tfrs", (path.name, node.module)
            for alias in node.names:
                assert alias.name in public, (path.name, alias.name)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("seqattn_tfrs"):
                    assert alias.name == "seqattn_tfrs", (path.name, alias.name)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "seqattn_tfrs"
        ):
            assert node.attr in public, (path.name, node.attr)


def test_no_module_reads_another_objects_private_attributes():
    private = _private_names_defined()
    assert "_tables" in private and "_heldout_pass" in private  # the check sees them
    offences = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (
                    isinstance(node.value, ast.Name)
                    and node.value.id in {"self", "cls"}
                )
            ):
                offences.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}"
                )
    assert offences == []


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name
)
def test_core_imports_no_tensorflow_and_no_keras(path):
    for node in ast.walk(_tree(path)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        for module in modules:
            root = module.split(".")[0]
            assert root not in {"tensorflow", "keras", "tf_keras"}, (path.name, module)
            if root == "seqattn_tfrs":
                assert module.startswith("seqattn_tfrs.core"), (path.name, module)


def test_library_modules_are_small():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in LIBRARY
    }
    assert max(sizes.values()) <= 700, sizes
