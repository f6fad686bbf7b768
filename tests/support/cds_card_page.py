"""A CDS Hooks card as an EHR shows it: its markdown detail rendered by a markdown library
(markdown-it-py, CommonMark with raw HTML off, as EHRs render card markdown), in a small page
laid out like an EHR's card panel: indicator stripe, summary, source, detail, the suggestion
and link buttons, and the override reasons a clinician picks when dismissing it. For the
README's screenshot of the card, and to look at the card the way a clinician reads it."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_INDICATOR_COLOURS = {"info": "#005eb8", "warning": "#ffb81c", "critical": "#d5281b"}
_PAGE = Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CDS card: {{ card.summary }}</title>
<style>
  body { margin: 0; background: #e8edee; color: #212b32;
         font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
  .ehr { background: #425563; color: #ffffff; padding: .5rem 1rem; font-weight: 600; }
  .ehr span { font-weight: 400; opacity: .9; }
  main { max-width: 44rem; margin: 1rem auto; padding: 0 .75rem; }
  .panel-title { font-size: .85rem; text-transform: uppercase; letter-spacing: .04em;
                 color: #4c6272; margin: 0 0 .4rem; }
  .card { background: #ffffff; border: 1px solid #aeb7bd; border-left: 6px solid {{ colour }};
          border-radius: 4px; padding: .8rem 1rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .summary { font-size: 1.1rem; font-weight: 700; margin: 0 0 .15rem; }
  .source { color: #4c6272; font-size: .8rem; margin: 0 0 .6rem; }
  .detail p { margin: .35rem 0; }
  .detail ul { margin: .3rem 0 .5rem; padding-left: 1.3rem; }
  .actions { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .8rem; align-items: center; }
  .button { display: inline-block; font: inherit; font-weight: 600; border-radius: 4px;
            padding: .35rem .8rem; border: 2px solid #005eb8; text-decoration: none; }
  .primary { background: #005eb8; color: #ffffff; }
  .secondary { background: #ffffff; color: #005eb8; }
  .actions label { display: flex; flex-wrap: wrap; gap: .3rem; align-items: center;
                   max-width: 100%; }
  select { font: inherit; min-width: 0; max-width: 100%; }
</style>
</head>
<body>
<div class="ehr">Patient record <span>(an EHR showing CDS Hooks cards on patient-view)</span></div>
<main>
  <p class="panel-title">Decision support</p>
  <article class="card" aria-labelledby="summary">
    <p class="summary" id="summary">{{ card.summary }}</p>
    <p class="source">Source: {{ card.source.label }}</p>
    <div class="detail">{{ detail }}</div>
    <div class="actions">
      {% for s in card.suggestions %}
      <span class="button {{ 'primary' if s.isRecommended else 'secondary' }}">{{ s.label }}</span>
      {% endfor %}
      {% for link in card.links %}
      <a class="button secondary" href="{{ link.url }}">{{ link.label }}</a>
      {% endfor %}
      {% if card.overrideReasons %}
      <label>Dismiss:
        <select>
          {% for r in card.overrideReasons %}<option>{{ r.display }}</option>{% endfor %}
        </select>
      </label>
      {% endif %}
    </div>
  </article>
</main>
</body>
</html>
"""
)


def card_markdown_html(markdown: str) -> str:
    """The card's markdown as the HTML an EHR would show (raw HTML in it stays text)."""
    return _MARKDOWN.render(markdown)


def card_page(card: dict[str, Any]) -> str:
    """A whole HTML page showing the card as an EHR's card panel."""
    return _PAGE.render(
        card=card,
        detail=Markup(card_markdown_html(card.get("detail", ""))),
        colour=_INDICATOR_COLOURS.get(card.get("indicator", "info"), "#005eb8"),
    )
