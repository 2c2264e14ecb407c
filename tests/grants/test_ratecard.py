"""The rate card: prices per GPU-hour by flavor and tier, versions that never overlap, rounding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kumo.core.errors import InvalidValueError
from kumo.grants import RateCard, RateCardVersion, Tier, from_micro, money, to_micro

APR = datetime(2025, 4, 1, tzinfo=UTC)
H200, H100 = "gpu.h200", "gpu.h100"


def day(n: float) -> datetime:
    return APR + timedelta(days=n)


def version(start: datetime, end: datetime | None, label: str, **prices: str) -> RateCardVersion:
    """``h200="1000"`` prices the guaranteed tier; ``h200_preemptible="500"`` the other."""
    table = {}
    for key, price in prices.items():
        model, _, tier = key.partition("_")
        table[f"gpu.{model}", tier or "guaranteed"] = Decimal(price)
    return RateCardVersion(start, end, "JPY", table, label=label)


def test_prices_by_flavor_and_tier_with_the_preemptible_fallback() -> None:
    v = RateCardVersion(
        APR, None, "JPY",
        {(H200, "guaranteed"): Decimal("1000"), (H100, Tier.GUARANTEED): "700", (H100, "preemptible"): 300},
    )  # fmt: skip
    assert v.price(H200, "guaranteed") == Decimal("1000.000000")
    assert v.price(H200, Tier.PREEMPTIBLE) == Decimal("600.000000")  # no price given: 1000 × (1 - 0.4)
    assert v.price(H100, "preemptible") == Decimal("300.000000")  # given: no discount applied
    assert v.price("gpu.a100", "guaranteed") is None
    assert v.price_micro(H200, Tier.PREEMPTIBLE) == 600_000_000


def test_a_version_can_set_its_own_preemptible_discount() -> None:
    v = RateCardVersion(APR, None, "USD", {(H200, "guaranteed"): "4.20"}, preemptible_discount=Decimal("0.25"))
    assert v.price(H200, "preemptible") == Decimal("3.150000")  # 4.20 × 0.75


def test_the_discounted_price_rounds_half_to_even() -> None:
    # 0.000005 × 0.5 = 0.0000025: halfway between 0.000002 and 0.000003, so the even one.
    v = RateCardVersion(APR, None, "JPY", {(H200, "guaranteed"): "0.000005"}, preemptible_discount=Decimal("0.5"))
    assert v.price(H200, "preemptible") == Decimal("0.000002")
    # 0.000007 × 0.5 = 0.0000035: between 0.000003 and 0.000004; the even one is 0.000004.
    v = RateCardVersion(APR, None, "JPY", {(H200, "guaranteed"): "0.000007"}, preemptible_discount=Decimal("0.5"))
    assert v.price(H200, "preemptible") == Decimal("0.000004")


def test_money_keeps_six_places_half_to_even() -> None:
    assert money("1.0000005") == Decimal("1.000000")
    assert money("1.0000015") == Decimal("1.000002")
    assert money(0.1) == Decimal("0.100000")  # a float is read through its shortest repr
    assert to_micro(Decimal("12.345678")) == 12_345_678
    assert from_micro(12_345_678) == Decimal("12.345678")
    for bad in (True, "x", float("nan"), None):
        with pytest.raises(InvalidValueError):
            money(bad)


def test_the_card_finds_the_version_in_force_and_its_price() -> None:
    card = RateCard([version(day(10), None, "v2", h200="1200"), version(APR, day(10), "v1", h200="1000")])
    assert [v.label for v in card.versions] == ["v1", "v2"]  # sorted by start
    assert card.version_at(APR - timedelta(seconds=1)) is None
    assert card.price(H200, "guaranteed", APR) == Decimal("1000")
    assert card.price(H200, "guaranteed", day(10) - timedelta(microseconds=1)) == Decimal("1000")
    assert card.price(H200, "guaranteed", day(10)) == Decimal("1200")  # a version starts at its effective_from
    assert card.price(H200, "preemptible", day(400)) == Decimal("720")  # open-ended; 1200 × 0.6
    with pytest.raises(InvalidValueError, match="no version is in force"):
        card.price(H200, "guaranteed", APR - timedelta(days=1))
    with pytest.raises(InvalidValueError, match=r"v1 has no price for gpu\.h100"):
        card.price(H100, "guaranteed", APR)


def test_overlapping_versions_are_refused_naming_both() -> None:
    v1 = version(APR, day(10), "v1", h200="1000")
    with pytest.raises(InvalidValueError, match=r"version v1 \(.*\) overlaps version v2 \(.*open-ended\)"):
        RateCard([v1, version(day(9), None, "v2", h200="1200")])
    open_ended = version(APR, None, "v1", h200="1000")
    with pytest.raises(InvalidValueError, match=r"version v1 .* overlaps version v3"):
        RateCard([open_ended]).with_version(version(day(30), day(40), "v3", h200="900"))
    # Touching is not overlapping: [Apr 1, Apr 11) then [Apr 11, ...).
    assert len(RateCard([v1, version(day(10), None, "v2", h200="1200")]).versions) == 2


def test_segments_cut_an_interval_at_version_boundaries_and_gaps() -> None:
    card = RateCard([version(APR, day(10), "v1", h200="1000"), version(day(12), day(20), "v2", h200="1200")])
    segments = card.segments(day(9), day(13))
    assert [(a, b, v.label if v else None) for a, b, v in segments] == [
        (day(9), day(10), "v1"),
        (day(10), day(12), None),  # a gap: no price
        (day(12), day(13), "v2"),
    ]
    assert card.segments(day(13), day(13)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effective_from": datetime(2025, 4, 1)}, "timezone-aware"),
        ({"effective_to": APR}, "is not after effective_from"),
        ({"currency": "EUR"}, "currency 'EUR' is not one of"),
        ({"prices": {(H200, "guaranteed"): "-1"}}, "must not be negative"),
        ({"prices": {("cpu", "guaranteed"): "1"}}, "not a GPU flavor"),
        ({"prices": {(H200, "spot"): "1"}}, "'spot' is not one of"),
        ({"prices": {H200: "1"}}, r"key must be \(flavor, tier\)"),
        ({"preemptible_discount": Decimal("1.5")}, "from 0 to 1"),
    ],
)
def test_bad_versions_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "effective_from": APR, "effective_to": None, "currency": "JPY", "prices": {(H200, "guaranteed"): "1"},
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(InvalidValueError, match=message):
        RateCardVersion(**args)  # type: ignore[arg-type]


@dataclass
class StoredVersion:
    """Shaped like the store's RateVersion row (kumo.grants.RateVersionLike)."""

    label: str
    effective_from: datetime
    effective_to: datetime | None
    currency: str
    prices: dict[tuple[str, str], Decimal]
    preemptible_discount: Decimal


def test_a_card_reads_stored_rows() -> None:
    row = StoredVersion("#1", APR, None, "USD", {(H200, "guaranteed"): Decimal("3.5")}, Decimal("0.5"))
    card = RateCard([row])
    assert card.versions[0].label == "#1"
    assert card.price(H200, "preemptible", day(1)) == Decimal("1.75")
