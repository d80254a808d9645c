from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from outreach.campaigns import spread_over_mailboxes


def test_equal_mailboxes_alternate() -> None:
    assert spread_over_mailboxes(5, [30, 30]) == [0, 1, 0, 1, 0]


def test_shares_follow_the_daily_limits() -> None:
    assert Counter(spread_over_mailboxes(100, [30, 10])) == Counter({0: 75, 1: 25})


@given(st.lists(st.integers(1, 50), min_size=1, max_size=6), st.integers(0, 300))
def test_every_prefix_is_within_one_of_its_share(weights: list[int], count: int) -> None:
    slots = spread_over_mailboxes(count, weights)
    total = sum(weights)
    for k, weight in enumerate(weights):
        assert abs(slots.count(k) - count * weight / total) < len(weights)
