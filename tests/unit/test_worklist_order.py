"""The worklist's order (ips_screen.writeback.review_read.work_order): early priority first, then
routine, then none; within a priority the longest waiting first (authoredOn, offsets honoured)."""

from __future__ import annotations

from ips_screen.writeback.review_read import ReviewItem, work_order


def item(task_id: str, priority: str | None, authored: str | None) -> ReviewItem:
    return ReviewItem(task_id, "ServiceRequest/x", authored, "Patient/p", priority, "", None)


def test_early_first_then_oldest_waiting_first():
    items = [
        item("r-old", "routine", "2026-01-01T09:00:00+00:00"),
        item("e-new", "early", "2026-11-26T09:00:00+00:00"),
        item("none", None, "2025-01-01T09:00:00+00:00"),
        item("e-old", "early", "2026-11-20T09:00:00+00:00"),
        item("e-same-instant", "early", "2026-11-26T10:00:00+01:00"),  # = e-new's instant
        item("r-undated", "routine", None),
    ]
    ordered = [i.task_id for i in sorted(items, key=work_order)]
    assert ordered == ["e-old", "e-new", "e-same-instant", "r-undated", "r-old", "none"]
