"""The docs plot is drawn from calls.pricing's own figures."""

from __future__ import annotations

from decimal import Decimal

from calls import cost_plot, pricing


def test_plot_points_are_the_monthly_estimate():
    (total, rest), = cost_plot.monthly_totals("live", "gpt-live-1.1", [3000], minutes=Decimal(3), stage="dev")
    totals = pricing.group_totals(pricing.monthly_estimate(
        pricing.load_prices(), pricing.deployment("dev"),
        pricing.Workload(calls=3000, minutes=Decimal(3), engine="live", model="gpt-live-1.1"),
    ))
    assert total == sum(totals.values()) and rest == total - totals[pricing.OPENAI]


def test_the_script_writes_a_png(tmp_path):
    path = tmp_path / "cost.png"
    cost_plot.main([str(path), "--minutes", "2"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
