"""``file:line`` of a field inside a :class:`~edge_runtime.config.manifest.RawResource`.

The loader keeps non-Component documents as plain parsed YAML with only the document's mark.
To point a problem at the offending line, :class:`Marks` reads the file again, finds the
document that starts at that mark and walks the node tree. Reading is done once per file and
any failure (the file changed or vanished) falls back to the document's own mark. Keys are
matched case-insensitively, as the parsers that use it match them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edge_runtime.config.manifest import Mark, RawResource

__all__ = ["Marks"]

PathPart = str | int


class Marks:
    """Finds lines inside resources; one instance caches the files it has read."""

    def __init__(self) -> None:
        self._files: dict[str, dict[int, Node]] = {}

    def _documents(self, file: str) -> dict[int, Node]:
        docs = self._files.get(file)
        if docs is None:
            docs = {}
            try:
                text = Path(file).read_text(encoding="utf-8-sig")
                for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
                    if node is not None:
                        docs.setdefault(node.start_mark.line + 1, node)
            except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
                pass  # the document's own mark is used instead
            self._files[file] = docs
        return docs

    def at(self, raw: RawResource, *path: PathPart) -> Mark:
        """The line of the deepest node of ``path`` that exists (a mapping value's key line)."""
        node = self._documents(raw.mark.file).get(raw.mark.line)
        line = raw.mark.line
        for part in path:
            if node is None:
                break
            node, found = _child(node, part)
            if found is not None:
                line = found
        return Mark(raw.mark.file, line)


def _child(node: Node, part: PathPart) -> tuple[Node | None, int | None]:
    if isinstance(part, str) and isinstance(node, MappingNode):
        for k, v in reversed(node.value):  # the last of duplicate keys wins, as in the body
            if isinstance(k, ScalarNode) and str(k.value).lower() == part.lower():
                return v, k.start_mark.line + 1
    if isinstance(part, int) and isinstance(node, SequenceNode) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None, None
