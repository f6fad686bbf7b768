"""`ips-screen synth` stopped halfway (Ctrl-C, an error, a full disk) leaves no population at all,
rather than NDJSON files cut short beside the manifest of an earlier run: a screen of the folder
would otherwise read part of a population as if it were whole."""

from __future__ import annotations

from pathlib import Path

import ips_screen.synth.writer as writer
from ips_screen.cli.main import main

ARGS = ["synth", "--patients", "40", "--seed", "7", "--as-of", "2026-11-26", "-q"]


def test_a_synth_stopped_halfway_leaves_no_population(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "population"
    assert main([*ARGS, "--out", str(out)]) == 0  # an earlier, whole population
    (out / "notes.txt").write_text("the user's own file")
    real = writer.generate

    def stopped(*args, **kwargs):
        for n, resources in enumerate(real(*args, **kwargs)):
            if n == 20:
                raise KeyboardInterrupt
            yield resources

    monkeypatch.setattr(writer, "generate", stopped)
    assert main([*ARGS, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "ips-screen: interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only what was not ours


def test_a_whole_synth_replaces_the_population_it_finds(tmp_path: Path):
    out = tmp_path / "population"
    assert main([*ARGS, "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*ARGS, "--out", str(out), "--patients", "10"]) == 0
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == sorted(second) and first != second
    assert not [name for name in second if name.endswith(".partial")]
