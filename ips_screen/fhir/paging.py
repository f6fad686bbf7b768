"""Following the pages of a FHIR search safely.

The next page is `Bundle.link[relation=next]` (relative links resolved on the page's URL). It is
followed only on the FHIR server's own origin (credentials must not go elsewhere), never back to
an earlier page (a paging loop), and for at most `max_pages` pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ips_screen.errors import ServerError
from ips_screen.fhir.auth import describe_origin, origin_of
from ips_screen.fhir.outcome import type_name


class PageFollower:
    """The pages of one search: counts them and finds the next one, or raises ServerError."""

    def __init__(self, origin: str, max_pages: int) -> None:
        self.origin = origin
        self.max_pages = max_pages
        self.pages = 0
        self._seen: set[str] = set()

    def start_page(self, url: str) -> int:
        """Count the page about to be read from `url` (its number); ServerError past max_pages."""
        self.pages += 1
        if self.pages > self.max_pages:
            raise ServerError(
                f"GET {urlsplit(url).path}: stopped after {self.max_pages} pages of results"
            )
        return self.pages

    def check_bundle(self, bundle: Mapping[str, Any], what: str) -> None:
        """A page must be a Bundle whose entry (if any) is a list."""
        if bundle.get("resourceType") != "Bundle":
            raise ServerError(f"{what}: expected a Bundle, got {type_name(bundle)}")
        if not isinstance(bundle.get("entry") or [], list):
            raise ServerError(f"{what} (page {self.pages}): malformed Bundle (entry is not a list)")

    def next_url(self, resp: requests.Response, bundle: Mapping[str, Any], what: str) -> str | None:
        """The absolute URL of the page after `bundle` (read by `resp`), or None at the end."""
        self._seen.add(resp.url)
        if resp.request is not None and resp.request.url:
            self._seen.add(resp.request.url)
        link = next_link(bundle)
        if link is None:
            return None
        next_url = urljoin(resp.url, link)
        try:
            next_origin = origin_of(next_url)
        except ValueError as exc:
            raise ServerError(f"{what}: the next-page link is not a usable URL") from exc
        if next_origin != self.origin:
            raise ServerError(
                f"{what}: refused to follow a next-page link to another server "
                f"({describe_origin(next_origin)}, not {describe_origin(self.origin)})"
            )
        if next_url in self._seen:
            raise ServerError(
                f"{what}: the next-page link points back to an earlier page (a paging loop) "
                f"after {self.pages} pages"
            )
        return next_url


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The Bundle's `next` link as given (possibly relative), or None."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None
