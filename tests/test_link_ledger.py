"""The ground's books across passes (hil.link.ledger, hil.link.backlog) and the contact-plan questions
they ask, on hand-made plans and events whose answers are worked out by hand."""

from __future__ import annotations

import math

import pytest

from hil.link.backlog import BridgeBacklog
from hil.link.contact import ContactPlan, ContactWindow, relay_plan
from hil.link.ledger import Delivery, JobLedger, percentile
from hil.link.model import Direction
from link.topics import TopicMap

# contacts [100, 200) (two stations overlapping) and [500, 600); span [0, 1000)
PLAN = ContactPlan(0.0, 1000.0, (ContactWindow("a", 100.0, 180.0), ContactWindow("b", 150.0, 200.0),
                                 ContactWindow("a", 500.0, 600.0)), 0.01)


def test_contact_plan_questions() -> None:
    assert PLAN.contacts == ((100.0, 200.0), (500.0, 600.0))
    assert PLAN.contact_s_between(0.0, 1000.0) == 200.0
    assert PLAN.contact_s_between(150.0, 550.0) == 100.0
    assert PLAN.contact_s_between(300.0, 400.0) == 0.0 and PLAN.contact_s_between(400.0, 300.0) == 0.0
    assert [PLAN.first_contact_from(t) for t in (0.0, 100.0, 199.9, 200.0, 550.0, 600.0)] == [0, 0, 0, 1, 1, None]
    assert PLAN.stations_of(0) == ("a", "b") and PLAN.stations_of(1) == ("a",)
    assert relay_plan(0.05).contact_s_between(0.0, 10.0) == 10.0


def test_ledger_counts_first_results_repeats_and_second_runs() -> None:
    ledger = JobLedger()
    ledger.sent("j1", 50.0)   # out of contact: answered in the next contact
    ledger.sent("j2", 120.0)  # in contact: answered in the same one
    ledger.sent("j3", 190.0)  # in contact, but answered only in the next: late
    ledger.sent("j4", 250.0)  # never answered: lost
    ledger.sent("j5", 260.0)  # rejected: not lost
    assert ledger.result("j1", 104.0, (1.0, 1)) is Delivery.FIRST
    assert ledger.result("j1", 510.0, (1.0, 1)) is Delivery.REPEAT  # the bridge sent it again
    assert ledger.result("j2", 121.0, (2.0, 1)) is Delivery.FIRST
    assert ledger.result("j3", 505.0, (3.0, 1)) is Delivery.FIRST
    assert ledger.result("j3", 506.0, (3.5, 2)) is Delivery.SECOND_RUN  # ran twice: must never happen
    ledger.failed("j5", 501.0, "rejected: no such model")
    assert ledger.result("nobody", 1.0, (0.0, 1)) is Delivery.UNKNOWN
    assert ledger.submitted == 5 and ledger.done == 3
    assert ledger.unanswered() == ["j4"] and ledger.failures() == {"j5": "rejected: no such model"}
    assert ledger.duplicated() == ["j3"] and ledger.repeats() == 1 and ledger.unknown_results == 1
    assert sorted(ledger.latencies_s()) == pytest.approx([1.0, 54.0, 315.0])
    check = ledger.plan_check(PLAN)
    assert (check.in_contact, check.in_contact_same_pass) == (2, 1)
    assert (check.out_of_contact, check.out_of_contact_next_pass) == (1, 1)
    assert check.late == ("j3",)
    assert sorted(check.after_aos_s) == pytest.approx([1.0, 4.0, 315.0])  # j3 counts from its first contact
    assert percentile(ledger.latencies_s(), 50) == pytest.approx(54.0) and math.isnan(percentile([], 50))


def test_resend_is_due_after_enough_contact_without_an_acknowledgement() -> None:
    ledger = JobLedger()
    ledger.sent("a", 50.0)
    ledger.sent("b", 50.0)
    ledger.sent("c", 50.0)
    ledger.acknowledged("b", 101.0)
    ledger.failed("c", 101.0, "expired")
    assert ledger.due_for_resend(140.0, PLAN, contact_s=60.0) == []  # 40 s of contact so far
    assert ledger.due_for_resend(160.0, PLAN, contact_s=60.0) == ["a"]
    ledger.sent("a", 160.0)  # sent again: the count starts again
    assert ledger.due_for_resend(400.0, PLAN, contact_s=60.0) == []  # 40 s of contact, then the gap
    assert ledger.due_for_resend(520.0, PLAN, contact_s=60.0) == ["a"]
    assert ledger.resends() == 1 and ledger.jobs["a"].sent_s == 50.0  # latency counts from the first send


def test_backlog_counts_what_one_side_saw_and_the_other_did_not() -> None:
    topics = TopicMap("sat1")
    backlog = BridgeBacklog(topics)
    assert (topics.job_submit, 1) in backlog.filters and all(q == 1 for _, q in backlog.filters)
    assert backlog.direction_of(topics.job_submit) is Direction.UP
    assert backlog.direction_of(topics.sequence_command) is Direction.UP
    assert backlog.direction_of(topics.result("j1")) is Direction.DOWN
    assert backlog.direction_of(topics.telemetry("power")) is None  # QoS 0: never queued
    backlog.seen("ground", topics.job_submit, b"job-1")
    backlog.seen("board", topics.job_submit, b"job-1")
    backlog.seen("ground", topics.job_submit, b"job-2")  # not delivered yet
    backlog.seen("board", topics.result("j1"), b"r1")
    backlog.seen("ground", topics.result("j1"), b"r1")
    backlog.seen("ground", topics.result("j1"), b"r1")  # a duplicate delivery counts once
    backlog.seen("board", topics.result("j2"), b"r2")
    backlog.seen("board", topics.events, b"e1")
    backlog.seen("board", topics.telemetry("power"), b"t")  # ignored
    backlog.seen("ground", topics.result("j3"), b"only-ground")  # downlink seen only below: not waiting
    assert backlog.waiting() == {Direction.UP: 1, Direction.DOWN: 2}
    assert backlog.carried() == {Direction.UP: 1, Direction.DOWN: 1}
