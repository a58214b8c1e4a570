"""`python -m chaos --faults 20 --seed 7`: a longer, randomized chaos campaign; prints each fault,
the recovery times and the checker's verdict, exits 1 if anything acknowledged was damaged."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from chaos.nemesis import ChaosRun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--faults", type=int, default=10, help="how many faults to apply, one after another")
    parser.add_argument("--seed", type=int, default=None, help="picks the faults; printed so a run can be replayed")
    parser.add_argument("--hold-s", type=float, default=5.0, help="how long each fault lasts")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the nodes' data and logs here")
    args = parser.parse_args(argv)
    if args.faults < 1 or args.hold_s <= 0:
        parser.error("--faults must be >= 1 and --hold-s > 0")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    print(f"seed {seed}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="raftlog-chaos-"))
    run = ChaosRun(data_dir, hold_s=args.hold_s)
    try:
        run.start()
        for _ in range(args.faults):
            getattr(run, random.choice(ChaosRun.FAULTS))()
        verdict = run.finish()
    finally:
        run.close()
    recoveries = sorted(f.recovered_s for f in run.faults)
    print(f"{len(run.faults)} faults, recovery after undoing a fault: median {recoveries[len(recoveries) // 2]:.1f} s, "
          f"max {recoveries[-1]:.1f} s; data in {data_dir}")
    print("PASS" if verdict.ok else "FAIL", verdict.summary())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
