"""The generated parts of the README's results section: the finding sentences
(benchmarks/readme_findings.py) and the probe-study section (benchmarks/readme_probe.py)."""

import csv
import doctest
import importlib.util
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    """benchmarks/<name>.py as a module (its sibling modules importable while it loads)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(spec.name, mod)  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


findings = _load("readme_findings")
readme_probe = _load("readme_probe")


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
    assert findings.e2e_finding({"evit": [0.9, 1.2], "random": [math.nan]}) == (
        "Finding: Rényi runs at 0.90–1.20× the images/s of evit (slower in 1 of 2 cases)."
    )
    assert findings.e2e_finding({"evit": []}) == ""
    assert findings.kernel_finding([math.nan], []) == ""


def test_committed_readme_states_the_accuracy_finding():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    results = readme[readme.index("<!-- results:start -->") : readme.index("<!-- results:end -->")]
    assert "Finding: the highest fine-tuned top-1 is" in results


FIELDS = ["label", "criterion", "alpha", "keep_rate", "alpha_chosen_on_val", "top1_linear", "top1_linear_lo",
          "top1_linear_hi", "gflops"]  # fmt: skip
ROWS = [
    ["unpruned", "unpruned", "", "1.0", "False", "79.0", "76.6", "81.6", "1.437"],
    ["renyi α=1 r=0.7", "renyi", "1.0", "0.7", "False", "70.4", "67.6", "73.3", "0.954"],
    ["renyi α=inf r=0.7", "renyi", "inf", "0.7", "False", "72.1", "69.3", "75.0", "0.954"],
    [
        "renyi (α chosen on val) r=0.7",
        "renyi (α chosen on val)",
        "inf",
        "0.7",
        "True",
        "72.1",
        "69.3",
        "75.0",
        "0.954",
    ],  # fmt: skip
    ["evit r=0.7", "evit", "", "0.7", "False", "73.0", "70.0", "76.0", "0.954"],
    ["evit+fusion r=0.7", "evit+fusion", "", "0.7", "False", "71.0", "68.0", "74.0", "0.98"],
]
CONFIG = {
    "config": {"img_size": 112},
    "backbone": {"name": "DINOv2 ViT-S/14"},
    "data": {"name": "fashion-mnist"},
    "probes": {"C": 0.01, "cv_folds": 5},
    "sizes": {"fit": 2000, "test": 1000},
    "prune_blocks": [3, 6, 9],
    "timing": {"device": "cpu", "cpu": "AMD EPYC", "threads": 2},
    "versions": {"torch": "2.11.0", "timm": "1.0.31", "scikit-learn": "1.9.1"},
    "wall_time_s": 1500.0,
    "forward_images": 17400,
}


def test_render_probe_study(tmp_path):
    folder = tmp_path / "probe" / "study-a"
    folder.mkdir(parents=True)
    with open(folder / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([FIELDS, *ROWS])
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "probe" / "incomplete").mkdir()  # a study still running: no results yet, not listed
    studies = readme_probe.probe_studies(tmp_path)
    assert [s.name for s in studies] == ["study-a"]
    text = "\n".join(readme_probe.render_probe(studies[0], tmp_path))
    assert "fitted on 2,000 unpruned train images, tested on 1,000 test images" in text
    assert "Ran in 25 min on cpu (AMD EPYC, 2 threads)" in text
    assert "| renyi α=∞ | | 72.1 (69.3–75.0) |" in " ".join(text.split()).replace("  ", " ")
    assert "renyi (α chosen on val) |" in text and "(α chosen on val) (α chosen on val)" not in text
    assert "72.1 (69.3–75.0), α=∞" in text
    assert "| GFLOPs per image | 1.44 | 0.954–0.98 |" in " ".join(text.split())
    assert "Finding: the highest training-free linear-probe top-1 is evit at r = 0.7." in text
    assert "The best Rényi α is below evit at every keep rate (by 0.9 points)" in text
