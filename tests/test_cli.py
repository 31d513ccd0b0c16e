"""The ``renyi-prune`` command: every subcommand is registered and reachable."""

import csv

from renyi_prune.cli import COMMANDS, main


def test_commands_registered(capsys):
    assert set(COMMANDS) == {"demo", "bench", "train", "eval"}
    helps = (
        ["--help"],
        ["bench", "--help"],
        ["bench", "e2e", "--help"],
        ["train", "--help"],
        ["eval", "--help"],
    )
    for argv in helps:
        assert main(argv) == 0
    assert "kernel" in capsys.readouterr().out


def test_bench_e2e_smoke_through_the_cli(tmp_path):
    out = tmp_path / "e2e.csv"
    assert main(["bench", "e2e", "--smoke", "--out", str(out), "--no-plot", "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["config"] for r in rows} >= {"unpruned", "evit", "renyi"}


def test_bench_needs_a_benchmark_name(capsys):
    assert main(["bench"]) == 2
    assert "BENCHMARK" in capsys.readouterr().err
