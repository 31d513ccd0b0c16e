"""``renyi-prune probe``: end to end on fake Fashion-MNIST with a tiny timm ViT (result files, one row per
configuration, the α choice made on validation data only, the feature cache, bootstrap intervals), the
shared-prefix forward against the full one, the k-NN against DINOv2's rule written out, and one-line errors
for bad options."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from renyi_prune.cli import main
from renyi_prune.studies.probe import CHOSEN_LABEL, choose_alpha, fit_probes, knn_weights, top1_interval
from renyi_prune.studies.probe import classifiers as probe_classifiers
from renyi_prune.studies.probe import data as probe_data
from renyi_prune.studies.probe import features as probe_features
from renyi_prune.studies.probe import run as probe_run

# eager: the CPU attention path a user's machine runs (not Triton's interpreter, which the suite switches on)
pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_real_fashion_mnist", "eager")

KEEP_RATES, ALPHAS = ("0.5", "0.25"), ("1", "inf")
FILES = ("results.csv", "results.md", "accuracy_vs_gflops.png", "config.json", "val_alpha.csv")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A fake Fashion-MNIST of 60 train / 24 test images and a 6-block timm ``test_vit`` checkpoint (32 px,
    4 patches); returns the options that use them."""
    import timm

    from renyi_prune.data import write_fake_fashion_mnist

    root = tmp_path_factory.mktemp("probe")
    data = write_fake_fashion_mnist(root / "data", train_images=60, val_images=24)
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit", img_size=32).state_dict(), root / "test_vit.pth")
    return root, [
        "--dataset", "fashion-mnist", "--data", str(data), "--model", "test_vit", "--checkpoint",
        str(root / "test_vit.pth"), "--img-size", "32", "--prune-blocks", "1", "3", "--batch-size", "16",
        "--no-progress", "--device", "cpu", "--cache-dir", str(root / "cache"), "--bootstrap", "200",
    ]  # fmt: skip


def _argv(tiny, out, *extra):
    return ["probe", *tiny[1], "--out", str(out), "--keep-rates", *KEEP_RATES, "--alphas", *ALPHAS,
            "--criteria", "renyi", "evit", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def first_run(tiny):
    """The probe run once (empty cache), with the order in which the α choice and the test labels came."""
    events = []
    mp = pytest.MonkeyPatch()
    real_labels, real_choose = probe_data.ProbeData.labels, probe_run.choose_alpha

    def labels(self, split, indices=None):
        events.append(f"labels:{split}")
        return real_labels(self, split, indices)

    def choose(val):
        events.append("choose")
        return real_choose(val)

    mp.setenv("TRITON_INTERPRET", "0")  # as the eager fixture, for this module-scoped run
    mp.setattr(probe_data.ProbeData, "labels", labels)
    mp.setattr(probe_classifiers, "CS", (1e-3, 1e-1))  # two C values: L-BFGS on separable noise is slow
    mp.setattr(probe_run, "choose_alpha", choose)
    out = tiny[0] / "out1"
    try:
        assert main(_argv(tiny, out)) == 0
    finally:
        mp.undo()
    return out, events


def test_writes_every_file_with_a_row_per_configuration(first_run):
    out, _ = first_run
    assert all((out / name).is_file() and (out / name).stat().st_size > 0 for name in FILES)
    rows = pd.read_csv(out / "results.csv")
    expected = ["unpruned"]
    for r in KEEP_RATES:
        expected += [f"renyi α=1 r={r}", f"renyi α=∞ r={r}", None, f"evit r={r}"]
    assert len(rows) == len(expected)
    for label, want in zip(rows["label"], expected, strict=True):
        assert label.startswith(CHOSEN_LABEL) if want is None else label == want
    assert rows["test_images"].eq(24).all()
    assert rows.loc[0, "kept_tokens"] == "4/4" and rows.loc[1, "kept_tokens"] == "2/1"
    pruned = rows[rows["criterion"] != "unpruned"]
    assert (pruned["gflops"] < rows.loc[0, "gflops"]).all() and (rows["images_per_s"] > 0).all()
    config = json.loads((out / "config.json").read_text())
    assert {"torch", "timm", "scikit-learn", "renyi_prune"} <= set(config["versions"])
    assert config["timing"]["threads"] == 1 and config["forward_images"] > 0
    assert "| unpruned" in (out / "results.md").read_text()


def test_bootstrap_interval_contains_the_point_estimate(first_run):
    rows = pd.read_csv(first_run[0] / "results.csv")
    for key in ("top1_linear", "top1_knn"):
        assert (rows[key + "_lo"] <= rows[key]).all() and (rows[key] <= rows[key + "_hi"]).all()
    y = np.arange(500) % 10
    pred = np.where(np.random.default_rng(1).random(500) < 0.7, y, -1)
    top1, lo, hi = top1_interval(pred, y, 1000, seed=3)
    assert lo < top1 < hi and top1_interval(pred, y, 1000, seed=3) == (top1, lo, hi)
    assert (
        100 * math.sqrt(0.7 * 0.3 / 500) * 3 < hi - lo < 100 * math.sqrt(0.7 * 0.3 / 500) * 5
    )  # ≈ 2 x 1.96 SE


def test_alpha_is_chosen_on_validation_only(first_run):
    out, events = first_run
    assert events.index("choose") < events.index("labels:val")  # test labels read only after the choice
    val = pd.read_csv(out / "val_alpha.csv")
    rows = pd.read_csv(out / "results.csv")
    for rate, group in val.groupby("keep_rate"):
        best = group.sort_values(["val_top1_linear", "val_top1_knn"], ascending=False, kind="stable").iloc[0]
        chosen = rows[(rows["criterion"] == CHOSEN_LABEL) & (rows["keep_rate"] == rate)].iloc[0]
        fixed = rows[
            (rows["criterion"] == "renyi") & (rows["keep_rate"] == rate) & (rows["alpha"] == best["alpha"])
        ]
        assert chosen["alpha"] == best["alpha"]
        assert chosen["top1_linear"] == fixed["top1_linear"].iloc[0]
    config = json.loads((out / "config.json").read_text())
    assert config["sizes"]["val"] + config["sizes"]["val_fit"] == config["sizes"]["train"] == 60


def test_rerun_reads_the_cache(tiny, first_run, monkeypatch):
    def no_forward(*args, **kwargs):
        raise AssertionError("a forward ran although every feature set is cached")

    monkeypatch.setattr(probe_features._Runner, "batch", no_forward)
    monkeypatch.setattr(probe_classifiers, "CS", (1e-3, 1e-1))  # as in the first run: its C is cached
    out = tiny[0] / "out2"
    assert main(_argv(tiny, out)) == 0
    assert json.loads((out / "config.json").read_text())["forward_images"] == 0
    first, again = (pd.read_csv(d / "results.csv") for d in (first_run[0], out))
    pd.testing.assert_frame_equal(first.drop(columns="images_per_s"), again.drop(columns="images_per_s"))


def test_no_cache_runs_the_forwards(tiny, data, tmp_path):
    argv = ["probe", *tiny[1], "--data", str(data), "--out", str(tmp_path / "o"), "--keep-rates", "0.5",
            "--criteria", "random", "--no-cache", "--no-choose-alpha"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["forward_images"] == 4 * 2 + 8 and not (tmp_path / "o" / "val_alpha.csv").exists()


def test_shared_prefix_gives_the_full_forward(tiny):
    from renyi_prune import PruneConfig
    from renyi_prune.studies.probe.backbone import load_backbone

    bb = load_backbone("test_vit", tiny[0] / "test_vit.pth", 32, torch.device("cpu"), True)
    bb.set_split(1)
    assert bb.split_at == 1
    x = torch.randn(3, 3, 32, 32)
    for config in (None, PruneConfig("renyi", keep_rate=0.5, alpha=2.0, prune_blocks=(1, 3))):
        with probe_features.applied(bb.model, config), torch.no_grad():
            torch.testing.assert_close(bb.suffix(bb.prefix(x)), bb.features(x), rtol=1e-5, atol=1e-5)


def test_bf16_runs_the_forwards_under_autocast(tiny, data, tmp_path, monkeypatch):
    """``--dtype bf16``: the forwards (shared prefix and each configuration's rest) run under bf16 autocast,
    the features stay float32, config.json says so, and the feature cache keeps bf16 apart from fp32."""
    seen = []
    real = probe_features._Runner.batch

    def batch(self, x, timed, bar):
        seen.append(self.backbone.autocast)
        with self.backbone._autocast():
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(self, x, timed, bar)

    monkeypatch.setattr(probe_features._Runner, "batch", batch)
    argv = ["probe", *tiny[1], "--data", str(data), "--keep-rates", "0.5", "--criteria", "renyi",
            "--alphas", "2", "--no-choose-alpha", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "fp32")]) == 0
    assert set(seen) == {None}
    seen.clear()
    assert (
        main([*argv, "--out", str(tmp_path / "bf16"), "--dtype", "bf16"]) == 0
    )  # not read from the fp32 cache
    assert seen and set(seen) == {torch.bfloat16}
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["config"]["dtype"] == "bf16" and config["backbone"]["autocast"] == "bfloat16"
    rows = pd.read_csv(tmp_path / "bf16" / "results.csv")
    assert rows["top1_linear"].between(0, 100).all()


def test_stored_features_do_not_keep_the_tokens_alive(tiny):
    """Each batch's CLS features are stored as their own (B, D) float32 copy, not as a view of the (B, N, D)
    tokens (which kept every batch's tokens in memory: a 24 GB run at 224 px)."""
    from renyi_prune import PruneConfig
    from renyi_prune.studies.probe.backbone import load_backbone

    bb = load_backbone("test_vit", tiny[0] / "test_vit.pth", 32, torch.device("cpu"), True)
    bb.set_split(1)
    runner = probe_features._Runner(bb, [None, PruneConfig("evit", keep_rate=0.5, prune_blocks=(1, 3))], 2)
    with torch.inference_mode():
        runner.batch(torch.randn(3, 3, 32, 32), timed=True, bar=None)
    for (f,) in runner.feats:
        assert f.shape == (3, bb.model.embed_dim) and f.dtype == torch.float32
        assert f.untyped_storage().nbytes() == f.numel() * 4


def test_knn_is_dinov2s_weighted_vote():
    rng = np.random.default_rng(0)
    x, y, q = rng.normal(size=(80, 8)), rng.integers(0, 4, 80), rng.normal(size=(15, 8))
    probes = fit_probes(x.astype(np.float32), y)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sim = unit(q) @ unit(x).T
    top = np.argsort(-sim, axis=1)[:, :20]
    votes = np.zeros((15, 4))
    for i in range(15):
        np.add.at(votes[i], y[top[i]], np.exp(sim[i, top[i]] / 0.07))
    np.testing.assert_array_equal(probes.knn.predict(q.astype(np.float32)), votes.argmax(axis=1))
    assert knn_weights(np.array([0.0]))[0] == 1.0 and probes.info["k"] == 20


def test_choose_alpha_breaks_ties_by_knn_then_order():
    val = pd.DataFrame({"keep_rate": [0.5] * 3, "alpha": [1.0, 2.0, math.inf], "val_top1_linear": [60.0] * 3,
                        "val_top1_knn": [50.0, 55.0, 55.0]})  # fmt: skip
    assert choose_alpha(val) == {0.5: 2.0}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--keep-rates", "1.5"], "keep rate must be in (0, 1], got 1.5"),
        (["--alphas", "-1"], "alpha must be >= 0 or inf, got -1"),
        (["--criteria", "bogus"], "unknown criterion 'bogus'"),
        (["--val-fraction", "1"], "must be in (0, 1), got 1"),
        (["--train-images", "0"], "must be >= 1, got 0"),
        (["--alphas", "2", "--choose-alpha"], "alphas [2.0]"),
        (["--criteria", "evit", "--choose-alpha"], "criteria ['evit']"),
        (["--prune-blocks", "1", "9"], "block 9, but the model has 6 blocks"),
    ],
)
def test_bad_options_give_one_line_errors(tiny, tmp_path, cli_error_line, argv, message):
    assert main(["probe", *tiny[1], "--out", str(tmp_path / "o"), *argv]) == 2
    line = cli_error_line()
    assert line.startswith("renyi-prune probe: error: ") and message in line, line
    assert not (tmp_path / "o").exists()


def test_checkpoint_needs_a_model(tiny, tmp_path, cli_error_line):
    assert main(["probe", "--checkpoint", str(tiny[0] / "test_vit.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "--checkpoint needs --model" in cli_error_line()


def test_a_transformers_folder_runs_at_its_own_size(tmp_path, monkeypatch):
    from renyi_prune.studies.probe import cli as probe_cli

    seen = []
    monkeypatch.setattr(probe_cli, "transformers_folder", lambda model: None if model is None else tmp_path)
    monkeypatch.setattr(probe_run, "prepare", lambda cfg: seen.append(cfg.img_size))
    monkeypatch.setattr(probe_run, "estimate", lambda prepared: None)
    for argv in ([], ["--model", str(tmp_path)], ["--model", str(tmp_path), "--img-size", "56"]):
        assert main(["probe", "--dry-run", *argv]) == 0
    assert seen == [112, None, 56]  # the preset's 112 px, the folder's own size, the size asked for


def test_plot_line_colors_distinct():
    """The study's 12 lines (5 Rényi α, the α chosen on validation, 6 rivals) get 12 distinct colours, and a
    palette that would repeat is refused by name."""
    from matplotlib.colors import to_hex

    from renyi_prune.studies._plots import line_colors

    renyi = [f"renyi α={a}" for a in ("0.5", "1", "2", "3", "∞")] + [CHOSEN_LABEL]
    rivals = ["colln", "evit", "evit+fusion", "headmad", "headvar", "random"]
    colors = line_colors(renyi + rivals)
    assert set(colors) == set(renyi + rivals)
    assert len({to_hex(c) for c in colors.values()}) == len(renyi + rivals)
    with pytest.raises(ValueError, match="10 non-Rényi lines"):
        line_colors([f"rival{i}" for i in range(10)])
