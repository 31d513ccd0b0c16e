"""The generated finding sentences under the README's results tables (benchmarks/readme_findings.py)."""

import doctest
import importlib.util
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "readme_findings", REPO / "benchmarks" / "readme_findings.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


findings = _load()


def test_doctests():
    assert doctest.testmod(findings).failed == 0


def test_accuracy_finding_says_where_renyi_loses_and_wins():
    table = {("renyi α=1", 0.7): 70.0, ("renyi α=2", 0.7): 69.0, ("evit", 0.7): 71.0, ("random", 0.7): 68.0}
    text = findings.accuracy_finding(table)
    assert "highest top-1 is evit at r = 0.7" in text
    assert "below evit at every keep rate (by 1.0 points)" in text
    assert "above random at every keep rate (by 2.0 points)" in text
    table[("renyi α=2", 0.7)] = 72.0  # now the best Rényi α wins
    text = findings.accuracy_finding(table)
    assert "highest top-1 is renyi α=2" in text and "above evit at every keep rate" in text


def test_accuracy_finding_without_rivals_or_with_nan():
    text = findings.accuracy_finding({("renyi α=1", 0.5): 60.0, ("colln", 0.5): math.nan})
    assert text == "Finding: the highest top-1 is renyi α=1 at r = 0.5."


def test_e2e_and_kernel_findings_count_the_losses():
    speeds = {("m", "renyi", 0.7): 90.0, ("m", "evit", 0.7): 100.0, ("m", "renyi", 0.5): 120.0,
              ("m", "evit", 0.5): 100.0}  # fmt: skip
    assert findings.e2e_finding(speeds) == (
        "Finding: Rényi runs at 0.90–1.20× the images/s of evit (slower in 1 of 2 cases)."
    )
    assert findings.e2e_finding({("m", "evit", 0.7): 1.0}) == ""
    assert findings.kernel_finding([math.nan], []) == ""


def test_committed_readme_states_the_accuracy_finding():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    results = readme[readme.index("<!-- results:start -->") : readme.index("<!-- results:end -->")]
    assert "Finding: the highest fine-tuned top-1 is" in results
