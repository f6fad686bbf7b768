"""The one-off screen writes each decision as it is made and keeps only the proposed ones (a
large population's decisions are not all held until the end), with the same files as writing
every decision at once (`pipeline.finish`)."""

from __future__ import annotations

from pathlib import Path

import orjson

from ips_screen.outputs.registry import filenames
from ips_screen.pipeline import decide_all, finish, screen_files
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import collect
from tests.support.paths import FIXTURES, FROZEN_NOW

AS_OF = FROZEN_NOW.date()


def test_the_screen_streams_its_decisions_and_keeps_the_proposed_ones(tmp_path: Path):
    ruleset = load_ruleset()
    streamed = screen_files(
        [FIXTURES], ruleset, as_of=AS_OF, out_dir=tmp_path / "streamed", now=FROZEN_NOW
    )
    population = collect([FIXTURES], ruleset)
    everyone = decide_all(ruleset, population.patients.values(), AS_OF)
    at_once = finish(
        everyone,
        ruleset,
        as_of=AS_OF,
        now=FROZEN_NOW,
        out_dir=tmp_path / "at-once",
        read_report=population.report.to_dict(),
        orphans=population.orphans,
        unlinked=population.unlinked,
    )
    for name in filenames():
        assert (tmp_path / "streamed" / name).read_bytes() == (
            tmp_path / "at-once" / name
        ).read_bytes(), name
    assert streamed.summary == at_once.summary
    proposed = [d for d in everyone if d.outcome == "propose"]
    assert 0 < len(proposed) < len(everyone)
    assert streamed.decisions == proposed
    lines = (tmp_path / "streamed" / "decisions.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["patient"] for line in lines] == [d.patient for d in everyone]
