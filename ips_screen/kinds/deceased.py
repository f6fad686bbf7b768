"""Kind `deceased`: Patient.deceased[x] true, or a date of death on or before T."""

from __future__ import annotations

from typing import Literal

from ips_screen.kinds.base import KindModel, KindSpec
from ips_screen.kinds.context import Context, Finding
from ips_screen.kinds.evidence import DeceasedEvidence


class Deceased(KindModel):
    kind: Literal["deceased"]


def deceased(rule: Deceased, ctx: Context) -> Finding:
    facts = ctx.facts
    if facts.deceased:
        return Finding(True, (facts.ref,), DeceasedEvidence("recorded"))
    if facts.deceased_date and facts.deceased_date <= ctx.t:
        return Finding(True, (facts.ref,), DeceasedEvidence("dated"))
    return Finding(False, (facts.ref,), DeceasedEvidence("not-recorded"))


SPECS = (KindSpec("deceased", Deceased, deceased),)
