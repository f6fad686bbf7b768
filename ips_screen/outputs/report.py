"""The HTML report a practice manager reads: one self-contained page, no scripts, no assets.

The page is rendered from templates/report.html.j2 with autoescaping on; every value from the
data (trace details come from clinical terms in the records) is escaped. The charts are inline
SVG whose geometry is computed here, each followed by a table holding the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

import ips_screen
from ips_screen.engine.decision import Decision
from ips_screen.outputs.summary import proposed_in_order
from ips_screen.presentation.labels import report_text
from ips_screen.presentation.notes import reasons_in_brief
from ips_screen.ruleset.loader import CompiledRuleset

TEMPLATE = "report.html.j2"
LISTED_MAX = 200  # patients listed by reference in the data-quality section

# Funnel chart geometry (SVG user units; the chart scales to the page width).
_LABEL_W, _BAR_W, _COUNT_W, _ROW_H, _BAR_H = 230, 420, 90, 30, 20
# Trends chart geometry and series: (key, label, colour, dash pattern).
_T_W, _T_H, _T_LEFT, _T_RIGHT, _T_TOP, _T_BOTTOM = 760, 260, 56, 44, 16, 44
_SERIES = (
    ("propose", "Proposed", "#1a6b2f", ""),
    ("not_eligible", "Not eligible", "#8a4b08", "6 4"),
    ("excluded", "Excluded", "#555555", "2 3"),
    ("open_proposals", "Open proposals", "#1d4e89", "10 3 2 3"),
)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """The template environment, made once per process (compiling the report template takes
    about as long as a small screen)."""
    env = Environment(
        loader=PackageLoader("ips_screen.outputs", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda value: f"{int(value):,}"
    return env


def _funnel(rows: Sequence[dict]) -> dict:
    total = max((int(r["kept"]) for r in rows), default=0)
    bars = []
    for i, row in enumerate(rows):
        kept = int(row["kept"])
        width = round(_BAR_W * kept / total, 1) if total else 0.0
        y = i * _ROW_H + 4
        bars.append(
            {
                "label": row["step"],
                "kind": row.get("kind", ""),
                "kept": kept,
                "width": width,
                "y": y,
                "text_y": y + _BAR_H / 2,
                "count_x": _LABEL_W + width + 6,
            }
        )
    return {
        "bars": bars,
        "width": _LABEL_W + _BAR_W + _COUNT_W,
        "height": len(rows) * _ROW_H + 8,
        "bar_x": _LABEL_W,
        "label_x": _LABEL_W - 8,
        "bar_h": _BAR_H,
    }


def _trends(trends: Sequence[dict]) -> dict:
    runs = list(trends)
    top = max((int(t.get(key) or 0) for t in runs for key, *_ in _SERIES), default=0)
    top = max(top, 1)
    plot_w = _T_W - _T_LEFT - _T_RIGHT
    plot_h = _T_H - _T_TOP - _T_BOTTOM
    step = plot_w / (len(runs) - 1) if len(runs) > 1 else 0.0

    def x(i: int) -> float:
        return round(_T_LEFT + (i * step if len(runs) > 1 else plot_w / 2), 1)

    def y(value: int) -> float:
        return round(_T_TOP + plot_h - plot_h * value / top, 1)

    series = []
    for key, label, colour, dash in _SERIES:
        points = [(x(i), y(int(t.get(key) or 0))) for i, t in enumerate(runs)]
        series.append(
            {
                "label": label,
                "colour": colour,
                "dash": dash,
                "points": points,
                "polyline": " ".join(f"{px},{py}" for px, py in points),
            }
        )
    every = max(1, -(-len(runs) // 8))  # at most about 8 date labels
    ticks = [{"x": x(i), "label": str(t.get("as_of", ""))} for i, t in enumerate(runs)][::every]
    return {
        "width": _T_W,
        "height": _T_H,
        "left": _T_LEFT,
        "right": _T_W - _T_RIGHT,
        "top": _T_TOP,
        "bottom": _T_TOP + plot_h,
        "y_ticks": [{"y": y(v), "label": v} for v in sorted({0, top // 2, top})],
        "x_ticks": ticks,
        "series": series,
        "legend": [{"label": s[1], "colour": s[2], "dash": s[3]} for s in _SERIES],
        "rows": runs,
    }


def render_report(
    summary: dict,
    decisions: list[Decision],
    ruleset: CompiledRuleset,
    *,
    explain: Callable[[str], str] | None = None,
    trends: list[dict] | None = None,
    unfinished: list[dict] | None = None,
) -> str:
    """The report as one HTML page.

    `explain` turns a reason or flag name into plain words (default: the ruleset's `texts:`);
    `trends` (one dict per earlier run: run, as_of, propose, not_eligible, excluded,
    open_proposals) adds a chart of runs over time; `unfinished` (ledger rows: id, started,
    status, errors) lists recent runs that failed or were interrupted.
    """

    def meaning(name: str) -> str:
        text = explain(name) if explain is not None else ""
        return text or report_text(name, ruleset)

    model = ruleset.model
    step_notes = {e.rule.id: f"removes: {meaning(e.reason) or e.reason}" for e in model.exclusions}
    for c in model.criteria:
        note = (explain(c.rule.id) if explain is not None else "") or c.rule.description
        step_notes[c.rule.id] = note or model.texts.steps.get(c.rule.id, "")
    proposed = [
        {
            "patient": d.patient,
            "priority": d.priority or "",
            "flags": list(d.flags),
            "why": reasons_in_brief(d, ruleset),
        }
        for d in proposed_in_order(decisions)
    ]
    flag_names = sorted({f for d in decisions if d.outcome == "propose" for f in d.flags})
    missing_note = model.priority.quality_notes.missing if model.priority else None
    no_status = sorted(d.patient for d in decisions if missing_note and missing_note in d.quality)
    context = {
        "title": model.title,
        "texts": model.texts,
        "early_months": model.priority.early_within_months if model.priority else None,
        "step_notes": step_notes,
        "ruleset_tag": summary["ruleset"],
        "as_of": summary["as_of"],
        "s": summary,
        "funnel": _funnel(summary["attrition"]),
        "reasons": [
            {"name": k, "count": v, "meaning": meaning(k)} for k, v in summary["reasons"].items()
        ],
        "flags": [
            {"name": k, "count": v, "meaning": meaning(k)} for k, v in summary["flags"].items()
        ],
        "flag_meanings": {name: meaning(name) for name in flag_names},
        "proposed": proposed,
        "no_status": no_status[:LISTED_MAX],
        "no_status_more": max(0, len(no_status) - LISTED_MAX),
        "trends": _trends(trends) if trends is not None else None,
        "unfinished": [
            {
                "run": r.get("id"),
                "started": r.get("started"),
                "status": r.get("status"),
                "why": (r.get("errors") or [""])[0],
            }
            for r in unfinished or []
        ],
        "version": ips_screen.__version__,
    }
    return _environment().get_template(TEMPLATE).render(**context)
