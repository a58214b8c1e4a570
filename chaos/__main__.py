"""`python -m chaos --faults 20 --seed 7`: a longer, randomized chaos campaign; prints the seed
and the planned faults (the plan is a function of the seed alone), each fault as it is applied,
the recovery times and the checker's verdict, which is always printed. Exits 1 if anything
acknowledged was damaged or the run could not check everything (e.g. a recovery timed out)."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from chaos.nemesis import ChaosRun
from chaos.schedule import FAULT_KINDS, plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--faults", type=int, default=10, help="how many faults to apply, one after another")
    parser.add_argument("--seed", type=int, default=None, help="plans the faults; printed so a run can be replayed")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS),
                        help=f"comma-separated fault kinds to choose from (default: all of {','.join(FAULT_KINDS)})")
    parser.add_argument("--hold-s", type=float, default=5.0, help="how long each fault lasts")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the nodes' data and logs here")
    args = parser.parse_args(argv)
    if args.faults < 1 or args.hold_s <= 0:
        parser.error("--faults must be >= 1 and --hold-s > 0")
    kinds = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    if not kinds or set(kinds) - set(FAULT_KINDS):
        parser.error(f"--kinds must name some of {', '.join(FAULT_KINDS)}; unknown: "
                     f"{', '.join(sorted(set(kinds) - set(FAULT_KINDS))) or '(none given)'}")
    # Not the global generator: nothing else in the process may shift a campaign's plan.
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    schedule = plan(seed, args.faults, kinds)
    print(f"seed {seed}; plan:")
    for number, fault in enumerate(schedule, 1):
        print(f"  {number:3d}. {fault}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="raftlog-chaos-"))
    run = ChaosRun(data_dir, hold_s=args.hold_s)
    try:
        verdict = run.run(schedule)
    finally:
        try:
            run.close()
        except Exception as exc:  # noqa: BLE001 - the verdict below matters more than a failed cleanup
            print(f"cleanup failed: {type(exc).__name__}: {exc}")
    recoveries = sorted(f.recovered_s for f in run.faults if f.recovered_s is not None)
    timed_out = sum(1 for f in run.faults if f.recovered_s is None)
    if recoveries:
        print(f"{len(run.faults)} of {len(schedule)} faults applied, recovery after undoing a fault: median "
              f"{recoveries[len(recoveries) // 2]:.1f} s, max {recoveries[-1]:.1f} s"
              f"{f', {timed_out} did not recover' if timed_out else ''}; data in {data_dir}")
    else:
        print(f"{len(run.faults)} of {len(schedule)} faults applied; data in {data_dir}")
    print("PASS" if verdict.ok else "FAIL", verdict.summary())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
