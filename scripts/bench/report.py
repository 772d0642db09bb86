"""The printed tables: rounds, paired ratios, the other measurements and the goals."""

from __future__ import annotations

from collections.abc import Sequence

from bench import summary
from bench.contenders import Contender
from bench.fanout import Fanout
from bench.goals import Goal
from bench.latency import Latency
from bench.memory import Memory
from bench.summary import Results


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    """Columns padded to their widest cell, left-aligned before column `right`,
    right-aligned from it on."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < right else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def rounds_table(results: Results, contenders: Sequence[Contender]) -> list[str]:
    header = ["contender", "pushes/round", "median/s", "IQR", "min-max", "CPU us/push (IQR)",
              "x bare (IQR)"]  # fmt: skip
    rows = []
    for c in contenders:
        rate, cpu = summary.rates(results, c.name), summary.cpu_us(results, c.name)
        ratio = summary.paired(results, c.name, "bare")
        rows.append([
            c.name, f"{c.pushes:,}", f"{rate.median:,.0f}",
            f"{rate.q1:,.0f}-{rate.q3:,.0f}", f"{rate.low:,.0f}-{rate.high:,.0f}",
            f"{cpu.median:,.0f} ({cpu.q1:,.0f}-{cpu.q3:,.0f})",
            f"{ratio.median:.2f} ({ratio.q1:.2f}-{ratio.q3:.2f})" if ratio else "-",
        ])  # fmt: skip
    legend = [f"  {c.name}: {c.title}" for c in contenders]
    return [*table(header, rows), *legend]


def per_round_table(results: Results) -> list[str]:
    names = list(results)
    count = max(len(r) for r in results.values())
    header = ["round", *(f"{n} /s" for n in names), "others (cores)"]
    rows = []
    for i in range(count):
        cells = [f"{results[n][i].rate:,.0f}" if i < len(results[n]) else "-" for n in names]
        others = max(results[n][i].others for n in names if i < len(results[n]))
        rows.append([str(i + 1), *cells, f"{others:.2f}"])
    return table(header, rows)


def noise(results: Results) -> list[str]:
    spread = summary.paired(results, "service", "bare")
    if spread is None:
        return []
    return [
        f"noise: the service/bare ratio varies by +/-{spread.relative_iqr():.1%} between "
        f"rounds (half the IQR); others used up to {summary.noisiest_others(results):.2f} "
        "cores of this shared machine during a round"
    ]


def paired_lines(results: Results, service: str, others: Sequence[str]) -> list[str]:
    """The service over each other contender, round by round. Another revision of the
    service reads as a change (+x% pushes/s); anything else as a ratio."""
    lines = []
    for other in others:
        rate = summary.paired(results, service, other)
        cpu = summary.paired(results, service, other, lambda r: r.cpu_us)
        if rate is None or cpu is None:
            continue
        if other.startswith("service@"):
            lines.append(
                f"  {service} against {other}: pushes/s {summary.change(rate)}; "
                f"CPU per push {summary.change(cpu)}"
            )
        else:
            lines.append(
                f"  {service} / {other}: pushes/s {rate.show('.2f', 'x')}; "
                f"CPU per push {cpu.show('.2f', 'x')}"
            )
    return lines


def measures(latency: Latency | None, memory: Memory | None, fanout: Fanout | None) -> list[str]:
    rows = []
    if latency is not None:
        rows.append([
            f"latency at {latency.rate:,.0f} msg/s, publish to push accepted",
            f"p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms, p99 {latency.p99_ms:.1f} "
            f"ms, max {latency.max_ms:.1f} ms ({latency.received:,} of {latency.sent:,} pushes; "
            f"others {latency.others:.2f} cores)",
        ])  # fmt: skip
    if memory is not None:
        rows.append([
            f"peak RSS, {memory.backlog:,} messages queued",
            f"{memory.peak_rss_mb:.0f} MB (drained at {memory.drain_rate:,.0f} msg/s; "
            f"others {memory.others:.2f} cores)",
        ])  # fmt: skip
    if fanout is not None:
        rows.append([
            f"one message to {fanout.devices:,} devices",
            f"{fanout.seconds:.1f} s ({fanout.devices / fanout.seconds:,.0f} pushes/s), "
            f"longest loop stall {fanout.stall_ms:.0f} ms (at start-up {fanout.idle_stall_ms:.0f}"
            f" ms; {fanout.late_ticks} of {fanout.ticks} 20-ms ticks late by > 10 ms), peak RSS "
            f"{fanout.peak_rss_mb:.0f} MB (idle {fanout.idle_rss_mb:.0f} MB); others "
            f"{fanout.others:.2f} cores",
        ])  # fmt: skip
    return table(["measure", "value"], rows, right=2) if rows else []


def goals_table(goals: Sequence[Goal]) -> list[str]:
    return table(
        ["goal (issue 16)", "measured", "mark"],
        [[g.text, g.value, g.verdict] for g in goals],
        right=3,
    )
