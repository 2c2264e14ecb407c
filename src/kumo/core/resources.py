"""Resource units and flavors.

Quota and usage are counted per *flavor*: ``gpu.<model>`` for each GPU model (``gpu.h200``,
``gpu.h100``, ``gpu.v100``, ...), ``cpu`` and ``mem``. Internally every amount is an integer:

- GPUs in milli-GPUs (1 GPU = 1000), so a fractional slice — a MIG-like 1/7 (142 milli) or a
  trace's ``gpu_milli`` — uses the same flavor as whole GPUs of its model;
- CPU in millicores;
- memory in MiB.
"""

from __future__ import annotations

import re
from fractions import Fraction

from kumo.core.errors import InvalidValueError

GPU_MILLI = 1000
"""Milli-GPUs in one whole GPU."""

CPU = "cpu"
MEM = "mem"
GPU_PREFIX = "gpu."

_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


def gpu_flavor(model: str) -> str:
    """The quota flavor of a GPU model: ``gpu_flavor("h200") == "gpu.h200"``."""
    return GPU_PREFIX + model


def is_gpu_flavor(flavor: str) -> bool:
    return flavor.startswith(GPU_PREFIX)


def model_of(flavor: str) -> str:
    return flavor[len(GPU_PREFIX) :]


def slice_milli(numerator: int, denominator: int) -> int:
    """Milli-GPUs of a fractional slice, rounded down so that ``denominator`` slices fit one GPU.

    ``slice_milli(1, 7) == 142`` (seven fit in 994), ``slice_milli(3, 7) == 428``.
    """
    if denominator <= 0 or numerator <= 0 or numerator > denominator:
        raise InvalidValueError("slice", f"expected 0 < {numerator}/{denominator} <= 1")
    return int(Fraction(numerator, denominator) * GPU_MILLI)


def check_model(where: str, model: str) -> str:
    if not isinstance(model, str) or not _MODEL_RE.match(model):
        raise InvalidValueError(
            where, f"GPU model {model!r} must be lower-case letters, digits, '-' or '_'"
        )
    return model


def check_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidValueError(
            where,
            f"name {name!r} must be 1-128 characters of letters, digits and '_.:/-',"
            " starting with a letter or digit",
        )
    return name


def to_units(flavor: str, amount: float) -> int:
    """Convert a user-facing amount (GPUs, cores, MiB) of ``flavor`` to kumo's integer units."""
    if is_gpu_flavor(flavor):
        return round(amount * GPU_MILLI)
    if flavor == CPU:
        return round(amount * 1000)
    return round(amount)


def format_amount(flavor: str, units: int) -> str:
    """Render an integer amount of ``flavor`` for people: ``64``, ``0.142``, ``12.5``."""
    if is_gpu_flavor(flavor) or flavor == CPU:
        whole, rest = divmod(units, 1000)
        if rest == 0:
            return str(whole)
        return f"{units / 1000:.3f}".rstrip("0").rstrip(".")
    return str(units)


def format_duration(seconds: float) -> str:
    """``5400 -> '1h 30m'``, ``42 -> '42s'``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes = s // 60
    parts = []
    if days:
        parts.append(f"{days}d")
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    return " ".join(parts) or "0s"
