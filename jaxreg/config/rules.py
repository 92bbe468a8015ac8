"""Rules for one config value: each checks a value and says in words what it allows.

A rule's `check(key, value)` raises ConfigError with one line naming the key, the value
and what is allowed; `allowed()` is the same rule in words, for the config reference
(docs/config.md) and `python -m jaxreg.config`. Rules that relate several keys are in
jaxreg/config/schema.py (`CROSS_KEY_RULES`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
  """A bad config key or value; the message is one line for the user."""


def near_miss(word: str, candidates) -> str:
  """' (did you mean X?)' for the closest candidate, or ''."""
  close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1,
                                    cutoff=0.6)
  return f" (did you mean {close[0]}?)" if close else ""


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(x: float) -> str:
  return f"{x:g}"


class Rule:
  """One value's rule (subclasses below)."""

  def check(self, key: str, value: Any) -> None:
    raise NotImplementedError

  def allowed(self) -> str:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class OneOf(Rule):
  """A value from `choices`; `hints` add a sentence for a known wrong value."""
  choices: tuple
  hints: Mapping[Any, str] = dataclasses.field(default_factory=dict)

  def check(self, key, value):
    if value in self.choices and type(value) is type(self.choices[0]):
      return
    message = f"{key}={value!r} is not one of: {', '.join(map(str, self.choices))}"
    if value in self.hints:
      message += f"; {self.hints[value]}"
    elif isinstance(value, str):
      message += near_miss(value, self.choices)
    raise ConfigError(message)

  def allowed(self):
    return "one of: " + ", ".join(f"`{c}`" for c in self.choices)


@dataclasses.dataclass(frozen=True)
class Int(Rule):
  """An integer >= `min` (None: any integer)."""
  min: int | None = 0

  def check(self, key, value):
    if not _is_number(value) or not isinstance(value, int) or (
        self.min is not None and value < self.min):
      raise ConfigError(f"{key}={value!r} must be an {self.allowed()}")

  def allowed(self):
    return "integer" if self.min is None else f"integer >= {self.min}"


@dataclasses.dataclass(frozen=True)
class Num(Rule):
  """A number in an interval: [lo, hi], ends open as asked; hi=None: no upper end."""
  lo: float = 0.0
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  noun: str = ""      # 'a rate', 'a probability': said before the interval
  note: str = ""      # said after it, in parentheses: what an end means

  def check(self, key, value):
    ok = _is_number(value) and (value > self.lo if self.lo_open else value >= self.lo)
    if ok and self.hi is not None:
      ok = value < self.hi if self.hi_open else value <= self.hi
    if not ok:
      raise ConfigError(f"{key}={value!r} must be {self.allowed()}")

  def allowed(self):
    if self.hi is None:
      words = f"{self.noun or 'a number'} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
    else:
      words = (f"{self.noun + ' ' if self.noun else ''}in {'(' if self.lo_open else '['}"
               f"{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}")
    return words + (f" ({self.note})" if self.note else "")


RATE = Num(0.0, 1.0, hi_open=True, noun="a rate")


@dataclasses.dataclass(frozen=True)
class Bool(Rule):
  def check(self, key, value):
    if not isinstance(value, bool):
      raise ConfigError(f"{key}={value!r} must be true or false")

  def allowed(self):
    return "true or false"


@dataclasses.dataclass(frozen=True)
class Str(Rule):
  """A string; `nonempty`: not blank, `empty_means`: what '' stands for."""
  nonempty: bool = False
  empty_means: str = ""
  what: str = ""      # for an empty value: what to give instead

  def check(self, key, value):
    if not isinstance(value, str):
      default = " ('' = default)" if self.empty_means else ""
      raise ConfigError(f"{key}={value!r} must be a string{default}")
    if self.nonempty and not value.strip():
      raise ConfigError(f"{key} is empty: {self.what or 'give a value'}")

  def allowed(self):
    if self.nonempty:
      return "a non-empty string"
    return f"string (`''`: {self.empty_means})" if self.empty_means else "string"


@dataclasses.dataclass(frozen=True)
class Regex(Rule):
  """A Python regular expression (re.search on parameter paths)."""
  empty_means: str = ""

  def check(self, key, value):
    if not isinstance(value, str):
      raise ConfigError(f"{key}={value!r} must be a regex string")
    try:
      re.compile(value)
    except re.error as e:
      raise ConfigError(f"{key}={value!r} is not a valid regex ({e})") from None

  def allowed(self):
    return "a regex" + (f" (`''`: {self.empty_means})" if self.empty_means else "")


@dataclasses.dataclass(frozen=True)
class Custom(Rule):
  """A rule too particular for the classes above: `fn(key, value)` raises."""
  fn: Callable[[str, Any], None]
  words: str

  def check(self, key, value):
    self.fn(key, value)

  def allowed(self):
    return self.words


def finite(key: str, value: Any) -> None:
  """No number may be NaN or inf: `nan < 0` is False, so ranges alone let NaN through."""
  if isinstance(value, float) and not math.isfinite(value):
    raise ConfigError(f"{key}={value!r} must be a finite number")
