"""Price presets of services no registered provider stands for yet (a provider keeps its own,
as `Provider.price_preset`)."""

from __future__ import annotations

from ..budget.costmodel import PriceList

BRAKET_STYLE = PriceList(per_task_micro=300_000, per_shot_micro=350)  # AWS Braket: per task and per shot
