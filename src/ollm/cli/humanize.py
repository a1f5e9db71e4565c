"""Sizes, ages and durations written for people, as ``ollama`` writes them."""

from __future__ import annotations

from datetime import UTC, datetime

_FOREVER_YEARS = 20  # an expiry this far ahead means "keep loaded forever"


def human_size(size: int | float | None) -> str:
    """Decimal units, like ollama: ``270 MB``, ``1.2 GB``."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (Go writes nanoseconds; Python wants at most micro)."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    date, dot, rest = text.partition(".")
    if dot:  # trim the fraction to six digits, keep the offset
        offset = rest.lstrip("0123456789")
        digits = rest[: len(rest) - len(offset)]
        text = f"{date}.{digits[:6]}{offset}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed if parsed.year > 1 else None  # Go's zero time means "unset"


def _span(seconds: float) -> str:
    """``3 minutes``, ``About an hour``, ``2 weeks``."""
    seconds = abs(seconds)
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        n = int(seconds)
        return f"{n} second" if n == 1 else f"{n} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 2:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    days = hours / 24
    for limit, divisor, unit in ((14, 1, "days"), (60, 7, "weeks"), (730, 30, "months")):
        if days < limit:
            return f"{int(days / divisor)} {unit}"
    return f"{int(days / 365)} years"


def human_ago(value: str | None, now: datetime | None = None) -> str:
    """``2 weeks ago`` for a past timestamp."""
    moment = parse_time(value)
    if moment is None:
        return ""
    now = now or datetime.now(UTC)
    return f"{_span((now - moment).total_seconds())} ago"


def human_until(value: str | None, now: datetime | None = None) -> str:
    """When a loaded model expires: ``4 minutes from now``, ``Forever``, ``Stopping...``."""
    moment = parse_time(value)
    if moment is None:
        return "Never"
    now = now or datetime.now(UTC)
    delta = (moment - now).total_seconds()
    if delta <= 0:
        return "Stopping..."
    if delta > _FOREVER_YEARS * 365 * 86400:
        return "Forever"
    return f"{_span(delta)} from now"


def human_duration(nanoseconds: int | float | None) -> str:
    """A duration reported in nanoseconds: ``1.52s``, ``230.4ms``."""
    if not nanoseconds:
        return "0s"
    seconds = nanoseconds / 1e9
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m{rest:.2f}s"
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds * 1e6:.1f}µs"
