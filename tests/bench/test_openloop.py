"""The open-loop schedule (bench/openloop.py): a seeded Poisson process, so every figure below is fixed by the
seed; no server and no timing."""

from __future__ import annotations

import math

import pytest

from bench import openloop
from bench.host import CardPool, Terminal


def test_a_schedule_is_sorted_inside_the_duration_and_fixed_by_its_seed() -> None:
    times = openloop.arrival_schedule(4.0, 10.0, 13)
    assert times == sorted(times)
    assert all(0 <= t < 10.0 for t in times)
    assert times == openloop.arrival_schedule(4.0, 10.0, 13)
    assert times != openloop.arrival_schedule(4.0, 10.0, 14)
    assert abs(len(times) - 40) <= 3 * math.sqrt(40)


def test_the_merged_schedule_offers_about_rate_times_duration_from_every_terminal() -> None:
    arrivals = openloop.merged_schedule(50, 4.0, 10.0, 13)
    assert arrivals == sorted(arrivals)
    assert arrivals == openloop.merged_schedule(50, 4.0, 10.0, 13)
    assert abs(len(arrivals) - 2000) <= 3 * math.sqrt(2000)  # Poisson: sd √2000 ≈ 45
    assert {index for _, index in arrivals} == set(range(50))
    for index in (0, 49):  # terminal i is its own process, seeded "13/i"
        assert [at for at, i in arrivals if i == index] == openloop.arrival_schedule(4.0, 10.0, f"13/{index}")
    mean_gap = (arrivals[-1][0] - arrivals[0][0]) / (len(arrivals) - 1)
    assert abs(mean_gap - 1 / 200) < 0.0005  # exponential gaps of mean 1/(50 × 4) s


def test_nothing_is_offered_at_rate_or_duration_zero() -> None:
    assert openloop.arrival_schedule(0.0, 10.0, 1) == []
    assert openloop.arrival_schedule(4.0, 0.0, 1) == []


def test_the_plan_spreads_sales_over_the_cards_and_refuses_more_than_a_days_approvals() -> None:
    terminals = [Terminal(f"QB{i:06d}", "M", b"k" * 32) for i in range(50)]
    cards = [{"pan": f"62{i:014d}"} for i in range(3)]
    loop = openloop.OpenLoop("http://127.0.0.1:9", terminals, cards, CardPool(None, cards),  # type: ignore[arg-type]
                             duration=1.0)
    chosen = [card["pan"] for card in loop.cards_for()]
    assert chosen[:4] == [cards[0]["pan"], cards[1]["pan"], cards[2]["pan"], cards[0]["pan"]]
    with pytest.raises(RuntimeError, match="more than 30 sales of one card"):
        loop.prepare()  # 200 sales over 3 cards: refused before anything is sent
