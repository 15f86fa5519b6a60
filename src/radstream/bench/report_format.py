"""Numbers as the HTML report shows them: units, significant digits, and "not measured".

A value that was not measured (None, or not finite) is shown as :data:`NOT_MEASURED`,
never as 0, so a gap in a run cannot pass for a result.
"""

from __future__ import annotations

import math

from radstream.bench.report import QUEUE_WAIT

NOT_MEASURED = "not measured"
NOT_SET = "not set"  # a manifest entry that is empty (an option not given), not a gap


def finite(v: float | None) -> float | None:
    """``v`` when it is a finite number, else None (NaN and infinities were not measured)."""
    return v if v is not None and math.isfinite(v) else None


def fmt_ms(v: float | None) -> str:
    """A duration in ms, with fewer decimals as it grows."""
    v = finite(v)
    if v is None:
        return NOT_MEASURED
    if abs(v) >= 100:
        return f"{v:,.0f} ms"
    if abs(v) >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def fmt_num(v: float | None) -> str:
    """A plain number: integers with thousands separators, others to 3 significant digits."""
    v = finite(v)
    if v is None:
        return NOT_MEASURED
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.1f}"
    return f"{v:.3g}"


def fmt_int(v: int | None) -> str:
    """A count."""
    return NOT_MEASURED if v is None else f"{v:,}"


def fmt_pct(v: float | None) -> str:
    """A fraction as a percentage."""
    v = finite(v)
    if v is None:
        return NOT_MEASURED
    pct = v * 100
    return f"{pct:.0f} %" if pct == int(pct) else f"{pct:.2f} %".replace(".00 %", " %")


def fmt_rate(v: float | None) -> str:
    """Studies per minute."""
    v = finite(v)
    return NOT_MEASURED if v is None else f"{fmt_num(v)} studies/min"


def fmt_usd(v: float | None) -> str:
    """Dollars: cents above $1, three significant digits below."""
    v = finite(v)
    if v is None:
        return NOT_MEASURED
    if v == 0 or abs(v) >= 1:
        return f"${v:,.2f}"
    decimals = min(12, max(2, 2 - math.floor(math.log10(abs(v)))))  # 3 significant digits
    return f"${v:.{decimals}f}"


def fmt_named(name: str, v: float | None) -> str:
    """A value formatted by what its name says it is (``p95_ms``, ``success_rate`` …)."""
    lower = name.lower()
    if lower.endswith("_ms"):
        return fmt_ms(v)
    if lower.endswith("_usd"):
        return fmt_usd(v)
    if "per_min" in lower:
        return fmt_rate(v)
    if lower.endswith(("_rate", "efficiency", "_ratio")) and v is not None and 0 <= v <= 1:
        return fmt_pct(v)
    return fmt_num(v)


def fmt_yes_no(v: bool | None) -> str:
    """``yes``, ``NO`` (shouted: it is the case to notice) or not measured."""
    return NOT_MEASURED if v is None else ("yes" if v else "NO")


def stage_label(name: str) -> str:
    """How a stage name reads on the page (``queue_wait`` is not a stage, so it is spelt out)."""
    return "queue wait" if name == QUEUE_WAIT else name


def tex_safe(text: str) -> str:
    """Matplotlib reads ``$…$`` as maths; user text must stay literal."""
    return text.replace("$", r"\$")


def attr(text: str) -> str:
    """``text`` escaped for a double-quoted HTML attribute."""
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
