"""What the browser tests check on every page they show, with one Chromium session:

- axe-core (from the npm registry, fetched by scripts/browser-deps into .cache/axe/) injected with
  execute_script and run at WCAG 2.2 AA: no violations. WebDriver runs it through Chromium's
  DevTools protocol, so the review page's Content-Security-Policy (no scripts) stays as served;
- at 375 and 320 CSS pixels wide (emulated phone), no horizontal scroll; every cell of a table
  that reflows into cards (table.reflow) has the data-label that names it there;
- full-page screenshots at 1280 and 375 pixels wide into a folder for review (`screenshot_dir`:
  $IPS_SCREEN_SCREENSHOTS, or out/screenshots/, ignored by git);
- keyboard focus: the element that has it shows a visible focus indicator.

`PageChecks.check(name)` does all of it for the page the browser shows and collects the
problems, so one failing state does not hide the others; `PageChecks.assert_clean()` fails with
the whole list.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium.webdriver import Chrome

from tests.support.paths import ROOT

AXE_JS = ROOT / ".cache" / "axe" / "axe.min.js"  # written by scripts/browser-deps
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
DESKTOP = 1280
PHONE = 375
NARROWEST = 320  # WCAG 1.4.10 Reflow: 320 CSS pixels wide, no scrolling in two directions
PHONE_HEIGHT = 720
README_WIDTH = 1000  # CSS pixels: the README's images show pages this wide, scaled down by
README_SCALE = 0.8  # this (small PNGs that still read well)
SCRIPT_TIMEOUT = 60  # seconds for one axe run


def screenshot_dir() -> Path:
    """Where the browser tests write the screenshots of every page state for review."""
    configured = os.environ.get("IPS_SCREEN_SCREENSHOTS", "").strip()
    return Path(configured) if configured else ROOT / "out" / "screenshots"


def readme_images_dir() -> Path | None:
    """docs/images/ when the run should refresh the README's images (scripts/readme-images sets
    IPS_SCREEN_README_IMAGES=1); None otherwise, and the committed images are left alone."""
    return ROOT / "docs" / "images" if os.environ.get("IPS_SCREEN_README_IMAGES") == "1" else None


def screenshot(
    browser: Chrome, path: Path, *, max_height: int | None = None, scale: float = 1
) -> None:
    """The whole page (or its top `max_height` CSS pixels), not just the viewport, as a PNG;
    `scale` below 1 makes a smaller image (for the README)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = size["height"] if max_height is None else min(size["height"], max_height)
    clip = {"x": 0, "y": 0, "width": size["width"], "height": height, "scale": scale}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": clip, "optimizeForSpeed": False},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def readme_image(browser: Chrome, name: str, max_height: int) -> None:
    """docs/images/<name>.png from the page shown (its top `max_height` CSS pixels at
    README_WIDTH, scaled down), when the run refreshes the README's images; else nothing."""
    folder = readme_images_dir()
    if folder is None:
        return
    emulate_width(browser, README_WIDTH, mobile=False)
    try:
        screenshot(browser, folder / f"{name}.png", max_height=max_height, scale=README_SCALE)
    finally:
        emulate_width(browser, None)


def emulate_width(browser: Chrome, width: int | None, *, mobile: bool = True) -> None:
    """Lay the page out `width` CSS pixels wide, as a phone (a mobile viewport that honours the
    page's meta viewport) unless `mobile` is false, or as the desktop window again with None."""
    if width is None:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": PHONE_HEIGHT, "deviceScaleFactor": 1, "mobile": mobile},
    )


def horizontal_overflow(browser: Chrome) -> str | None:
    """None when the page fits its viewport's width; otherwise how much wider it is and the
    widest elements that stick out (for the failure message)."""
    found = browser.execute_script(
        """
        const root = document.documentElement;
        if (root.scrollWidth <= root.clientWidth) return null;
        const wide = [];
        for (const el of document.body.querySelectorAll('*')) {
          const box = el.getBoundingClientRect();
          if (box.right > root.clientWidth + 0.5 && box.width > 0) {
            const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
              + (el.className && typeof el.className === 'string'
                 ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
            wide.push(name + ' (right edge ' + Math.round(box.right) + ')');
          }
        }
        return {scroll: root.scrollWidth, client: root.clientWidth, wide: wide.slice(0, 6)};
        """
    )
    if found is None:
        return None
    return (
        f"page is {found['scroll']}px wide in a {found['client']}px viewport; "
        f"sticking out: {', '.join(found['wide']) or '?'}"
    )


def unlabelled_cells(browser: Chrome) -> list[str]:
    """Cells of a table.reflow without the data-label that names them once the table is shown
    as cards on a narrow screen (base.html.j2), as a problem line each (at most a few)."""
    found = browser.execute_script(
        """
        return Array.from(document.querySelectorAll('table.reflow td:not([data-label])'))
          .map(td => (td.closest('table').id || 'table') + ' row ' + td.parentElement.rowIndex
                     + ' cell ' + (td.cellIndex + 1));
        """
    )
    return [f"{cell} has no data-label" for cell in found[:5]]


def axe_violations(browser: Chrome, axe_js: str) -> list[str]:
    """axe-core's WCAG 2.2 AA violations on the page, one line per rule and element."""
    browser.set_script_timeout(SCRIPT_TIMEOUT)
    if not browser.execute_script("return typeof window.axe === 'object'"):
        browser.execute_script(axe_js)
    result: dict[str, Any] = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: 'tag', values: arguments[0]},
                           resultTypes: ['violations']})
          .then(r => done({violations: r.violations.map(v => ({
                  id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.map(n => n.target.join(' ') + ': '
                                     + (n.failureSummary || '').replace(/\\s+/g, ' '))}))}),
                e => done({error: String(e)}));
        """,
        list(WCAG_TAGS),
    )
    if "error" in result:
        return [f"axe-core failed: {result['error']}"]
    return [
        f"{v['id']} ({v['impact']}: {v['help']}) at {node}"
        for v in result["violations"]
        for node in v["nodes"]
    ]


def accessibility_tree(browser: Chrome) -> list[tuple[str, str]]:
    """Chromium's accessibility tree of the page, as (role, name) of each node it exposes."""
    tree = browser.execute_cdp_cmd("Accessibility.getFullAXTree", {})
    return [
        (node.get("role", {}).get("value", ""), node.get("name", {}).get("value", ""))
        for node in tree["nodes"]
        if not node.get("ignored")
    ]


def focus_indicator(browser: Chrome) -> str | None:
    """How the focused element shows its focus (an outline of 2px or more, or a box shadow), or
    None when it shows none."""
    return browser.execute_script(
        """
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const s = getComputedStyle(el);
        if (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2)
          return 'outline ' + s.outlineWidth + ' ' + s.outlineStyle;
        if (s.boxShadow && s.boxShadow !== 'none') return 'box-shadow ' + s.boxShadow;
        return null;
        """
    )


def active_name(browser: Chrome) -> str:
    """The focused element as `tag#id` (or `tag.class` / `tag "text"` when it has no id)."""
    return browser.execute_script(
        """
        const el = document.activeElement;
        if (!el) return '';
        const tag = el.tagName.toLowerCase();
        if (el.id) return tag + '#' + el.id;
        if (el.className) return tag + '.' + String(el.className).trim().split(/\\s+/)[0];
        return tag + ' "' + (el.textContent || '').trim().slice(0, 30) + '"';
        """
    )


@dataclass
class PageChecks:
    """The checks of every page state one test shows, problems collected by state name."""

    browser: Chrome
    axe_js: str
    folder: Path = field(default_factory=screenshot_dir)
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, name: str, *, axe: bool = True, reflow: bool = True) -> None:
        """axe at desktop width and at 320 px (unless `axe` is false), no horizontal scroll at
        375 and 320 px (unless `reflow` is false: then nothing at 320 px), and the screenshots
        `<name>-1280.png` and `<name>-375.png`."""
        browser = self.browser
        self.checked.append(name)
        try:
            if axe:
                self._problems(name, "1280px", axe_violations(browser, self.axe_js))
            self._problems(name, "1280px", unlabelled_cells(browser))
            screenshot(browser, self.folder / f"{name}-{DESKTOP}.png")
            for width in (PHONE, NARROWEST) if reflow else (PHONE,):
                emulate_width(browser, width)
                overflow = horizontal_overflow(browser) if reflow else None
                self._problems(name, f"{width}px", [overflow] if overflow else [])
                if width == PHONE:
                    screenshot(browser, self.folder / f"{name}-{PHONE}.png")
                elif axe:
                    self._problems(name, f"{width}px", axe_violations(browser, self.axe_js))
        finally:
            emulate_width(browser, None)

    def _problems(self, name: str, where: str, found: list[str]) -> None:
        self.problems.extend(f"{name} at {where}: {problem}" for problem in found)

    def assert_clean(self) -> None:
        assert not self.problems, (
            f"{len(self.problems)} accessibility or reflow problem(s) in the page states "
            f"{', '.join(self.checked)}:\n" + "\n".join(self.problems)
        )
