"""Random sequences of registry operations against a ten-line model of the state machine.

After every step the registry agrees with the model (state, attempt, fingerprint), and the key's
history is one unbroken chain of transitions (every ``from`` is the previous ``to``). One key:
keys do not interact, and a single key reaches the deep states (ready, materializing) far more
often in the same number of steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from omni_assets.providers.base import TaskRef, TaskState, TaskStatus
from omni_assets.registry import (
    PollUpdate,
    RecordState,
    RegisterItem,
    Registry,
    StateConflictError,
)

S = RecordState
KEYS = st.just("a")


@dataclass
class Model:
    state: RecordState = S.PENDING
    attempt: int = 1
    fingerprint: str = ""
    resumable: bool = False


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = time.time()
        # In memory: this checks the logic; durability and concurrency have their own tests.
        self.registry = Registry("sqlite://", clock=lambda: self.now)
        self.model: dict[str, Model] = {}

    def teardown(self) -> None:
        self.registry.close()

    def _set(self, key: str, state: RecordState) -> None:
        self.model[key].state = state
        self.model[key].resumable = False

    @rule(key=KEYS, fingerprint=st.sampled_from(["f1", "f2"]))
    def register(self, key: str, fingerprint: str) -> None:
        item = RegisterItem(key, fingerprint, "emulator", "m", json.dumps({"p": fingerprint}))
        result = self.registry.register([item])
        model = self.model.get(key)
        if model is None:
            assert result.new == [key]
            self.model[key] = Model(fingerprint=fingerprint)
        elif model.fingerprint == fingerprint:
            assert result.unchanged == [key]
        elif model.state in (S.SUBMITTING, S.MATERIALIZING):
            assert result.deferred == [key]
        else:
            assert result.changed == [key]
            model.fingerprint, model.attempt = fingerprint, model.attempt + 1
            self._set(key, S.PENDING)

    @rule(key=KEYS)
    def begin_submit(self, key: str) -> None:
        model = self.model.get(key)
        won = self.registry.begin_submit(key, "idem")
        assert won == (model is not None and model.state is S.PENDING)
        if won:
            self._set(key, S.SUBMITTING)

    @rule(key=KEYS)
    def record_submitted(self, key: str) -> None:
        model = self.model.get(key)
        if model is not None and model.state in (S.SUBMITTING, S.UNKNOWN):
            self.registry.record_submitted(key, TaskRef("emulator", f"t-{key}", "m", self.now))
            self._set(key, S.IN_FLIGHT)
        else:
            with pytest.raises(StateConflictError):
                self.registry.record_submitted(key, TaskRef("emulator", "t", "m", self.now))

    @rule(key=KEYS, outcome=st.sampled_from(["not_created", "failed", "unknown"]))
    def submit_error(self, key: str, outcome: str) -> None:
        model = self.model.get(key)
        if model is not None and model.state is S.SUBMITTING:
            self.registry.record_submit_error(key, {"message": outcome}, outcome)  # type: ignore[arg-type]
            self._set(key, {"not_created": S.PENDING, "failed": S.FAILED}.get(outcome, S.UNKNOWN))
        else:
            with pytest.raises(StateConflictError):
                self.registry.record_submit_error(key, {"message": outcome}, outcome)  # type: ignore[arg-type]

    @rule()
    def submitter_crashed_long_ago(self) -> None:
        self.now += 1000
        stuck = sorted(k for k, m in self.model.items() if m.state is S.SUBMITTING)
        assert sorted(self.registry.mark_unknown_stale_submits(600)) == stuck
        for key in stuck:
            self._set(key, S.UNKNOWN)

    @rule(
        key=KEYS,
        outcome=st.sampled_from(["running", "succeeded", "failed", "cancelled", "timed_out"]),
    )
    def poll(self, key: str, outcome: str) -> None:
        if outcome == "timed_out":
            update = PollUpdate.timed_out(key, None, 60)
        else:
            state = TaskState(outcome)
            url = "https://x/v.mp4" if state is TaskState.SUCCEEDED else None
            status = TaskStatus("emulator", "t", state, outcome, video_url=url)
            update = PollUpdate.from_status(key, status, now=self.now)
        moved = self.registry.record_polls([update])
        model = self.model.get(key)
        if model is None or model.state is not S.IN_FLIGHT or outcome == "running":
            assert moved == {}
            return
        target = {"succeeded": S.READY, "cancelled": S.CANCELLED}.get(outcome, S.FAILED)
        assert moved == {key: target}
        self._set(key, target)
        model.resumable = outcome == "timed_out"

    @rule(key=KEYS)
    def claim(self, key: str) -> None:
        model = self.model.get(key)
        got = self.registry.claim([key], "run")
        assert got == ([key] if model is not None and model.state is S.READY else [])
        if got:
            self._set(key, S.MATERIALIZING)

    @rule(key=KEYS)
    def release(self, key: str) -> None:
        model = self.model.get(key)
        released = self.registry.release(key)
        assert released == (model is not None and model.state is S.MATERIALIZING)
        if released:
            self._set(key, S.READY)

    @rule(key=KEYS)
    def materialized(self, key: str) -> None:
        model = self.model.get(key)
        if model is not None and model.state is S.MATERIALIZING:
            self.registry.record_materialized(key, "file:///v.mp4", "00" * 32, 1)
            self._set(key, S.MATERIALIZED)
        else:
            with pytest.raises(StateConflictError):
                self.registry.record_materialized(key, "file:///v.mp4", "00" * 32, 1)

    @rule(key=KEYS)
    def retry(self, key: str) -> None:
        model = self.model.get(key)
        if model is None or model.state not in (S.FAILED, S.UNKNOWN, S.CANCELLED):
            with pytest.raises(ValueError):
                self.registry.retry(key)
            return
        record = self.registry.retry(key)
        if model.resumable:
            self._set(key, S.IN_FLIGHT)
        else:
            model.attempt += 1
            self._set(key, S.PENDING)
        assert record.state is model.state and record.attempt == model.attempt

    @rule(key=KEYS)
    def cancel(self, key: str) -> None:
        model = self.model.get(key)
        ok = model is not None and model.state in (S.PENDING, S.IN_FLIGHT, S.READY, S.UNKNOWN)
        assert self.registry.cancel(key) == ok
        if ok:
            self._set(key, S.CANCELLED)

    @invariant()
    def agrees_with_the_model(self) -> None:
        records = {r.key: r for r in self.registry.records()}
        assert set(records) == set(self.model)
        for key, model in self.model.items():
            assert (records[key].state, records[key].attempt) == (model.state, model.attempt)
            assert records[key].fingerprint == model.fingerprint

    @invariant()
    def history_is_one_chain(self) -> None:
        for key, model in self.model.items():
            state = S.PENDING.value
            for event in self.registry.history(key):
                if isinstance(event.detail, dict) and "to" in event.detail:
                    assert event.detail["from"] == state, (key, event)
                    state = event.detail["to"]
            assert state == model.state.value


TestRegistryStateMachine = RegistryMachine.TestCase
TestRegistryStateMachine.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
