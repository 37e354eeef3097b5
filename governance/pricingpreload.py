"""What the pricing workers' forkserver imports once (1-2 s of imports, ~170 MiB shared by every
worker), so that a new worker starts in milliseconds and a task's time limit is spent on its
circuit. Never imported by the operator's own process: it needs none of it to hand out work.
"""

import qiskit  # noqa: F401
import qiskit.qasm2  # noqa: F401
import qiskit.qasm3  # noqa: F401
import qiskit_ibm_runtime.fake_provider  # noqa: F401 - the device models (governance/providers/devices.py)
from qiskit import transpile  # noqa: F401
from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager  # noqa: F401

from . import circuits, pricingworker  # noqa: F401
from .providers import estimate  # noqa: F401

import gc  # noqa: E402

# what was imported stays untouched by the collector in every worker: without this, the first
# collection in a worker writes to every object's header and copies the forkserver's whole heap
# (~170 MiB) into the worker, page by page
gc.freeze()
