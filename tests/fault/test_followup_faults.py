"""`review followup` on a server without `_history`: the order's history cannot be read, so the
Task and Communication searches alone decide (logged, ids only); a search the server refuses is
a server error, not an empty list, and so is a server that fails (not one without history)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.errors import ServerError
from ips_screen.writeback.followup import unanswered_referrals
from tests.support.paths import FROZEN_NOW


def order(oid: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": oid,
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{oid}-order"}],
        "basedOn": [{"reference": f"ServiceRequest/{oid}-proposal"}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-09-01T10:00:00+01:00",
    }


class NoHistory:
    """Orders and Tasks; `_history` answered with 405, and optionally every Task search refused."""

    def __init__(
        self, orders: list[dict], tasks: list[dict], refuse_tasks: bool = False, status: int = 405
    ) -> None:
        self.orders, self.tasks, self.refuse_tasks = orders, tasks, refuse_tasks
        self.status = status  # what `_history` is answered with

    def search(self, rtype: str, params: Any) -> Iterator[dict]:
        wanted = dict(params)
        if rtype == "ServiceRequest":
            yield from self.orders
        elif rtype == "Task":
            if self.refuse_tasks:
                raise ServerError("HTTP 400 Bad Request from GET /Task")
            ref = wanted.get("based-on") or wanted.get("focus")
            yield from (t for t in self.tasks if t["focus"]["reference"] == ref)

    def history(self, rtype: str, rid: str) -> Iterator[dict]:
        message = f"HTTP {self.status} from GET /{rtype}/{rid}/_history"
        raise ServerError(message, status=self.status)


class Down(NoHistory):
    """Its history cannot be read either: the connection fails (after the client's retries)."""

    def history(self, rtype: str, rid: str) -> Iterator[dict]:
        raise ServerError(f"GET /{rtype}/{rid}/_history: connection failed")

    def search(self, rtype: str, params: Any) -> Iterator[dict]:
        if rtype != "ServiceRequest":
            raise AssertionError(f"asked for {rtype} after the server failed")
        yield from super().search(rtype, params)


@pytest.mark.parametrize("status", [405, 500])  # not supported, or failed on by the server
def test_without_history_the_searches_decide(caplog, status: int):
    task = {"resourceType": "Task", "id": "t1", "focus": {"reference": "ServiceRequest/o2"}}
    server = NoHistory([order("o1"), order("o2")], [task], status=status)
    caplog.set_level(logging.WARNING, logger="ips_screen.writeback")
    late = unanswered_referrals(server, now=FROZEN_NOW + timedelta(weeks=1), weeks=6)
    assert [(u.order, u.weeks) for u in late] == [("ServiceRequest/o1", 13)]
    warned = [r.getMessage() for r in caplog.records]
    assert any("history of ServiceRequest/o1 unreadable" in m for m in warned)
    assert all("Patient/p1" not in m for m in warned)


def test_a_server_that_fails_is_an_error_at_once_not_taken_for_one_without_history():
    with pytest.raises(ServerError, match="connection failed"):
        unanswered_referrals(Down([order("o1")], []), now=FROZEN_NOW, weeks=6)


def test_a_refused_search_is_a_server_error():
    server = NoHistory([order("o1")], [], refuse_tasks=True)
    with pytest.raises(ServerError):
        unanswered_referrals(server, now=FROZEN_NOW, weeks=6)
