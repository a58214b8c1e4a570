"""A campaign's plan is a function of its seed alone (no processes: cheap)."""

from __future__ import annotations

import random

import pytest

from chaos.schedule import FAULT_KINDS, PlannedFault, plan


def test_the_same_seed_plans_the_same_faults_whatever_the_global_random_does():
    random.seed(1)
    first = plan(7, 50)
    random.seed(2)  # e.g. the producer's retry jitter drawing from the global generator
    for _ in range(1000):
        random.random()
    assert plan(7, 50) == first


def test_different_seeds_plan_different_faults():
    assert plan(7, 50) != plan(8, 50)
    assert {fault.kind for fault in plan(7, 200)} == set(FAULT_KINDS)


def test_a_plan_only_uses_the_kinds_asked_for():
    assert {fault.kind for fault in plan(3, 100, ("kill_leader", "fill_disk"))} == {"kill_leader", "fill_disk"}
    with pytest.raises(ValueError, match="unknown"):
        plan(3, 10, ("kill_leader", "unplug_the_machine"))


def test_a_planned_fault_prints_as_it_is_replayed():
    assert str(PlannedFault("flip_byte", 12)) == "flip_byte (draw 12)"


def test_python_m_chaos_refuses_an_unknown_fault_kind(capsys):
    from chaos.__main__ import main  # noqa: PLC0415 - only this test runs the CLI

    with pytest.raises(SystemExit) as exited:
        main(["--kinds", "kill_leader,unplug_the_machine"])
    assert exited.value.code == 2
    assert "unknown: unplug_the_machine" in capsys.readouterr().err
