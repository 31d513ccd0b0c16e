"""Every Python block of the README runs offline as written, as a user runs it on a CPU machine.

One substitution: ``torch.compile`` without a ``backend`` gets ``backend="aot_eager"``. Inductor's C++
code generation takes minutes on 2 cores; what a patched model can break (Dynamo's full-graph capture,
AOTAutograd's forward and backward graphs, the custom ops' fake implementations) runs the same.
"""

import functools
import re
from pathlib import Path

import pytest
import torch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def _section(code: str) -> str:
    """The README heading above a block: the test id."""
    heading = re.findall(r"^#+ (.+)$", README[: README.index(code)], re.M)[-1]
    return re.sub(r"\W+", "-", heading).strip("-").lower()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3, "the README's Usage, Hugging Face and Export examples"


@pytest.mark.parametrize("code", BLOCKS, ids=[_section(code) for code in BLOCKS])
def test_readme_block_runs(code, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # a user's CPU machine: no interpreter
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline as written: nothing may reach a model hub
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    exec(compile(code, f"README.md ({_section(code)})", "exec"), {"__name__": "__readme__"})
