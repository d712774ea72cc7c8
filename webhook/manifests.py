"""Manifests in files, directories or stdin: read as a stream of objects, and rewrite their images offline.

Reading streams: one YAML document at a time, and one item at a time from the ``items`` of a List (so a multi-GB
``helm template`` output or ``kubectl get -o json|yaml`` dump never sits in memory whole). JSON is read as the YAML
it is. Rewriting replaces the text of each rewritten image scalar and nothing else: comments, key order, quoting,
indentation and line endings stay byte for byte. A result is written only whole (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import yaml
from yaml._yaml import CParser
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import DocumentStartEvent, MappingEndEvent, MappingStartEvent, SequenceStartEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from webhook.exceptions import WebhookError
from webhook.patch import decide_slots, image_slots, is_opted_out
from webhook.workloads import PathPart, list_item_kind, workloads

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from webhook.rules import Decision, Rules

STDIN: Final = "-"
STDIN_NAME: Final = "<stdin>"
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")
"""Files a directory contributes; a file named on the command line is read whatever its name."""


class ManifestError(WebhookError):
    """A manifest that cannot be read or rewritten; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object as read: a whole document, or one item of a List document."""

    source: str
    line: int
    """1-based line where the object starts."""
    data: object
    node: Node
    """The composed YAML node, with the position of every scalar (for rewriting in place)."""
    kind: str | None = None
    """The kind assumed when the object has none: ``Pod`` for the items of a ``PodList``."""

    @property
    def location(self) -> str:
        """``file:line``, as errors and reports name it."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One input: a file, or stdin (``path`` is ``None``)."""

    name: str
    """As errors and reports name it: the path as given or found, ``<stdin>``."""
    path: Path | None
    relative: Path | None
    """Below the directory it was found in; ``None`` for a file named on the command line, or stdin."""


def manifest_files(paths: Sequence[str]) -> list[ManifestFile]:
    """The inputs ``paths`` name: files as named, directories walked in name order, ``-`` for stdin."""
    found: list[ManifestFile] = []
    for name in paths:
        if name == STDIN:
            found.append(ManifestFile(STDIN_NAME, None, None))
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(
                item for item in path.rglob("*") if item.is_file() and item.suffix.lower() in MANIFEST_SUFFIXES
            )
            if not files:
                raise ManifestError(f"{name}: no {', '.join(MANIFEST_SUFFIXES)} files in this directory")
            found.extend(ManifestFile(str(item), item, item.relative_to(path)) for item in files)
        elif path.is_file():
            found.append(ManifestFile(name, path, None))
        else:
            raise ManifestError(f"{name}: no such file or directory")
    return found


def read_manifests(stream: TextIO | str, source: str) -> Iterator[Manifest]:
    """Every object of a YAML (or JSON) stream, one document or List item at a time.

    Raises :class:`ManifestError` naming ``source`` and the line of the first malformed document.
    """
    loader = _Loader(stream)
    try:
        yield from _documents(loader, source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise ManifestError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{source}: not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    finally:
        loader.dispose()


def open_manifests(file: ManifestFile) -> Iterator[Manifest]:
    """The objects of one input, streamed."""
    if file.path is None:
        yield from read_manifests(sys.stdin, file.name)
        return
    try:
        with file.path.open(encoding="utf-8") as stream:
            yield from read_manifests(stream, file.name)
    except OSError as error:
        raise ManifestError(f"{file.name}: cannot read: {error.strerror}") from None


class _Loader(CParser, Composer, SafeConstructor, Resolver):
    """libyaml's parser under PyYAML's composer, so a document can be composed one List item at a time."""

    def __init__(self, stream: TextIO | str) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def _documents(loader: _Loader, source: str) -> Iterator[Manifest]:
    loader.get_event()  # StreamStartEvent
    while not loader.check_event(StreamEndEvent):
        event = loader.get_event()
        if not isinstance(event, DocumentStartEvent):  # pragma: no cover - libyaml emits documents in a stream
            raise ManifestError(f"{source}: unexpected YAML event {event}")
        if loader.check_event(MappingStartEvent):
            yield from _mapping_document(loader, source)
        else:
            node = _compose(loader)
            yield _manifest(loader, source, node)
        loader.get_event()  # DocumentEndEvent
        loader.anchors = {}


def _mapping_document(loader: _Loader, source: str) -> Iterator[Manifest]:
    """A top-level mapping, composed pair by pair: the items of a top-level ``items`` list are yielded one by one."""
    start = loader.get_event()
    assert isinstance(start, MappingStartEvent)  # noqa: S101 - checked by the caller
    pairs: list[tuple[Node, Node]] = []
    kind: str | None = None
    while not loader.check_event(MappingEndEvent):
        key = _compose(loader)
        if isinstance(key, ScalarNode) and key.value == "items" and loader.check_event(SequenceStartEvent):
            loader.get_event()
            while not loader.check_event(yaml.SequenceEndEvent):
                yield _manifest(loader, source, _compose(loader), list_item_kind(kind))
            loader.get_event()
            continue
        value = _compose(loader)
        if isinstance(key, ScalarNode) and key.value == "kind" and isinstance(value, ScalarNode):
            kind = value.value
        pairs.append((key, value))
    end = loader.get_event()
    tag = start.tag if start.tag not in {None, "!"} else Resolver.DEFAULT_MAPPING_TAG
    # libyaml's marks have the fields of PyYAML's: the stubs just call them different classes
    start_mark: Any = start.start_mark
    end_mark: Any = end.end_mark if end is not None else None
    node = MappingNode(tag, pairs, start_mark, end_mark, flow_style=start.flow_style)
    yield _manifest(loader, source, node)


def _compose(loader: _Loader) -> Node:
    node = loader.compose_node(None, 0)
    if node is None:  # pragma: no cover - only at the end of a stream, which the callers check first
        raise ManifestError("unexpected end of the YAML stream")
    return node


def _manifest(loader: _Loader, source: str, node: Node, kind: str | None = None) -> Manifest:
    line = node.start_mark.line + 1 if node.start_mark is not None else 1
    return Manifest(source=source, line=line, data=loader.construct_document(node), node=node, kind=kind)


@dataclass(frozen=True, slots=True)
class Edit:
    """One image rewritten in a manifest's text."""

    line: int
    start: int
    end: int
    replacement: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A manifest's text before and after: ``edits`` are the images that changed."""

    source: str
    original: str
    text: str
    edits: tuple[Edit, ...]

    @property
    def changed(self) -> bool:
        """Whether any image changed."""
        return bool(self.edits)


def rewrite_text(text: str, source: str, rules: Rules) -> Rewrite:
    """Rewrite every image the rules rewrite in ``text``; all or nothing (raises :class:`ManifestError`)."""
    edits: dict[int, Edit] = {}
    expected: list[str] = []
    for manifest, images in _images(text, source, rules):
        for node_path, decision in images:
            expected.append(decision.result)
            if not decision.rewrites:
                continue
            edit = _edit(text, manifest, node_path, decision)
            edits.setdefault(edit.start, edit)
    if not edits:
        return Rewrite(source, text, text, ())
    pieces: list[str] = []
    position = 0
    for start in sorted(edits):
        edit = edits[start]
        pieces.extend((text[position:start], edit.replacement))
        position = edit.end
    pieces.append(text[position:])
    rewritten = "".join(pieces)
    # The new text must read back as the same objects with the new images: a cheap proof nothing else moved, and
    # the catch for a scalar one pod rewrites and another (opted out, through an anchor) must keep.
    after = [decision.image for _, images in _images(rewritten, source, rules) for _, decision in images]
    if after != expected:
        raise ManifestError(
            f"{source}: an image shared through an anchor or merge key (<<) is rewritten for one pod and must stay "
            "for another; file left as it is"
        )
    return Rewrite(source, text, rewritten, tuple(edits[start] for start in sorted(edits)))


def _images(text: str, source: str, rules: Rules) -> Iterator[tuple[Manifest, list[tuple[list[PathPart], Decision]]]]:
    """Each manifest with the path (below its node) and the decision of each of its images, in document order."""
    for manifest in read_manifests(text, source):
        images = []
        for workload in workloads(manifest.data, (), manifest.kind):
            slots = image_slots(workload.spec)
            for item in decide_slots(slots, rules, opted_out=is_opted_out(workload.pod_metadata)):
                if item.slot.image is None:
                    continue
                below_spec = item.slot.pointer("").split("/")[1:]  # patch.py knows where an image sits
                images.append(([*workload.spec_path, *below_spec], item.decision))
        yield manifest, images


def _edit(text: str, manifest: Manifest, path: list[PathPart], decision: Decision) -> Edit:
    node = _node_at(manifest.node, path)
    if not isinstance(node, ScalarNode) or node.value != decision.image:  # pragma: no cover - decoded from it
        raise ManifestError(f"{manifest.location}: cannot locate image {decision.image!r} in the text to rewrite it")
    start, end = node.start_mark.index, node.end_mark.index
    written = text[start:end]
    line = node.start_mark.line + 1
    if not node.style and written == decision.image:  # libyaml says "" for plain, PyYAML None
        replacement = decision.result
    elif node.style == '"' and written.startswith('"') and written.endswith('"'):
        replacement = json.dumps(decision.result)
    elif node.style == "'" and written.startswith("'") and written.endswith("'"):
        replacement = "'" + decision.result.replace("'", "''") + "'"
    else:
        raise ManifestError(
            f"{manifest.source}:{line}: image {decision.image!r} is written with an anchor, a tag or over several "
            "lines; write it as a plain or quoted scalar to rewrite it"
        )
    return Edit(line=line, start=start, end=end, replacement=replacement, decision=decision)


def _node_at(node: Node | None, path: list[PathPart]) -> Node | None:
    """The node at ``path`` (keys as in the decoded object; for a repeated key the last one, as the decoder keeps)."""
    for part in path:
        if isinstance(node, MappingNode):
            matches = [value for key, value in node.value if isinstance(key, ScalarNode) and key.value == str(part)]
            node = matches[-1] if matches else None
        elif isinstance(node, SequenceNode):
            index = int(part)
            node = node.value[index] if 0 <= index < len(node.value) else None
        else:  # pragma: no cover - the decoded object went through a mapping or list here, so the node did too
            return None
    return node


def read_text(file: ManifestFile) -> str:
    """The whole text of one input, line endings kept."""
    try:
        if file.path is None:
            return sys.stdin.buffer.read().decode("utf-8")
        with file.path.open(encoding="utf-8", newline="") as stream:
            return stream.read()
    except OSError as error:
        raise ManifestError(f"{file.name}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"{file.name}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
