"""`cheapest_cover`: scattered records are re-read by listing their days where that costs fewer requests
than one GET each (pure function, plain values)."""

from __future__ import annotations

from datetime import date, timedelta

from orderspace_pipelines.reconcile import cheapest_cover

D0 = date(2026, 1, 1)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def cost(wanted: dict[date, int], counts: dict[date, int], extra: int = 0) -> int:
    ranges, singles = cheapest_cover(wanted, counts, extra=extra)
    listed = 0
    for start, end in ranges:
        records = sum(n for d, n in counts.items() if start <= d <= end)
        listed += max(1, -(-records // 200)) + extra
    return listed + sum(wanted[d] for d in singles)


def test_a_few_scattered_records_are_fetched_one_by_one() -> None:
    counts = {day(n): 150 for n in range(100)}
    wanted = {day(10): 1, day(50): 1, day(90): 1}
    assert cheapest_cover(wanted, counts) == ([], [day(10), day(50), day(90)])


def test_many_records_of_one_day_are_listed_with_their_day() -> None:
    counts = {day(n): 150 for n in range(100)}
    ranges, singles = cheapest_cover({day(5): 3}, counts)
    assert (ranges, singles) == ([(day(5), day(5))], [])


def test_dense_days_are_listed_as_one_range_and_the_cost_is_minimal() -> None:
    counts = {day(n): 20 for n in range(100)}
    wanted = {day(n): 1 for n in range(40, 60)} | {day(95): 1}
    # Days 40-59 hold 400 records: 2 pages for 20 records; day 95's record alone is 1 GET.
    assert cheapest_cover(wanted, counts) == ([(day(40), day(59))], [day(95)])
    assert cost(wanted, counts) == 3
    # Never worse than either extreme: one GET each, or one listing of everything.
    assert cost(wanted, counts) <= min(sum(wanted.values()), -(-2000 // 200))


def test_a_list_without_has_more_pays_its_extra_page() -> None:
    counts = {day(0): 10}
    assert cheapest_cover({day(0): 2}, counts, extra=1) == (
        [],
        [
            day(0),
        ],
    )  # 2 GETs = 1 page + 1
    assert cheapest_cover({day(0): 3}, counts, extra=1) == ([(day(0), day(0))], [])


def test_nothing_wanted_costs_nothing() -> None:
    assert cheapest_cover({}, {day(0): 5}) == ([], [])
