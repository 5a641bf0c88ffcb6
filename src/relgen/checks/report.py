"""What a check found: a `Check` (passed, failed, or not run and why) and the `Report` of all.

A check that did not run is never counted as passed: the summary line counts it apart
(`24 passed, 0 failed, 2 not run`); where the user required it (`--require-kernel-checks`),
it is a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "fail", "not run"]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    evidence: tuple[str, ...] = ()
    ran: bool = True  # False: the check could not run, and says why in its evidence

    @classmethod
    def not_run(cls, name: str, reason: str, *, required: bool = False) -> Check:
        """A check that could not run: never passed; failed where it was required."""
        evidence = (f"  not run: {reason}",)
        if required:
            return cls(name, False, (*evidence, "  FAIL: it was required"))
        return cls(name, False, evidence, ran=False)

    @property
    def status(self) -> Status:
        return "pass" if self.passed else "fail" if self.ran else "not run"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "passed": self.passed,
                "evidence": list(self.evidence)}


_SHOWN = {"pass": "PASS", "fail": "FAIL", "not run": "NOT RUN"}


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    layout_text: str
    instructions_compared: int | None = None
    # what the kernel checks found, as one clause the commit message states
    kernel_clause: str | None = None

    @property
    def passed(self) -> bool:
        """No check failed (one that could not run is not a failure unless required)."""
        return all(c.status != "fail" for c in self.checks)

    def count(self, status: Status) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def summary(self) -> str:
        return (f"{self.count('pass')} passed, {self.count('fail')} failed, "
                f"{self.count('not run')} not run")

    def render(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"{_SHOWN[check.status]}  {check.name}")
            lines += list(check.evidence)
        if self.layout_text:
            lines += ["", self.layout_text.rstrip("\n")]
        lines += ["", self.summary]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "summary": self.summary,
                "checks": [c.to_json() for c in self.checks]}
