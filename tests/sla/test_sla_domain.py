"""Policy choice and clocks derived from a ticket's state history (pure, no I/O)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from helpdesk.sla import domain
from helpdesk.sla.calendar import ALWAYS_OPEN, CalendarSpec, build

PRAGUE = ZoneInfo("Europe/Prague")
OFFICE = build(CalendarSpec(week={d: ((8 * 60, 12 * 60), (12 * 60 + 30, 16 * 60 + 30)) for d in range(5)}))
CALS = {True: OFFICE, False: ALWAYS_OPEN}


def at(*args):
    return dt.datetime(*args, tzinfo=PRAGUE)


def rule(id_, default=False, **conditions):
    return domain.PolicyRule(id_, f"p{id_}", domain.Conditions(**conditions), default)


RULES = [rule(1, default=True), rule(2, priority="urgent"), rule(3, category_id=10),
         rule(4, category_id=11), rule(5, category_id=10, organisation_id="org-1"), rule(6, contract="Z-7")]


def test_most_specific_policy_wins():
    ticket = domain.TicketFacts("normal", (10, 11), "org-1", None)
    assert domain.choose_policy(RULES, ticket).id == 5


def test_deeper_category_wins_among_equals():
    assert domain.choose_policy(RULES, domain.TicketFacts("normal", (10, 11), "org-2")).id == 4


def test_category_condition_covers_its_subtree():
    assert domain.choose_policy(RULES, domain.TicketFacts("normal", (10, 12), "org-2")).id == 3


def test_default_policy_when_nothing_matches():
    assert domain.choose_policy(RULES, domain.TicketFacts("low", (), "org-9")).id == 1


def test_older_policy_wins_a_tie():
    rules = [rule(1, default=True), rule(8, priority="urgent"), rule(7, contract="Z-1")]
    assert domain.choose_policy(rules, domain.TicketFacts("urgent", (), None, "Z-1")).id == 7


def clocks(history, now, minutes=120, mode=domain.ON_PUBLIC_REPLY, business=True):
    targets = {t: domain.Target(minutes, business, 0.8) for t in domain.TARGETS}
    return domain.ticket_clocks(targets, CALS, history, mode, now)


def test_waiting_on_customer_is_not_counted_and_paused_clock_has_no_deadline():
    h = domain.History(at(2026, 11, 26, 8, 0), ((at(2026, 11, 26, 9, 0), "waiting_on_customer"),))
    c = clocks(h, at(2026, 11, 26, 15, 0))["resolution"]
    assert c.state == domain.PAUSED and c.deadline is None and c.used_minutes == 60
    assert domain.scheduled_due(c, False, False) is None


def test_pause_moves_the_deadline_by_its_business_length():
    h = domain.History(at(2026, 11, 26, 8, 0), ((at(2026, 11, 26, 9, 0), "waiting_on_customer"),
                                                (at(2026, 11, 26, 13, 0), "in_progress")))
    c = clocks(h, at(2026, 11, 26, 13, 30))["resolution"]
    assert c.state == domain.RUNNING
    assert c.deadline == at(2026, 11, 26, 14, 0)  # 60 min before the pause + 60 after 13:00
    assert c.paused_minutes == 210  # 9:00–12:00 and 12:30–13:00
    assert c.warn_at == at(2026, 11, 26, 13, 36)
    assert domain.scheduled_due(c, False, False) == c.warn_at
    assert domain.scheduled_due(c, True, False) == c.deadline


def test_resolution_met_and_reopening_resumes_the_clock():
    created = at(2026, 11, 26, 8, 0)
    resolved = (at(2026, 11, 26, 9, 0), "resolved")
    c = clocks(domain.History(created, (resolved,)), at(2026, 11, 26, 15, 0))["resolution"]
    assert c.state == domain.MET and c.stopped_at == at(2026, 11, 26, 9, 0) and c.used_minutes == 60
    reopened = domain.History(created, (resolved, (at(2026, 11, 26, 10, 0), "in_progress")))
    c = clocks(reopened, at(2026, 11, 26, 10, 30))["resolution"]
    assert c.state == domain.RUNNING and c.used_minutes == 90 and c.deadline == at(2026, 11, 26, 11, 0)


def test_breach_is_measured_in_business_minutes_past_the_target():
    h = domain.History(at(2026, 11, 26, 8, 0), ())
    c = clocks(h, at(2026, 11, 26, 13, 0))["resolution"]
    assert c.state == domain.BREACHED and c.breached_by_minutes == 150 and c.remaining_minutes == -150


def test_first_response_from_the_reply_or_from_taking_into_work():
    h = domain.History(at(2026, 11, 26, 8, 0), ((at(2026, 11, 26, 8, 30), "in_progress"),),
                       first_response_at=at(2026, 11, 26, 11, 0))
    assert clocks(h, at(2026, 11, 26, 15, 0))["first_response"].stopped_at == at(2026, 11, 26, 11, 0)
    c = clocks(h, at(2026, 11, 26, 15, 0), mode=domain.ON_REPLY_OR_WORK)["first_response"]
    assert c.stopped_at == at(2026, 11, 26, 8, 30) and c.state == domain.MET


def test_spam_closed_unanswered_is_cancelled_not_breached():
    h = domain.History(at(2026, 11, 26, 8, 0), ((at(2026, 11, 26, 14, 0), "closed"),), close_reason="spam")
    c = clocks(h, at(2026, 11, 26, 15, 0))
    assert c["resolution"].state == domain.CANCELLED and c["first_response"].state == domain.CANCELLED


def test_calendar_minutes_ignore_office_hours():
    h = domain.History(at(2026, 11, 27, 16, 0), ())
    c = clocks(h, at(2026, 11, 27, 16, 10), minutes=120, business=False)["resolution"]
    assert c.deadline == at(2026, 11, 27, 18, 0)


def test_history_recorded_out_of_order_gives_the_same_clock():
    moves = ((at(2026, 11, 26, 9, 0), "waiting_on_customer"), (at(2026, 11, 26, 13, 0), "in_progress"))
    a = clocks(domain.History(at(2026, 11, 26, 8, 0), moves), at(2026, 11, 26, 13, 30))["resolution"]
    b = clocks(domain.History(at(2026, 11, 26, 8, 0), moves[::-1]), at(2026, 11, 26, 13, 30))["resolution"]
    assert a == b
