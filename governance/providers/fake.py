"""`fake`: an IBM device's fake_provider model simulated locally with its noise, priced like the
device: it is charged the QPU time the model gives, so what a user reads is what is charged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..budget.costmodel import PriceList
from ..budget.money import format_quantity
from .registry import register
from .base import Provider, RunOutcome
from .ibm import IBM_PAY_AS_YOU_GO

if TYPE_CHECKING:
    from ..api.specs import Backend, JobSpec


class FakeProvider(Provider):
    name: ClassVar[str] = "fake"
    price_preset: ClassVar[PriceList] = IBM_PAY_AS_YOU_GO  # priced like the device it models
    usage_source: ClassVar[str] = ("the modelled QPU-seconds of the admitted circuits on the device model, "
                                   "computed by the operator at admission")

    def device_model(self, backend: Backend) -> str | None:
        return backend.backend_name

    def run(self, job: JobSpec, backend: Backend, circuits: list[Any]) -> RunOutcome:
        from .devices import fake_backend
        from .simulate import simulate

        outcome = simulate(job, circuits, fake_backend(backend.backend_name))
        # the model's QPU time to the microsecond: what is charged is the figure a user reads
        outcome.usage["qpuSeconds"] = format_quantity(self.modelled_usage(job, backend).qpu_seconds)
        return outcome


register(FakeProvider())
