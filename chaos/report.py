"""The report every chaos run leaves in its data dir (both backends: ChaosRun.finish writes it).

report.txt: the checker's verdict and each fault (when, on which node, how long it held, how long
recovery took). timeline.png: like Jepsen's latency plots, the workload's throughput (acknowledged
records per second) and latency (p50 and p99 of send-to-acknowledgement, per second) over the run,
each fault's window shaded and labelled, and the recovery after it shaded lighter.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.fault_record import FaultRecord

if TYPE_CHECKING:
    from chaos.checker import Verdict

REPORT_NAME = "report.txt"
TIMELINE_NAME = "timeline.png"
BIN_S = 1.0  # the timeline's resolution: one point per second


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    assert sorted_values, "percentile of no values"
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def where(fault: FaultRecord) -> str:
    # Faults of the whole cluster (a rolling restart) have no single target: node id 0.
    return f"node {fault.target}" if fault.target > 0 else "every node"


def per_second(
    latencies: Iterable[tuple[float, float]], started_at: float
) -> list[tuple[float, int, float | None, float | None]]:
    """(second since started_at, acknowledgements in it, p50 ms, p99 ms) for every second from 0 to
    the last acknowledgement, seconds without any having 0 and no latency."""
    bins: dict[int, list[float]] = {}
    for acknowledged_at, latency_s in latencies:
        bins.setdefault(int((acknowledged_at - started_at) // BIN_S), []).append(latency_s * 1000.0)
    if not bins:
        return []
    rows = []
    for index in range(min(0, min(bins)), max(bins) + 1):
        values = sorted(bins.get(index, []))
        if values:
            rows.append((index * BIN_S, len(values), percentile(values, 0.5), percentile(values, 0.99)))
        else:
            rows.append((index * BIN_S, 0, None, None))
    return rows


def write_report(
    data_dir: Path,
    verdict: Verdict,
    faults: Sequence[FaultRecord],
    latencies: Sequence[tuple[float, float]],
    started_at: float,
    extra_lines: Sequence[str] = (),
) -> list[Path]:
    """Writes report.txt and timeline.png into data_dir; returns their paths."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = per_second(latencies, started_at)
    lines = [f"verdict: {'PASS' if verdict.ok else 'FAIL'} {verdict.summary()}", *extra_lines, "", "faults:"]
    for number, fault in enumerate(faults, 1):
        recovered = f"{fault.recovered_s:.1f} s" if fault.recovered_s is not None else "did not recover"
        lines.append(
            f"  {number:3d}. t={fault.injected_at - started_at:7.1f} s  {fault.name} ({where(fault)}): "
            f"held {fault.undone_at - fault.injected_at:.1f} s, {fault.acknowledged_while_held} acknowledged "
            f"while held, recovery {recovered}{f', {fault.effect}' if fault.effect else ''}"
        )
    if rows:
        throughputs = [count for _, count, _, _ in rows]
        lines += [
            "",
            f"throughput: {len(latencies)} acknowledged in {len(rows)} s, per second median "
            f"{percentile(sorted(throughputs), 0.5)}, min {min(throughputs)}",
            f"latency: p50 {percentile(sorted(lat for _, lat in latencies), 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(sorted(lat for _, lat in latencies), 0.99) * 1000:.1f} ms over the run",
        ]
    report = data_dir / REPORT_NAME
    report.write_text("\n".join(lines) + "\n")
    timeline = data_dir / TIMELINE_NAME
    draw_timeline(timeline, rows, faults, started_at, verdict)
    return [report, timeline]


def draw_timeline(
    path: Path,
    rows: Sequence[tuple[float, int, float | None, float | None]],
    faults: Sequence[FaultRecord],
    started_at: float,
    verdict: Verdict,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a test machine
    import matplotlib.pyplot as plt

    figure, (throughput_axes, latency_axes) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6.5), gridspec_kw={"height_ratios": [1, 1.3]}
    )
    seconds = [t for t, _, _, _ in rows]
    throughput_axes.step(seconds, [c for _, c, _, _ in rows], where="post", color="tab:blue", linewidth=1)
    throughput_axes.set_ylabel("acknowledged / s")
    throughput_axes.set_ylim(bottom=0)
    # NaN for a second without acknowledgements: the line breaks there instead of bridging the gap.
    p50s = [math.nan if p50 is None else p50 for _, _, p50, _ in rows]
    p99s = [math.nan if p99 is None else p99 for _, _, _, p99 in rows]
    latency_axes.plot(seconds, p50s, ".-", ms=3, lw=0.8, label="p50")
    latency_axes.plot(seconds, p99s, ".-", ms=3, lw=0.8, label="p99")
    latency_axes.set_yscale("log")
    latency_axes.set_ylabel("latency, send to ack (ms)")
    latency_axes.set_xlabel("seconds since the run started")
    latency_axes.legend(loc="upper left", fontsize=8)
    colors = plt.get_cmap("tab10")
    for number, fault in enumerate(faults):
        start, end = fault.injected_at - started_at, fault.undone_at - started_at
        color = colors(number % 10)
        for axes in (throughput_axes, latency_axes):
            axes.axvspan(start, end, color=color, alpha=0.25, lw=0)
            if fault.recovered_s is not None:
                axes.axvspan(end, end + fault.recovered_s, color=color, alpha=0.08, lw=0)
        throughput_axes.text(
            start,
            0.97,
            f"{number + 1}. {fault.name} ({where(fault)})",
            transform=throughput_axes.get_xaxis_transform(),
            rotation=90,
            fontsize=7,
            va="top",
            ha="left",
            color="black",
        )
    for axes in (throughput_axes, latency_axes):
        axes.grid(True, alpha=0.3)
    title = textwrap.wrap(f"{'PASS' if verdict.ok else 'FAIL'}: {verdict.summary()}", 150)
    title.append("each fault's window is shaded (numbered as in report.txt), the recovery after it lighter")
    figure.suptitle("\n".join(title), fontsize=9, y=0.995, va="top")
    figure.tight_layout()  # makes room for the suptitle too
    figure.savefig(path, dpi=100)
    plt.close(figure)
