"""The budget rows another domain's statement reads (the decision's state statement reads the
budgets that apply with the rest of what a decision depends on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One window counter of a budget that applies, as the state statement reads it:
    ``window`` is None for a budget without counters."""

    scope: str
    key: str
    actions_per_minute: int | None
    actions_per_hour: int | None
    spend_per_day: int | None
    spend_field: str
    window: str | None
    window_start: int | None
    used: int | None

    @property
    def limits(self) -> tuple[Any, ...]:
        return (
            self.scope,
            self.key,
            self.actions_per_minute,
            self.actions_per_hour,
            self.spend_per_day,
            self.spend_field,
        )
