"""The HTML report a practice manager reads: one self-contained page, no scripts, no assets.

The page is rendered from templates/report.html.j2 with autoescaping on; every value from the
data (trace details come from clinical terms in the records) is escaped. The charts are inline
SVG whose geometry is computed here, each followed by a table holding the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ips_screen
from ips_screen.dates import LONDON, MONTHS, long_date, long_iso
from ips_screen.engine.decision import Decision
from ips_screen.outputs.summary import proposed_in_order
from ips_screen.presentation.brief import brief_lines
from ips_screen.presentation.counts import plural
from ips_screen.presentation.labels import report_text, step_name
from ips_screen.ruleset.loader import CompiledRuleset

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATE = "report.html.j2"
LISTED_MAX = 200  # patients listed by reference in the data-quality section

# Funnel chart geometry (SVG user units; the chart scales to the page width, narrow enough to
# stay readable on a phone): each row is its label, then the bar with "N still in, M removed".
_BAR_W, _COUNT_W, _ROW_H, _BAR_H, _LABEL_H = 190, 200, 50, 18, 20
# Trends chart geometry and series: (key, label, colour, dash pattern).
_T_W, _T_H, _T_LEFT, _T_RIGHT, _T_TOP, _T_BOTTOM = 760, 260, 56, 44, 16, 44
_SERIES = (
    ("propose", "Proposed", "#1a6b2f", ""),
    ("not_eligible", "Not eligible", "#8a4b08", "6 4"),
    ("excluded", "Excluded", "#555555", "2 3"),
    ("open_proposals", "Open proposals", "#1d4e89", "10 3 2 3"),
)


def _short_day(value: object) -> str:
    """ "26 Nov" for an axis label (the text itself when it is not a date)."""
    text = str(value or "")
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return text
    return f"{day.day} {MONTHS[day.month - 1][:3]}"


def _moment(value: object) -> str:
    """ "26 November 2026 at 09:30" (London time) for an ISO dateTime; the text itself when it is
    not one."""
    text = str(value or "")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is not None:
        when = when.astimezone(LONDON)
    return f"{long_date(when.date())} at {when:%H:%M}"


@lru_cache(maxsize=4)
def _environment(cache_dir: Path | None = None) -> Environment:
    """The template environment, made once per process (compiling the report template takes
    about as long as a small screen). With `cache_dir`, a private folder (the nightly job's
    state folder's), the compiled template is kept there for the next run: Jinja checks each
    against its template's source and its own and Python's versions, and compiles again when
    one differs. Jinja is imported here, not with the module: importing it takes about 15 ms,
    which a small nightly run spends elsewhere (`page_html`)."""
    from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined

    from ips_screen.presentation.plain_text import html_value

    cache = None
    if cache_dir is not None:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cache = FileSystemBytecodeCache(str(cache_dir))
    env = Environment(
        bytecode_cache=cache,
        loader=PackageLoader("ips_screen.outputs", "templates"),
        autoescape=True,
        finalize=html_value,  # record displays others wrote are shown as text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda value: f"{int(value):,}"
    env.filters["plural"] = plural
    env.filters["day"] = lambda value: long_iso(str(value) if value else None)
    env.filters["moment"] = _moment
    return env


def _funnel(rows: Sequence[dict], names: Callable[[str], str]) -> dict:
    total = max((int(r["kept"]) for r in rows), default=0)
    bars = []
    for i, row in enumerate(rows):
        kept, removed = int(row["kept"]), int(row.get("removed", 0))
        width = round(_BAR_W * kept / total, 1) if total else 0.0
        top = i * _ROW_H + 4
        y = top + _LABEL_H
        first = "removed" not in row
        bars.append(
            {
                "label": "All patients screened" if first else f"After {names(row['step'])}",
                "counts": f"{kept:,} in" if first else f"{kept:,} still in, {removed:,} removed",
                "kept": kept,
                "removed": removed,
                "width": width,
                "label_y": top + 13,
                "y": y,
                "text_y": y + _BAR_H / 2,
                "count_x": width + 6,
            }
        )
    return {
        "bars": bars,
        "width": _BAR_W + _COUNT_W,
        "height": len(rows) * _ROW_H + 8,
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
    ticks = [{"x": x(i), "label": _short_day(t.get("as_of"))} for i, t in enumerate(runs)][::every]
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


def _with_referred(work: dict | None, summary: dict, ruleset: CompiledRuleset) -> dict | None:
    """The work figures plus the patients already referred: those the ruleset's `referral-open`
    exclusion removed, less those removed only by a proposal waiting for review (one per open
    review), so that waiting and already referred are two lines, not one figure."""
    if work is None:
        return None
    reasons = [e.reason for e in ruleset.model.exclusions if e.rule.kind == "referral-open"]
    removed = sum(int(summary["reasons"].get(r, 0)) for r in reasons)
    return {**work, "referred": max(0, removed - int(work["open"]))}


def _reason_rows(
    summary: dict, ruleset: CompiledRuleset, plain: Callable[[str], str], work: dict | None
) -> list[dict]:
    """(plain words, count) per reason; with the nightly's work figures the `referral-open`
    reason is two rows: waiting for review, and already referred."""
    referral = {e.reason for e in ruleset.model.exclusions if e.rule.kind == "referral-open"}
    rows = []
    for name, count in summary["reasons"].items():
        if work is not None and name in referral:
            waiting = min(int(count), int(work["open"]))
            rows.append({"count": waiting, "meaning": ruleset.model.texts.report_waiting})
            count -= waiting
        rows.append({"count": count, "meaning": plain(name)})
    return rows


def render_report(
    summary: dict,
    decisions: list[Decision],
    ruleset: CompiledRuleset,
    *,
    cache_dir: Path | None = None,
    **more: Any,
) -> str:
    """The report as one HTML page: `report_page`'s values (`more`: its keyword arguments)
    through `page_html`."""
    return page_html(report_page(summary, decisions, ruleset, **more), cache_dir)


def page_html(page: dict[str, Any], cache_dir: Path | None = None) -> str:
    """The HTML of a page `report_page` made. Only plain values and the ruleset's texts go in,
    so the page can be made in another process (the nightly job's helper process:
    nightly/proposal_maker.py). `cache_dir`: where the compiled template may be kept
    (`_environment`)."""
    return _environment(cache_dir).get_template(TEMPLATE).render(**page)


def warm(cache_dir: Path | None = None) -> None:
    """Import Jinja and load the compiled template now, so that `page_html` does not."""
    _environment(cache_dir).get_template(TEMPLATE)


def report_page(
    summary: dict,
    decisions: list[Decision],
    ruleset: CompiledRuleset,
    *,
    explain: Callable[[str], str] | None = None,
    trends: list[dict] | None = None,
    unfinished: list[dict] | None = None,
    work: dict | None = None,
) -> dict[str, Any]:
    """What the report shows, as the template's values.

    `decisions`: the proposed patients (each a `Decision`, or an `outputs.proposed.Proposed`
    whose words are made already) and the others with data-quality notes.
    `explain` turns a reason or flag name into plain words (default: the ruleset's `texts:`);
    `trends` (one dict per earlier run: run, as_of, propose, not_eligible, excluded,
    open_proposals) adds a chart of runs over time; `unfinished` (ledger rows: id, started,
    status, errors) lists recent runs that failed or were interrupted; `work` (nightly: the
    review work on the practice server, `nightly.work.work_outstanding`) leads the report.
    """

    def meaning(name: str) -> str:
        text = explain(name) if explain is not None else ""
        return text or report_text(name, ruleset)

    def plain(name: str) -> str:
        return meaning(name) or name.replace("-", " ")

    def asks(flag: str) -> str:
        return model.texts.flag_actions.get(flag) or plain(flag)

    model = ruleset.model
    step_notes = {e.rule.id: f"Removed if {plain(e.reason)}" for e in model.exclusions}
    for c in model.criteria:
        note = (explain(c.rule.id) if explain is not None else "") or model.texts.steps.get(
            c.rule.id, ""
        )
        note = note or c.rule.description or ""
        step_notes[c.rule.id] = note[:1].upper() + note[1:]
    proposed = [
        {
            "patient": d.patient,
            "priority": d.priority or "",
            "asks": [asks(f) for f in d.flags],
            "why": d.why if hasattr(d, "why") else " ".join(brief_lines(d, ruleset)),
        }
        for d in proposed_in_order(decisions)
    ]
    missing_note = model.priority.quality_notes.missing if model.priority else None
    no_status = sorted(d.patient for d in decisions if missing_note and missing_note in d.quality)
    return {
        "title": model.title,
        "texts": model.texts,
        "early_months": model.priority.early_within_months if model.priority else None,
        "step_notes": step_notes,
        "ruleset_tag": summary["ruleset"],
        "as_of": summary["as_of"],
        "s": summary,
        "funnel": _funnel(summary["attrition"], lambda step: step_name(step, ruleset)),
        "step_names": {
            row["step"]: step_name(row["step"], ruleset)
            for row in summary["attrition"]
            if "removed" in row
        },
        "reasons": _reason_rows(summary, ruleset, plain, work),
        "flags": [{"count": v, "meaning": plain(k)} for k, v in summary["flags"].items()],
        "work": _with_referred(work, summary, ruleset),
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
