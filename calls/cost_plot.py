"""Draw docs/cost.png: monthly cost against call volume per engine, from calls.pricing.

    python -m calls.cost_plot docs/cost.png [--minutes 3] [--stage prod]

A development tool (matplotlib is in requirements/dev.txt only); it needs no database or Django settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from decimal import Decimal

from calls import pricing

ENGINES: tuple[tuple[str, str], ...] = (
    ("realtime", "gpt-realtime-2.1"),
    ("realtime", "gpt-realtime-2.1-mini"),
    ("live", "gpt-live-1.1"),
)
VOLUMES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000)


def monthly_totals(
    engine: str, model: str, volumes: Sequence[int], *, minutes: Decimal, stage: str
) -> list[tuple[Decimal, Decimal]]:
    """(total, AWS + Twilio) USD a month for each volume of `minutes`-minute calls."""
    table = pricing.load_prices()
    deploy = pricing.deployment(stage)
    points = []
    for calls in volumes:
        lines = pricing.monthly_estimate(
            table, deploy, pricing.Workload(calls=calls, minutes=minutes, engine=engine, model=model)
        )
        totals = pricing.group_totals(lines)
        total = sum(totals.values(), Decimal(0))
        points.append((total, total - totals[pricing.OPENAI]))
    return points


def draw(path: str, *, minutes: Decimal = Decimal(3), stage: str = "prod") -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    platform = None
    for engine, model in ENGINES:
        points = monthly_totals(engine, model, VOLUMES, minutes=minutes, stage=stage)
        axes.plot(VOLUMES, [float(total) for total, _ in points], marker="o", label=f"{model} ({engine})")
        platform = points
    assert platform is not None
    axes.plot(VOLUMES, [float(rest) for _, rest in platform], linestyle="--", color="grey",
              label="AWS + Twilio only (any engine)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(f"calls a month ({minutes:g} minutes each)")
    axes.set_ylabel("USD a month")
    axes.set_title(f"voiceops monthly cost, stage {stage}, {pricing.DEFAULT_REGION} (calls/prices.toml)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="Where to write the PNG, e.g. docs/cost.png.")
    parser.add_argument("--minutes", type=Decimal, default=Decimal(3), help="Average call length (default 3).")
    parser.add_argument("--stage", choices=pricing.STAGES, default="prod", help="CDK stage (default prod).")
    args = parser.parse_args(argv)
    draw(args.path, minutes=args.minutes, stage=args.stage)


if __name__ == "__main__":
    main()
