"""The run's per-month summary: totals, unallocated by reason, accounts, top lists."""

from __future__ import annotations

import datetime as dt

import pytest

from carbon_core import schemas
from carbon_core.summary import format_summary, summarise_months

DEC = dt.date(2024, 12, 1)


def test_summary_adds_allocated_and_unallocated(spark):
    def row(account, internal, region, product, s1, s2l, s2m, s3):
        return (DEC, "v1.0", "P", account, internal, region, region, product,
                0.0, s1, s2l, s2m, s3, 0.0, s1 + s2l + s3, s1 + s2m + s3)  # fmt: skip

    emissions = spark.createDataFrame(
        [
            row("A", False, "r1", "EC2", 100.0, 1000.0, 500.0, 400.0),  # LBM 1500, MBM 1000
            row("B", False, "r2", "S3", 0.0, 300.0, 100.0, 200.0),  # LBM 500, MBM 300
            row("I", True, "r1", "EC2", 0.0, 100.0, 100.0, 0.0),  # LBM 100, MBM 100
        ],
        schemas.ACCOUNT_EMISSIONS,
    )
    unallocated = spark.createDataFrame(
        [
            (DEC, "v1.0", "r1", "unused_capacity", 0.0, 0.0, 700.0, 600.0, 300.0, 0.0),
            (DEC, "v1.0", "r2", "network_overhead", 0.0, 0.0, 200.0, 0.0, 0.0, 0.0),
        ],
        schemas.UNALLOCATED,
    )
    [month] = summarise_months(emissions, unallocated, [DEC])
    # allocated LBM 1500 + 500 + 100 = 2100 kg; MBM 1000 + 300 + 100 = 1400 kg
    assert month.allocated_lbm_t == pytest.approx(2.1)
    assert month.allocated_mbm_t == pytest.approx(1.4)
    # unused capacity LBM 700 + 300 = 1000 kg (MBM 600 + 300); network overhead 200 kg (MBM 0)
    assert month.unallocated_lbm_t == pytest.approx(
        {"unused_capacity": 1.0, "network_overhead": 0.2}
    )
    assert month.total_lbm_t == pytest.approx(3.3)
    assert month.total_mbm_t == pytest.approx(1.4 + 0.9)
    assert (month.accounts, month.external_accounts) == (3, 2)
    assert month.top_regions == [("r1", pytest.approx(1.6)), ("r2", pytest.approx(0.5))]
    assert month.top_services[0] == ("EC2", pytest.approx(1.6))
    text = format_summary([month])
    assert text.splitlines()[1].split() == [
        "2024-12", "v1.0", "3.300", "2.300", "2.100", "1.200", "3", "(2)",
    ]  # fmt: skip
    assert "network_overhead 0.200, unused_capacity 1.000" in text
