"""Interleaved rounds: every contender once per round, the order reversed every other
round (A B C, C B A, A B C, ...), so that a drift of the machine's speed during the run
and the position within a round weigh on every contender alike.

Paired figures (one contender relative to another) are taken per round, from runs
seconds apart, and then summarised: they cancel most of a shared machine's swings.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.contenders import Contender, Round
from bench.procfs import LoadMeter

Results = dict[str, list[Round]]


async def run_rounds(contenders: Sequence[Contender], rounds: int) -> Results:
    """Run the rounds (the contenders started) and print each as it ends."""
    results: Results = {c.name: [] for c in contenders}
    for number in range(rounds):
        order = contenders if number % 2 == 0 else list(reversed(contenders))
        for contender in order:
            await contender.prepare()
            meter = LoadMeter.start()
            result = await contender.run()
            result.others = meter.others()
            results[contender.name].append(result)
        line = round_line(results, number, [c.name for c in order])
        print(f"  round {number + 1}/{rounds}: {line}", flush=True)
    return results


def round_line(results: Results, number: int, order: Sequence[str]) -> str:
    """The round's contenders in the order they ran: pushes/s and CPU us per push."""
    parts = []
    for name in order:
        r = results[name][number]
        parts.append(f"{name} {r.rate:,.0f}/s {r.cpu_us:.0f}us")
    others = max(results[name][number].others for name in order)
    return " | ".join(parts) + f" | others <= {others:.2f} cores"
