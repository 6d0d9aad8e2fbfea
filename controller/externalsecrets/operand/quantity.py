"""Resource quantities in the API server's canonical form (apimachinery ``resource.Quantity``).

The API server stores ``1000m`` as ``1``, ``0.5`` as ``500m``, ``1024Mi`` as ``1Gi`` and the integer ``2`` as the
string ``"2"``. The reconciler compares the quantities it sets with the stored ones, so it must send them already
canonical, or every reconcile would see a difference and write again. A string that is not a quantity is
returned unchanged: the API server rejects it and the user sees its message.
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, InvalidOperation, localcontext
from typing import Final

_PATTERN: Final = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_DECIMAL_SUFFIXES: Final = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_SI_BY_EXPONENT: Final = {exp: suffix for suffix, exp in _DECIMAL_SUFFIXES.items()}
_NANO: Final = Decimal("1e-9")


def _parse(text: str) -> tuple[Decimal, str] | None:
    """The value and format ("BinarySI", "DecimalSI" or "DecimalExponent") of a quantity, None if it is not one."""
    m = _PATTERN.match(text.strip())
    if m is None:
        return None
    number, suffix = m.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    if suffix in _BINARY_SUFFIXES:
        return value * (Decimal(1024) ** _BINARY_SUFFIXES[suffix]), "BinarySI"
    if suffix in _DECIMAL_SUFFIXES:
        return value.scaleb(_DECIMAL_SUFFIXES[suffix]), "DecimalSI"
    if re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        return value.scaleb(int(suffix[1:])), "DecimalExponent"
    return None


def _decimal_form(value: Decimal, fmt: str) -> str:
    """mantissa x 10^exponent with an integer mantissa and the largest exponent that is a multiple of 3."""
    mantissa = int(value.scaleb(9))
    exponent = -9
    while mantissa % 1000 == 0 and exponent < 18:
        mantissa //= 1000
        exponent += 3
    if fmt == "DecimalExponent":
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_SI_BY_EXPONENT[exponent]}"


def _binary_form(value: int) -> str:
    mantissa, exponent = value, 0
    while mantissa % 1024 == 0 and exponent < len(_BINARY_SUFFIXES):
        mantissa //= 1024
        exponent += 1
    suffix = next((s for s, e in _BINARY_SUFFIXES.items() if e == exponent), "")
    return f"{mantissa}{suffix}"


def canonical_quantity(quantity: int | str) -> str:
    """The form the API server stores ``quantity`` in (see the module docstring)."""
    with localcontext() as ctx:
        ctx.prec = 80  # exact for every quantity the API server accepts (it caps them at 2^63 x 10^-9 precision)
        parsed = _parse(str(quantity))
        if parsed is None:
            return str(quantity)
        value, fmt = parsed
        try:
            value = value.quantize(_NANO, rounding=ROUND_UP)  # sub-nano precision rounds away from zero, as upstream
        except InvalidOperation:
            return str(quantity)
        if value == 0:
            return "0"
        if fmt == "BinarySI":
            if -1024 < value < 1024 or value != value.to_integral_value():
                fmt = "DecimalSI"  # small or fractional binary amounts are shown in SI to stay exact
            else:
                return _binary_form(int(value))
        return _decimal_form(value, fmt)
