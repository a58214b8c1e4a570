"""The chaos run's report (chaos/report.py) from a made-up run: the per-second figures it plots and
the files it writes."""

from __future__ import annotations

import struct

from chaos.checker import Verdict
from chaos.fault_record import FaultRecord
from chaos.report import per_second, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE, data[:8]
    assert data[12:16] == b"IHDR", data[12:16]
    return struct.unpack(">II", data[16:24])


def test_per_second_counts_acknowledgements_and_leaves_silent_seconds_empty():
    started_at = 50.0
    # Second 0: latencies 1..100 ms; second 1: nothing; second 2: one at 2 s.
    latencies = [(50.0 + i / 200, (i + 1) / 1000) for i in range(100)] + [(52.5, 2.0)]
    assert per_second(latencies, started_at) == [(0.0, 100, 50.0, 99.0), (1.0, 0, None, None), (2.0, 1, 2000.0, 2000.0)]


def test_report_has_the_verdict_each_fault_and_a_timeline_png(tmp_path):
    started_at = 1000.0
    latencies = [(started_at + i / 100, 0.01) for i in range(3000) if not 1010 <= started_at + i / 100 < 1013]
    faults = [FaultRecord("kill -9 partition leader", 2, 3.0, 1.5, 0, {}, started_at + 10, started_at + 13)]
    verdict = Verdict(acknowledged=len(latencies))
    report, timeline = write_report(
        tmp_path / "run", verdict, faults, latencies, started_at, ["producer failures: none"]
    )
    text = report.read_text()
    assert text.startswith(f"verdict: PASS {verdict.summary()}\n"), text
    assert "1. t=   10.0 s  kill -9 partition leader (node 2): held 3.0 s, 0 acknowledged while held" in text
    assert "recovery 1.5 s" in text
    data = timeline.read_bytes()
    width, height = png_size(data)
    assert (width, height) == (1200, 650)
    assert len(data) > 20_000, len(data)  # two axes with lines, shading and labels, not a blank image
