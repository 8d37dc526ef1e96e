"""Property tests of staleness-bounded admission control, simulating arbitrary completion orders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asearcher.rl.system.staleness import StalenessManager


def simulate(
    B: int, eta: int, max_conc: int, choices: list[int], rejects: list[bool], fifo: bool, steps: int = 6
):
    """Drive the manager like the controller does; returns trained (submit_version, train_version, slot) triples."""
    sm = StalenessManager(B, eta, max_conc)
    version, running, ready, trained = 0, [], [], []
    i = 0
    while version < steps:
        for _ in range(sm.capacity(version)):
            slot = sm.slot()
            sm.on_admit(version)
            # the bound holds after every admission
            assert sm.accepted + sm.running <= (eta + version + 1) * B
            assert sm.running <= max_conc
            running.append((version, slot))
        if len(ready) >= B:
            batch, ready = ready[:B], ready[B:]
            trained += [(sv, version, slot) for sv, slot in batch]
            version += 1
            continue
        assert running, "stalled: nothing running, no batch ready, no capacity"
        k = 0 if fifo else choices[i % len(choices)] % len(running)
        g = running.pop(k)
        if rejects[i % len(rejects)] and i % 3:  # never reject everything: the run must make progress
            sm.on_reject()
        else:
            sm.on_accept()
            ready.append(g)
        i += 1
    return sm, trained, ready, running


params = dict(
    B=st.integers(1, 5),
    eta=st.integers(0, 4),
    conc_mult=st.integers(1, 6),
    choices=st.lists(st.integers(0, 1000), min_size=1, max_size=50),
    rejects=st.lists(st.booleans(), min_size=1, max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(**params)
def test_admission_slot_within_eta(B, eta, conc_mult, choices, rejects):
    sm, trained, ready, running = simulate(B, eta, B * conc_mult, choices, rejects, fifo=False)
    # every admitted group occupies a batch slot at most eta versions ahead of its admission version
    for submit, _train, slot in trained:
        assert slot - submit <= eta
    # late groups are never discarded: everything accepted is trained or still waiting
    assert sm.accepted == len(trained) + len(ready)


@settings(max_examples=150, deadline=None)
@given(**params)
def test_fifo_completion_never_trains_stale_beyond_eta(B, eta, conc_mult, choices, rejects):
    _, trained, _, _ = simulate(B, eta, B * conc_mult, choices, [False], fifo=True)
    for submit, train, _ in trained:
        assert 0 <= train - submit <= eta


@settings(max_examples=150, deadline=None)
@given(**params)
def test_eta0_is_synchronous_for_any_completion_order(B, eta, conc_mult, choices, rejects):
    _, trained, _, running = simulate(B, 0, B * conc_mult, choices, rejects, fifo=False)
    assert all(submit == train for submit, train, _ in trained)


def test_concurrency_limit_and_validation():
    sm = StalenessManager(batch_size=8, eta=4, max_concurrent=3)
    assert sm.capacity(0) == 3
    for _ in range(3):
        sm.on_admit(0)
    assert sm.capacity(0) == 0
    with pytest.raises(RuntimeError):
        sm.on_admit(0)
    with pytest.raises(ValueError):
        StalenessManager(batch_size=0, eta=0, max_concurrent=1)
