"""A deep copy for JSON documents: what the store and the patches copy on every write.

`copy.deepcopy` keeps a memo of every object it visits (for cycles and shared references, which a
document parsed from JSON or YAML never has) and costs about three times as much. The emulator
copies each object several times per request, so this is a fifth of its CPU in a burst."""

from __future__ import annotations

from typing import Any


def copy_json(value: Any) -> Any:
    """A copy of `value` sharing no dict or list with it; other values (str, int, float, bool,
    None, datetime from YAML) are immutable and shared."""
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) for v in value]
    if isinstance(value, dict):  # a subclass (an OrderedDict, say): kept as a plain dict
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_json(v) for v in value]
    return value
