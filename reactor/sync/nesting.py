"""Nested groups: which configured groups a user's direct groups put them in, and by which path.

A configured group with ``nested = true`` puts in scope every user member of a group nested in it at
any depth; with ``nested = false`` only its direct members. :class:`Nesting` holds the edges (group →
the groups that are its direct members) of every tracked group: the configured ones and the groups
reached from a nested one. Walks are breadth first and visit each group once, so cycles end and a
diamond gives the shortest path. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from reactor.config import Settings

Path = tuple[str, ...]
"""Group ids from a configured group (first) down to the group a user is a direct member of (last)."""


@dataclass
class Nesting:
    """Group → nested group ids, for the tracked groups; ``delta_ids`` are the nested groups whose
    groups-delta links are kept (so that links of an older set can be removed)."""

    edges: dict[str, frozenset[str]] = field(default_factory=dict)
    delta_ids: frozenset[str] = frozenset()

    @classmethod
    def loads(cls, raw: str | None) -> Nesting:
        if not raw:
            return cls()
        data: Any = orjson.loads(raw)
        edges = {str(g): frozenset(str(c) for c in children) for g, children in dict(data.get("edges", {})).items()}
        return cls(edges, frozenset(str(g) for g in data.get("delta_ids", ())))

    def dumps(self) -> str:
        edges = {g: sorted(children) for g, children in sorted(self.edges.items()) if children}
        return orjson.dumps({"edges": edges, "delta_ids": sorted(self.delta_ids)}).decode()

    def copy(self) -> Nesting:
        return Nesting(dict(self.edges), self.delta_ids)

    def add(self, group_id: str, added: Iterable[str], removed: Iterable[str]) -> None:
        self.edges[group_id] = (self.edges.get(group_id, frozenset()) | frozenset(added)) - frozenset(removed)

    def replace(self, group_id: str, children: Iterable[str]) -> None:
        self.edges[group_id] = frozenset(children)

    def forget(self, group_id: str) -> None:
        """A deleted group: it has no members and is a member of nothing."""
        self.edges.pop(group_id, None)
        for parent, children in self.edges.items():
            if group_id in children:
                self.edges[parent] = children - {group_id}

    def reach(self, root: str) -> dict[str, Path]:
        """Every group nested in ``root`` at any depth (``root`` included) → its shortest path from ``root``."""
        paths: dict[str, Path] = {root: (root,)}
        queue = deque([root])
        while queue:
            group = queue.popleft()
            for child in sorted(self.edges.get(group, ())):
                if child not in paths:
                    paths[child] = (*paths[group], child)
                    queue.append(child)
        return paths

    def scope(self, settings: Settings) -> dict[str, dict[str, Path]]:
        """Tracked group → {configured group it puts its direct members in: the path}."""
        out: dict[str, dict[str, Path]] = {}
        for mapping in settings.groups:
            reached = self.reach(mapping.id) if mapping.nested else {mapping.id: (mapping.id,)}
            for group, path in reached.items():
                out.setdefault(group, {})[mapping.id] = path
        return out

    def tracked(self, settings: Settings) -> frozenset[str]:
        """The configured groups and every group nested in a configured group with ``nested = true``."""
        return frozenset(self.scope(settings))

    def prune(self, settings: Settings) -> None:
        """Forget the edges of groups no longer tracked."""
        keep = self.tracked(settings)
        self.edges = {g: children for g, children in self.edges.items() if g in keep}


def configured_paths(direct: Iterable[str], scope: Mapping[str, Mapping[str, Path]]) -> dict[str, Path]:
    """The configured groups a user in the ``direct`` groups is in scope of → the shortest path to
    the user (ties: the first path in group id order)."""
    out: dict[str, Path] = {}
    for group in sorted(direct):
        for configured, path in scope.get(group, {}).items():
            if configured not in out or len(path) < len(out[configured]):
                out[configured] = path
    return out


def depths(scope: Mapping[str, Mapping[str, Path]]) -> dict[str, tuple[int, int]]:
    """Configured group → (how many groups are nested in it, the deepest nesting level; 0: none)."""
    out: dict[str, tuple[int, int]] = {}
    for paths in scope.values():
        for configured, path in paths.items():
            count, deepest = out.get(configured, (0, 0))
            out[configured] = (count + (len(path) > 1), max(deepest, len(path) - 1))
    return out
