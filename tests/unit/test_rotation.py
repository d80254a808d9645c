"""Rotation by remaining capacity: what a mailbox already has committed counts against its share."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from outreach.campaigns import spread_over_mailboxes


def test_a_mailbox_with_a_backlog_gets_newcomers_only_once_the_others_caught_up() -> None:
    assert spread_over_mailboxes(4, [30, 30], [10, 0]) == [1, 1, 1, 1]
    assert spread_over_mailboxes(6, [30, 30], [2, 0]) == [1, 1, 0, 1, 0, 1]


def test_the_backlog_is_counted_in_days_of_each_mailbox_limit() -> None:
    # 30 queued on a 30-a-day mailbox is one day; 30 queued on a 60-a-day one is half a day.
    slots = spread_over_mailboxes(90, [30, 60], [30, 30])
    assert Counter(slots) == Counter({0: 20, 1: 70})  # both then finish after 50/30 ≈ 100/60 days


def test_no_load_keeps_the_static_shares_and_an_empty_list_gets_nothing() -> None:
    assert spread_over_mailboxes(5, [30, 30], None) == spread_over_mailboxes(5, [30, 30], [0, 0]) == [0, 1, 0, 1, 0]
    assert spread_over_mailboxes(3, []) == []


@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, 200)), min_size=1, max_size=6),
    st.integers(0, 400),
)
def test_no_prospect_could_go_out_sooner_through_another_mailbox(boxes: list[tuple[int, int]], count: int) -> None:
    weights, loads = [w for w, _ in boxes], [load for _, load in boxes]
    got = Counter(spread_over_mailboxes(count, weights, loads))
    assert sum(got.values()) == count
    for j in got:  # moving j's last newcomer to any other mailbox i would not make it go out earlier
        last_j = (loads[j] + got[j] - 0.5) / weights[j]
        for i in range(len(boxes)):
            assert last_j <= (loads[i] + got[i] + 0.5) / weights[i] + 1e-9
