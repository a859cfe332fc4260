"""Money helpers: integer minor units per ISO 4217 exponent.

Amounts are never floats in storage. Parsing returns ``Decimal`` and converts with
banker's rounding to the currency's minor unit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217 minor-unit exponents for currencies the product is likely to meet; anything else is 2.
_EXPONENTS: dict[str, int] = {
    "XAF": 0,
    "XOF": 0,
    "JPY": 0,
    "KRW": 0,
    "UGX": 0,
    "RWF": 0,
    "GNF": 0,
    "KMF": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "PYG": 0,
    "BIF": 0,
    "DJF": 0,
    "XPF": 0,
    "VUV": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
    "LYD": 3,
    "IQD": 3,
}


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount to integer minor units (half-even rounding)."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    scaled = value.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> float:
    """Major units as float, for features and display."""
    return float(amount_minor) / float(10 ** exponent(currency))


def to_major_decimal(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-exponent(currency))


def format_money(amount_minor: int, currency: str) -> str:
    exp = exponent(currency)
    return f"{to_major_decimal(amount_minor, currency):,.{exp}f} {currency}"
