"""The house rules that can be checked: every public function and class (a name in a public module's
``__all__``) has a docstring with a runnable example, and public functions carry full type hints."""

import importlib
import inspect
import pkgutil

import pytest

import renyi_prune


def _public_objects():
    seen = set()
    for info in pkgutil.walk_packages(renyi_prune.__path__, "renyi_prune."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield pytest.param(obj, id=f"{obj.__module__}.{obj.__qualname__}")


PUBLIC = list(_public_objects())


def test_the_walk_finds_the_api():
    names = {p.id for p in PUBLIC}
    assert "renyi_prune.ops.attention_with_entropy" in names and len(names) > 40


@pytest.mark.parametrize("obj", PUBLIC)
def test_public_docstring_has_an_example(obj):
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{obj.__qualname__}: no runnable example in its docstring"


@pytest.mark.parametrize("obj", [p for p in PUBLIC if inspect.isfunction(p.values[0])])
def test_public_function_has_type_hints(obj):
    signature = inspect.signature(obj)
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.annotation is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not missing, f"{obj.__qualname__}: parameters without a type hint: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{obj.__qualname__}: no return type"
