"""A hypothesis state machine drives CircuitBreaker and a reference model side by side."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ragprod.errors import CircuitOpenError
from ragprod.resilience import BreakerState, CircuitBreaker
from ragprod.testing import FakeClock

SIZE, MIN_CALLS, OPEN_FOR, TRIALS, THRESHOLD = 5, 3, 10.0, 2, 0.5


@dataclass
class Token:
    gen: int
    trial: bool


class Model:
    """resilience4j's documented semantics, written as plainly as possible."""

    def __init__(self) -> None:
        self.state = "closed"
        self.gen = 0
        self.window: deque[bool] = deque(maxlen=SIZE)
        self.open_until = 0.0
        self.permits = 0
        self.trials: list[bool] = []

    def go(self, state: str, now: float) -> None:
        self.state = state
        self.gen += 1
        if state == "open":
            self.open_until = now + OPEN_FOR
        elif state == "half_open":
            self.permits, self.trials = TRIALS, []
        else:
            self.window.clear()

    def acquire(self, now: float) -> Token | None:
        if self.state == "closed":
            return Token(self.gen, False)
        if self.state == "open":
            if now < self.open_until:
                return None
            self.go("half_open", now)
        if self.permits > 0:
            self.permits -= 1
            return Token(self.gen, True)
        return None

    def finish(self, token: Token, outcome: str, now: float) -> None:
        if token.gen != self.gen:
            return
        if token.trial:
            if outcome == "cancel":
                self.permits += 1
                return
            self.trials.append(outcome == "fail")
            if len(self.trials) >= TRIALS:
                failed = sum(self.trials) >= len(self.trials) * THRESHOLD
                self.go("open" if failed else "closed", now)
        elif outcome != "cancel" and self.state == "closed":
            self.window.append(outcome == "fail")
            calls, failures = len(self.window), sum(self.window)
            if outcome == "fail" and calls >= MIN_CALLS and failures >= calls * THRESHOLD:
                self.go("open", now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(100.0)
        self.breaker = CircuitBreaker(
            "model",
            window_size=SIZE,
            minimum_calls=MIN_CALLS,
            open_duration=OPEN_FOR,
            half_open_calls=TRIALS,
            failure_rate_threshold=THRESHOLD,
            clock=self.clock,
        )
        self.model = Model()
        self.held: list[tuple[Any, Token]] = []

    def _enter(self) -> tuple[Any, Token] | None:
        expected = self.model.acquire(self.clock())
        guard = self.breaker.guard()
        try:
            guard.__enter__()
        except CircuitOpenError:
            assert expected is None
            return None
        assert expected is not None
        return guard, expected

    def _exit(self, guard: Any, token: Token, outcome: str) -> None:
        exc: BaseException | None = {
            "ok": None,
            "fail": ConnectionError(),
            "cancel": KeyboardInterrupt(),
        }[outcome]
        guard.__exit__(type(exc) if exc else None, exc, None)
        self.model.finish(token, outcome, self.clock())

    @rule(outcome=st.sampled_from(["ok", "fail", "cancel"]))
    def call(self, outcome: str) -> None:
        entered = self._enter()
        if entered is not None:
            self._exit(*entered, outcome)

    @rule()
    def hold(self) -> None:
        entered = self._enter()
        if entered is not None:
            self.held.append(entered)

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(0, 10), outcome=st.sampled_from(["ok", "fail", "cancel"]))
    def release(self, index: int, outcome: str) -> None:
        guard, token = self.held.pop(index % len(self.held))
        self._exit(guard, token, outcome)

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0, 12.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state(self) -> None:
        assert self.breaker.state is BreakerState(self.model.state)


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
TestBreakerAgainstModel.__doc__ = "The breaker's state always equals the reference model's."
