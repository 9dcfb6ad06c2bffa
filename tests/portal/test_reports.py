"""Reports: the read model fed by real bus events, recomputed from the raw tickets and compared; the pages."""
from __future__ import annotations

import csv
import datetime as dt
import io
import time
from zoneinfo import ZoneInfo

import pytest

from helpdesk.common import events
from helpdesk.portal import reports
from helpdesk.portal.models import ReportTicket
from helpdesk.portal.reports_feed import ReportsFeed, apply_snapshot, path_text
from support import ADMIN, DISPATCHER, REQUESTER, SOLVER, SOLVER_2, new_ticket

pytestmark = pytest.mark.integration


def _move(rpc, ticket, to_state, who=SOLVER, **kw):
    version = rpc.tickets.get_ticket(actor=DISPATCHER, ticket_id=ticket["id"])["version"]
    return rpc.tickets.change_state(actor=who, ticket_id=ticket["id"], version=version, to_state=to_state, **kw)


def _wait_until_fed(portal_db, rpc, ids, timeout=20.0):
    """Until every ticket's row holds the ticket's current version."""
    want = {i: rpc.tickets.get_ticket(actor=DISPATCHER, ticket_id=i)["version"] for i in ids}
    deadline = time.time() + timeout
    while time.time() < deadline:
        with portal_db() as s:
            have = {r.ticket_id: r.version for r in s.query(ReportTicket).all()}
        if all(have.get(i) == v for i, v in want.items()):
            return
        time.sleep(0.1)
    pytest.fail(f"read model did not catch up: want {want}, have {have}")


def _stopped(publish, ticket, target, minutes, solver_id):
    publish("sla", "clock_stopped", {
        "ticket_id": ticket["id"], "number": ticket["number"], "target": target, "policy": "Standard",
        "stopped_at": events.utcnow(), "minutes_used": minutes, "business": True, "met": True,
        "solver_id": solver_id})


def _breach(publish, ticket, target):
    publish("sla", "sla_breached", {
        "ticket_id": ticket["id"], "number": ticket["number"], "target": target, "policy": "Standard",
        "deadline": events.utcnow(), "business_minutes_used": 500, "business_minutes_target": 480,
        "solver_id": None, "breached_by_minutes": 20})


@pytest.fixture
def worked_tickets(tickets, run_services, portal_config, rpc, publish):
    """Nine tickets in every shape a report must count: open, assigned, replied, resolved, reopened, rated,
    closed, breached."""
    run_services(ReportsFeed, cfg=portal_config)
    hw = rpc.tickets.create_category(actor=ADMIN, name="Hardware", parent_id=None)
    printers = rpc.tickets.create_category(actor=ADMIN, name="Tiskárny",
                                           parent_id=hw["id"])
    made = [new_ticket(rpc, priority=p, channel=c, category_id=cat)
            for p, c, cat in [("normal", "portal", printers["id"]), ("high", "email", hw["id"]),
                              ("urgent", "phone", None), ("normal", "portal", printers["id"]),
                              ("low", "email", None), ("normal", "portal", None), ("high", "portal", None),
                              ("normal", "phone", printers["id"]), ("normal", "portal", None)]]
    for t, solver in zip(made[:7], [SOLVER, SOLVER, SOLVER_2, SOLVER, SOLVER_2, SOLVER, SOLVER_2]):
        rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={k: solver[k] for k in ("id", "name", "email")})
    for t in made[:5]:
        rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="Díváme se na to.", public=True)
        _move(rpc, t, "in_progress")
    for t in made[:4]:
        _move(rpc, t, "resolved")
    _move(rpc, made[0], "in_progress", who=REQUESTER)  # reopened by the requester
    _move(rpc, made[0], "resolved")
    for t, score in zip(made[:3], (5, 2, 4)):
        rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=score, comment="Díky" if score > 3 else "Pomalé")
    _move(rpc, made[3], "closed", who=DISPATCHER)
    _breach(publish, made[1], "resolution")
    _breach(publish, made[5], "first_response")
    # business time as the SLA service would announce it: SOLVER's tickets 0, 1, 3
    for t, minutes in zip((made[0], made[1], made[3]), (30.0, 90.0, 45.0)):
        _stopped(publish, t, "resolution", minutes, SOLVER["id"])
    _stopped(publish, made[0], "resolution", 75.0, SOLVER["id"])  # resolved again after the reopening
    ids = [t["id"] for t in made]
    return ids, hw, printers


def _raw(rpc, ids) -> list[dict]:
    """The tickets as the tickets service tells them, with reopenings counted from their history."""
    out = []
    for i in ids:
        t = rpc.tickets.get_ticket(actor=DISPATCHER, ticket_id=i)
        moves = [h for h in rpc.tickets.history(actor=DISPATCHER, ticket_id=i) if h["field"] == "state"]
        t["reopened"] = sum(1 for h in moves if (h["old"], h["new"]) == ("resolved", "in_progress"))
        out.append(t)
    return out


def _seconds(later, earlier):
    if later is None:
        return None
    return int((dt.datetime.fromisoformat(later) - dt.datetime.fromisoformat(earlier)).total_seconds())


def test_reports_equal_a_recomputation_from_the_raw_tickets(worked_tickets, portal_db, rpc):
    ids, hw, printers = worked_tickets
    breached = {ids[1], ids[5]}
    # the breaches travel on their own queue: wait for them too
    deadline = time.time() + 20
    while time.time() < deadline:
        _wait_until_fed(portal_db, rpc, ids)
        with portal_db() as s:
            flagged = {r.ticket_id for r in s.query(ReportTicket).all()
                       if r.first_response_breached or r.resolution_breached}
        with portal_db() as s:
            measured = sum(1 for r in s.query(ReportTicket).all() if r.resolution_business_minutes is not None)
        if flagged == breached and measured == 3:
            break
        time.sleep(0.1)
    raw = _raw(rpc, ids)
    filters = reports.Filters(group="priority")

    expected: dict[str, dict] = {}
    for t in raw:
        row = expected.setdefault(t["priority"], {"key": t["priority"], "total": 0, "fulfilled": 0, "open": 0,
                                                  "within_sla": 0, "breached": 0})
        done = t["state"] in ("resolved", "closed")
        row["total"] += 1
        row["fulfilled"] += done
        row["open"] += not done
        row["within_sla"] += done and t["id"] not in breached
        row["breached"] += t["id"] in breached
    with portal_db() as s:
        assert reports.fulfilment(s, filters) == sorted(expected.values(), key=lambda r: r["key"])

        # the category filter takes the whole subtree
        in_hw = reports.fulfilment(s, reports.Filters(group="category", category_id=hw["id"]))
        assert sum(r["total"] for r in in_hw) == sum(1 for t in raw if hw["id"] in t["category_path"]) == 4
        assert {r["key"] for r in in_hw} == {hw["id"], printers["id"]}

        by_solver = {r["solver_id"]: r for r in reports.efficiency(s, reports.Filters())}
        for solver in (SOLVER, SOLVER_2):
            mine = [t for t in raw if (t["solver"] or {}).get("id") == solver["id"]]
            done = [t for t in mine if t["resolved_at"]]
            got = by_solver[solver["id"]]
            assert got["assigned"] == len(mine) and got["resolved"] == len(done)
            firsts = [_seconds(t["first_response_at"], t["created_at"]) for t in mine if t["first_response_at"]]
            resolutions = [_seconds(t["resolved_at"], t["created_at"]) for t in done]
            assert got["first_response_median"] == pytest.approx(reports.percentile(firsts, 0.5), abs=1)
            assert got["resolution_p90"] == pytest.approx(reports.percentile(resolutions, 0.9), abs=1)
            rated = [t["rating"]["score"] for t in mine if t["rating"]]
            assert got["ratings"] == len(rated)
            assert [got[f"rating_{n}"] for n in range(1, 6)] == [rated.count(n) for n in range(1, 6)]
            assert got["rating_average"] == (pytest.approx(sum(rated) / len(rated)) if rated else None)
            reopened = sum(1 for t in mine if t["reopened"])
            assert got["reopen_rate"] == (reopened / len(done) if done else None)
            if solver is SOLVER:  # ticket 0 counts with its newest stop (75), not the first (30)
                assert (got["resolution_business_median"], got["resolution_business_p90"]) == \
                    (reports.percentile([75.0, 90.0, 45.0], 0.5), reports.percentile([75.0, 90.0, 45.0], 0.9))
            else:
                assert got["resolution_business_median"] is None
            decided = [t for t in mine if t["resolved_at"] or t["id"] in breached]
            met = [t for t in decided if t["id"] not in breached]
            assert got["sla_compliance"] == (len(met) / len(decided) if decided else None)

        load = {r["solver_id"]: r for r in reports.workload(s, reports.Filters(), events.utcnow())}
        for solver in (SOLVER, SOLVER_2):
            still_open = [t for t in raw if (t["solver"] or {}).get("id") == solver["id"]
                          and t["state"] not in ("resolved", "closed")]
            assert load[solver["id"]]["open"] == len(still_open)
            assert load[solver["id"]]["age_1d"] == len(still_open)  # all raised just now

        weeks = reports.weekly(s, reports.Filters())
        assert sum(w["incoming"] for w in weeks) == len(raw)
        assert sum(w["resolved"] for w in weeks) == sum(1 for t in raw if t["resolved_at"])
        comments = reports.rating_comments(s, reports.Filters())
        assert sorted(c["rating_comment"] for c in comments) == ["Díky", "Díky", "Pomalé"]


def test_manager_reads_reports_as_pages_and_csv_others_get_404(worked_tickets, portal_db, rpc, client_for):
    ids, _hw, _printers = worked_tickets
    _wait_until_fed(portal_db, rpc, ids)
    manager = client_for("manager")
    page = manager.get("/reports/fulfilment?group=channel&from=2020-01-01")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<svg" in html and 'id="report"' in html and "Telefon" in html  # channel labels in Czech
    for kind in ("workload", "efficiency"):
        assert manager.get(f"/reports/{kind}").status_code == 200

    exported = manager.get("/reports/fulfilment?group=channel&format=csv")
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert {r["key"] for r in rows} == {"portal", "email", "phone"}
    assert sum(int(r["total"]) for r in rows) == len(ids)

    for query, field in (("from=2026-02-01&to=2026-01-01", "to"), ("group=year", "group"), ("from=yesterday", "from")):
        bad = manager.get(f"/reports/fulfilment?{query}")
        assert bad.status_code == 400, query
        assert f'<div class="small">{field}: ' in bad.get_data(as_text=True), query

    assert client_for("requester").get("/reports/fulfilment").status_code == 404
    assert client_for("solver").get("/reports/efficiency?format=csv").status_code == 404


def test_an_older_snapshot_never_moves_a_row_back(portal_db):
    now = events.utcnow()
    snap = {"id": 7, "number": "HD-2026-000007", "created_at": now, "state": "resolved", "priority": "high",
            "channel": "email", "category_path": [1, 4], "solver": {"id": "s-1", "name": "Jana"},
            "resolved_at": now + dt.timedelta(hours=2), "version": 5}
    with portal_db() as s:
        apply_snapshot(s, snap, "Europe/Prague")
        apply_snapshot(s, {**snap, "state": "in_progress", "resolved_at": None, "version": 3}, "Europe/Prague")
    with portal_db() as s:
        row = s.get(ReportTicket, 7)
        assert (row.state, row.version, row.resolution_seconds, row.category_path) == ("resolved", 5, 7200, "/1/4/")
        assert row.created_on == now.astimezone(ZoneInfo("Europe/Prague")).date()


def test_periods_are_local_days_weeks_and_months():
    day = dt.date(2026, 3, 29)  # a Sunday, the day summer time starts in Prague
    assert reports.period_of(day, "day") == "2026-03-29"
    assert reports.period_of(day, "week") == "2026-03-23"
    assert reports.period_of(day, "month") == "2026-03-01"


def test_a_ticket_raised_late_in_the_evening_counts_on_its_local_day(portal_db):
    late = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone.utc)  # 1 January 00:30 in Prague
    snap = {"id": 8, "number": "HD-2027-000001", "created_at": late, "state": "received", "priority": "normal",
            "channel": "portal", "version": 1}
    with portal_db() as s:
        apply_snapshot(s, snap, "Europe/Prague")
        rows = reports.fulfilment(s, reports.Filters(group="month", date_from=dt.date(2027, 1, 1)))
    assert rows == [{"key": "2027-01-01", "total": 1, "fulfilled": 0, "open": 1, "within_sla": 0, "breached": 0}]


@pytest.mark.parametrize("values,share,expected", [
    ([10], 0.9, 10.0), ([1, 2, 3, 4], 0.5, 2.5), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, 9.1), ([], 0.5, None),
])
def test_percentile_interpolates_like_postgresql(values, share, expected):
    assert reports.percentile(values, share) == (pytest.approx(expected) if expected is not None else None)


def test_path_text_makes_subtrees_prefix_matches():
    assert path_text([]) == "/" and path_text([3, 12]) == "/3/12/"
