"""YAML loading with a bound on what aliases can make of a small file (issue 12 finding 15).

An 850-byte "billion laughs" file (nine lists of nine aliases to the list before) is 9**9 values
once its aliases are expanded. PyYAML builds it cheaply, as shared objects, but anything that
walks or prints the result (a validation error's repr of the value) expands it: 54 s and 3.9 GB
before a MemoryError, once.

So before anything is built, one streaming pass over the parser's events adds up how big the
document is *with every alias expanded* (an alias counts as everything its anchor holds), and
refuses it past :data:`MAX_VALUES` values or :data:`MAX_TEXT` characters of text. The pass keeps
only a stack as deep as the nesting and one number per anchor, so the bomb is refused in
milliseconds. An alias to a collection that is still open (``&a [*a]``, a document that contains
itself) is refused too. libyaml (``CSafeLoader``) parses when it is installed: ten times faster
than the pure-Python loader, and it refuses nesting deeper than 1,000 levels itself.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_TEXT", "MAX_VALUES", "YamlLimitError", "load_bounded"]

#: Values (scalars, lists, mappings) a document may hold with its aliases expanded. 25,000
#: requests (intake.MAX_REQUESTS) with a dozen fields, tags and images each are ~1.25 million.
MAX_VALUES = 2_000_000
#: Characters of text (all scalars) with aliases expanded: as much as a 64 MiB file could hold.
MAX_TEXT = 64 * 1024 * 1024

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (-1, -1)  # the size of an anchor whose collection is still being read


class YamlLimitError(ValueError):
    """The document is too big once expanded, or refers to itself; says which, never repeats it."""


def load_bounded(text: str, *, max_values: int = MAX_VALUES, max_text: int = MAX_TEXT) -> Any:
    """``yaml.safe_load(text)``, refused with :class:`YamlLimitError` past the limits."""
    check_size(text, max_values=max_values, max_text=max_text)
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_size(text: str, *, max_values: int = MAX_VALUES, max_text: int = MAX_TEXT) -> None:
    """Raise :class:`YamlLimitError` when ``text``'s expanded size passes a limit.

    A YAML syntax error is left for the real load to report (with its line), so this pass stops
    quietly at the first event it cannot parse.
    """
    values = chars = aliases = 0
    # One entry per open collection: [anchor, values, chars] of what it holds so far.
    open_: list[list[Any]] = []
    # anchor -> the expanded (values, chars) of its latest definition; _OPEN while it is open.
    sizes: dict[str, tuple[int, int]] = {}
    loader = _Loader(text)
    try:
        while True:
            try:
                event = loader.get_event()
            except yaml.YAMLError:
                return
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                open_.append([event.anchor, 1, 0])
                if event.anchor:
                    sizes[event.anchor] = _OPEN
                size = (1, 0)  # the collection itself; what it holds is counted as it arrives
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, held_values, held_chars = open_.pop()
                if anchor:
                    sizes[anchor] = (held_values, held_chars)
                if open_:
                    open_[-1][1] += held_values
                    open_[-1][2] += held_chars
                continue  # already in the running totals
            elif isinstance(event, yaml.ScalarEvent):
                size = (1, len(event.value))
                if event.anchor:
                    sizes[event.anchor] = size
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                size = sizes.get(event.anchor or "", (0, 0))  # undefined: the load reports it
                if size is _OPEN:
                    raise YamlLimitError(
                        f"the alias *{_name(event.anchor)} refers to itself (its anchor is "
                        "still open): the document would contain itself"
                    )
            else:
                continue
            if open_ and not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                open_[-1][1] += size[0]
                open_[-1][2] += size[1]
            values += size[0]
            chars += size[1]
            if values > max_values or chars > max_text:
                raise YamlLimitError(_too_big(values > max_values, aliases, max_values, max_text))
    finally:
        loader.dispose()


def _too_big(by_values: bool, aliases: int, max_values: int, max_text: int) -> str:
    what = f"{max_values:,} values" if by_values else f"{max_text:,} characters of text"
    if aliases:
        return (
            f"its aliases expand it to more than {what} (an alias counts as everything its "
            "anchor holds): write the requests out, or use fewer aliases"
        )
    return f"it holds more than {what}: split it, or use JSONL for big batches"


def _name(anchor: str | None) -> str:
    return (anchor or "")[:40]
