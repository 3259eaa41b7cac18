"""A YAML file read with the line of every key and item, so an error can name where it is.

PyYAML's `compose` keeps each node's position (its start mark); `safe_load`
forgets it. So the file is composed once, its value built from the nodes,
and the line of each path (("hyper_tuning", "parameter_specs", 2, "min_value"))
kept beside it. Duplicate keys, which safe_load silently resolves to the
last, are refused here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.errors import UsageError

KeyPath = tuple[str | int, ...]


class ProjectFileError(UsageError):
    """A project file that cannot be used; the message names the file, the line and the key."""


def dotted(path: KeyPath) -> str:
    """("hyper_tuning", "parameter_specs", 2, "name") -> hyper_tuning.parameter_specs[2].name"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Located:
    """A parsed YAML document and the line (1-based) of each of its keys and items."""

    def __init__(self, path: Path, value: Any, lines: dict[KeyPath, int]):
        self.path, self.value, self.lines = path, value, lines

    def line(self, path: KeyPath) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: KeyPath, why: str) -> ProjectFileError:
        where = f"{self.path.name}:{self.line(path)}"
        return ProjectFileError(f"{where}: {dotted(path)}: {why}" if path else f"{where}: {why}")


def read(path: Path, text: str) -> Located:
    """Parse `text` (the contents of `path`); ProjectFileError for YAML that is not valid."""
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(path, {}, {})
        lines: dict[KeyPath, int] = {}
        value = _build(loader, node, (), lines, path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ProjectFileError(f"{path.name}:{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ProjectFileError(f"{path.name}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    return Located(path, value, lines)


def _build(loader: Any, node: Any, where: KeyPath, lines: dict[KeyPath, int], path: Path) -> Any:
    import yaml

    lines.setdefault(where, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<) as safe_load resolves them
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ProjectFileError(f"{path.name}:{key_node.start_mark.line + 1}: "
                                       f"{dotted(where) + ': ' if where else ''}key {key!r} is not text")
            if key in result:
                raise ProjectFileError(f"{path.name}:{key_node.start_mark.line + 1}: {dotted(where + (key,))}: "
                                       "given twice")
            lines[where + (key,)] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, where + (key,), lines, path)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, where + (i,), lines, path) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
