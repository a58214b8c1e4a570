"""`python -m chaos --faults 20 --seed 7`: a longer, randomized chaos campaign (`--backend docker`:
on containers of the raftlog image instead of processes in network namespaces; `--secure`: TLS on every listener,
mutual TLS between nodes, ACLs on, the workload as a user with only the ACLs it needs, as
chaos/nemesis.py says); prints the seed
and the planned faults (the plan is a function of the seed alone), each fault as it is applied,
the recovery times and the checker's verdict, which is always printed. Exits 1 if anything
acknowledged was damaged or the run could not check everything (e.g. a recovery timed out)."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from chaos.docker_run import DOCKER_FAULT_KINDS, BackendUnavailable, DockerChaosRun
from chaos.nemesis import ChaosRun
from chaos.report import REPORT_NAME, TIMELINE_NAME
from chaos.schedule import FAULT_KINDS, KNOWN_FAULT_KINDS, plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--faults", type=int, default=10, help="how many faults to apply, one after another")
    parser.add_argument("--seed", type=int, default=None, help="plans the faults; printed so a run can be replayed")
    parser.add_argument(
        "--backend",
        choices=("netns", "docker"),
        default="netns",
        help="nodes as processes in network namespaces, or as containers (needs Docker and the "
        "raftlog image, which `make image` builds)",
    )
    parser.add_argument(
        "--kinds",
        default=None,
        help=f"comma-separated fault kinds to choose from (default: all the backend has, of {','.join(KNOWN_FAULT_KINDS)})",
    )
    parser.add_argument("--hold-s", type=float, default=5.0, help="how long each fault lasts")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="nodes as `raftlog cluster up --secure` starts them (TLS everywhere, mutual TLS between nodes, "
        "ACLs on); the workload authenticates by a client certificate with only the ACLs it needs",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the nodes' data and logs here")
    args = parser.parse_args(argv)
    if args.faults < 1 or args.hold_s <= 0:
        parser.error("--faults must be >= 1 and --hold-s > 0")
    available = FAULT_KINDS if args.backend == "netns" else DOCKER_FAULT_KINDS
    kinds = available if args.kinds is None else tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(available):
        parser.error(
            f"--kinds must name some of {', '.join(available)} (backend {args.backend}); unknown: "
            f"{', '.join(sorted(set(kinds) - set(available))) or '(none given)'}"
        )
    # Not the global generator: nothing else in the process may shift a campaign's plan.
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    schedule = plan(seed, args.faults, kinds)
    print(f"seed {seed}{' (secure: TLS, mutual TLS between nodes, ACLs)' if args.secure else ''}; plan:")
    for number, fault in enumerate(schedule, 1):
        print(f"  {number:3d}. {fault}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="raftlog-chaos-"))
    if args.backend == "docker":
        try:
            run: ChaosRun = DockerChaosRun(data_dir, hold_s=args.hold_s)
        except BackendUnavailable as exc:
            print(f"python -m chaos: the docker backend cannot run: {exc}", file=sys.stderr)
            return 2
    else:
        run = ChaosRun(data_dir, hold_s=args.hold_s, secure=args.secure)
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
        print(
            f"{len(run.faults)} of {len(schedule)} faults applied, recovery after undoing a fault: median "
            f"{recoveries[len(recoveries) // 2]:.1f} s, max {recoveries[-1]:.1f} s"
            f"{f', {timed_out} did not recover' if timed_out else ''}; data in {data_dir}"
        )
    else:
        print(f"{len(run.faults)} of {len(schedule)} faults applied; data in {data_dir}")
    print("PASS" if verdict.ok else "FAIL", verdict.summary())
    print(f"report: {data_dir / REPORT_NAME}, timeline: {data_dir / TIMELINE_NAME}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
