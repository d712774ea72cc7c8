"""Manifests in files, directories or stdin: read as a stream of objects, and rewrite their images offline.

Reading streams: one YAML document at a time, and one item at a time from the ``items`` of a List (so a multi-GB
``helm template`` output or ``kubectl get -o json|yaml`` dump never sits in memory whole). JSON is read as the YAML
it is, its surrogate-pair escapes made YAML's. Rewriting replaces the text of each rewritten image scalar and nothing
else: comments, key order, quoting, indentation and line endings stay byte for byte. A result is written only whole
(temporary file, then rename).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import pickle
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TextIO

import yaml
from yaml._yaml import CParser
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import (
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from webhook.core.patch import decide_slots, has_pull_secrets, is_opted_out
from webhook.core.workloads import LIST_SUFFIX, PathPart, list_item_kind, workloads
from webhook.exceptions import WebhookError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from webhook.core.rules import Decision, Rules
    from webhook.core.workloads import Workload

BOM: Final = "\ufeff"
HELD_IN_MEMORY: Final = 1024 * 1024
"""Bytes of held List items (see :class:`_Held`) kept in memory before they spill to a temporary file."""
_SURROGATE_PAIR: Final = re.compile(r"(?<!\\)((?:\\\\)*)\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})")
r"""A JSON surrogate-pair escape (json.dumps writes ``\ud83d\ude00`` for an emoji), after an even run of backslashes.

libyaml refuses surrogate escapes; the same character as YAML's ``\U0001f600`` is two characters shorter."""
_PAIR_SHRINKS: Final = 2
_PAIR_LENGTH: Final = 12
_PROPERTIES: Final = re.compile(r"(?:(?:&\S+|!<[^>]*>|!\S*)\s+)+")
"""An anchor and/or a tag before a scalar's value (``&img ``, ``!!str ``): the value text follows them."""

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
    node: Node | None
    """The composed YAML node, with the position of every scalar (for rewriting in place); positions are those of
    the text as read, after a JSON text's surrogate-pair escapes are shortened (see :func:`unpair`). ``None`` for a
    List item held until the List's ``kind`` while streaming (see :class:`_Held`): there only its data is kept."""
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
    loader = _Loader(unpair(stream)[0] if isinstance(stream, str) else _Unpaired(stream))
    try:
        yield from _documents(loader, source, keep_nodes=isinstance(stream, str))
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


def looks_like_json(text: str) -> bool:
    """Whether a text's first non-blank character (after a BOM) opens a JSON object or array."""
    return text.lstrip(" \t\r\n" + BOM)[:1] in {"{", "["}


def unpair(text: str) -> tuple[str, list[int]]:
    r"""A JSON text with its surrogate-pair escapes as YAML's ``\U`` escapes, and where each one ends in the result.

    The text is returned as it is unless it looks like JSON (:func:`looks_like_json`): in YAML a backslash may be
    plain text. Each escape shortens the text by two characters: see :func:`_original_index`.
    """
    if "\\u" not in text or not looks_like_json(text):
        return text, []
    ends: list[int] = []
    pieces: list[str] = []
    position = 0
    for match in _SURROGATE_PAIR.finditer(text):
        pieces.extend((text[position : match.start()], _pair(match)))
        position = match.end()
        ends.append(position - _PAIR_SHRINKS * (len(ends) + 1))
    pieces.append(text[position:])
    return "".join(pieces), ends


def _original_index(ends: list[int], index: int) -> int:
    """An index in :func:`unpair`'s result -> the same place in the text it was given (outside the escapes)."""
    return index + _PAIR_SHRINKS * bisect.bisect_right(ends, index)


def _pair(match: re.Match[str]) -> str:
    high, low = int(match[2], 16), int(match[3], 16)
    return f"{match[1]}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"


class _Unpaired:
    """A text stream as libyaml reads it, with a JSON text's surrogate-pair escapes made YAML's (see :func:`unpair`).

    Streamed: each read converts what it can and keeps back the few characters an escape may still need.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""
        self._json: bool | None = None
        self._end = False

    def read(self, size: int = -1, /) -> str:
        """About ``size`` characters ("" at the end), converted."""
        while True:
            if self._end:
                text, self._pending = self._pending, ""
                return _SURROGATE_PAIR.sub(_pair, text) if self._json else text
            chunk = self._stream.read(size)
            self._end = not chunk
            self._pending += chunk
            if self._json is None:
                if not self._end and not self._pending.lstrip(" \t\r\n" + BOM):
                    continue  # only blanks so far: not known yet
                self._json = looks_like_json(self._pending)
            if not self._json:
                text, self._pending = self._pending, ""
                return text
            if not self._end and (text := self._convert()):
                return text

    def _convert(self) -> str:
        """Convert the pending text up to a point no escape spans; keep the rest for the next read.

        The rest starts right after a character that is not a backslash, so the next read sees every run of
        backslashes whole (a run's parity says whether its last backslash escapes).
        """
        text = self._pending
        cut = len(text) - (_PAIR_LENGTH - 1)  # an escape starting before this point is whole in the text
        while cut > 0 and text[cut - 1] == "\\":
            cut -= 1
        pieces: list[str] = []
        position = 0
        for match in _SURROGATE_PAIR.finditer(text):
            if match.start() >= cut:
                break
            pieces.extend((text[position : match.start()], _pair(match)))
            position = match.end()
        end = max(cut, position)
        pieces.append(text[position:end])
        self._pending = text[end:]
        return "".join(pieces)


class _Loader(CParser, Composer, SafeConstructor, Resolver):
    """libyaml's parser under PyYAML's composer, so a document can be composed one List item at a time."""

    def __init__(self, stream: str | _Unpaired) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def _documents(loader: _Loader, source: str, *, keep_nodes: bool) -> Iterator[Manifest]:
    loader.get_event()  # StreamStartEvent
    while not loader.check_event(StreamEndEvent):
        event = loader.get_event()
        if not isinstance(event, DocumentStartEvent):  # pragma: no cover - libyaml emits documents in a stream
            raise ManifestError(f"{source}: unexpected YAML event {event}")
        if loader.check_event(MappingStartEvent):
            with _Held(source, keep_nodes=keep_nodes) as held:
                yield from _mapping_document(loader, source, held)
        else:
            node = _compose(loader)
            yield _manifest(loader, source, node)
        loader.get_event()  # DocumentEndEvent
        loader.anchors = {}


def _mapping_document(loader: _Loader, source: str, held: _Held) -> Iterator[Manifest]:
    """A top-level mapping, composed pair by pair: the items of a List's ``items`` are yielded one by one.

    Only the ``items`` of a kind that ends in ``List`` are objects; in any other kind (a ConfigMap, a custom resource)
    they are data. ``items`` may come before ``kind`` (``kubectl get -o yaml`` and ``jq -S`` sort keys): its items
    are then ``held`` until the mapping ends and its kind says what they are.
    """
    start = loader.get_event()
    assert isinstance(start, MappingStartEvent)  # noqa: S101 - checked by the caller
    pairs: list[tuple[Node, Node]] = []
    kind: str | None = None
    while not loader.check_event(MappingEndEvent):
        key = _compose(loader)
        is_items = isinstance(key, ScalarNode) and key.value == "items"
        if is_items and loader.check_event(SequenceStartEvent) and (kind is None or kind.endswith(LIST_SUFFIX)):
            items_start = loader.get_event()
            while not loader.check_event(SequenceEndEvent):
                item = _manifest(loader, source, _compose(loader), list_item_kind(kind))
                if kind is None:
                    held.add(item)
                else:
                    yield item
            items_end = loader.get_event()
            if kind is None:
                held.place(len(pairs), key, items_start, items_end)
            continue
        value = _compose(loader)
        if isinstance(key, ScalarNode) and key.value == "kind" and isinstance(value, ScalarNode):
            kind = value.value
        pairs.append((key, value))
    end = loader.get_event()
    is_list = kind is not None and kind.endswith(LIST_SUFFIX)
    if held and is_list:
        yield from (dataclasses.replace(item, kind=list_item_kind(kind)) for item in held)
    elif held and held.pair is not None:
        pairs.insert(held.index, held.pair)  # data after all: back where it was
    tag = start.tag if start.tag not in {None, "!"} else Resolver.DEFAULT_MAPPING_TAG
    # libyaml's marks have the fields of PyYAML's: the stubs just call them different classes
    start_mark: Any = start.start_mark
    end_mark: Any = end.end_mark if end is not None else None
    manifest = _manifest(loader, source, MappingNode(tag, pairs, start_mark, end_mark, flow_style=start.flow_style))
    if held and not is_list and held.pair is None and isinstance(manifest.data, dict):
        data = list(manifest.data.items())
        data.insert(held.index, ("items", [item.data for item in held]))
        manifest = dataclasses.replace(manifest, data=dict(data))
    yield manifest


class _Held:
    """The items of a top-level ``items`` read before the mapping's ``kind``, kept until the kind is known.

    With their nodes, in memory, when the text is in memory (``rewrite`` reads it whole and needs the nodes). When it
    streams, only their lines and data (all ``audit`` reads), pickled into a temporary file that stays in memory up
    to :data:`HELD_IN_MEMORY`: a ``kubectl get -o json|yaml`` List, whose ``items`` come before ``kind``, still
    streams in flat memory. Only this process reads back what it wrote.
    """

    def __init__(self, source: str, *, keep_nodes: bool) -> None:
        self._source = source
        self._kept: list[Manifest] | None = [] if keep_nodes else None
        self._file: tempfile.SpooledTemporaryFile[bytes] | None = None
        self._count = 0
        self.index = -1
        """How many pairs of the mapping came before the held list; -1 while nothing is held."""
        self.pair: tuple[Node, Node] | None = None
        """The held list as the key and value it was (only when nodes are kept)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()

    def __bool__(self) -> bool:
        return self.index >= 0

    def add(self, item: Manifest) -> None:
        """Hold one item."""
        if self._kept is not None:
            self._kept.append(item)
            return
        if self._file is None:
            self._file = tempfile.SpooledTemporaryFile(HELD_IN_MEMORY)  # noqa: SIM115 - closed by __exit__
        pickle.dump((item.line, item.data), self._file, pickle.HIGHEST_PROTOCOL)
        self._count += 1

    def place(self, index: int, key: Node, start: Any, end: Any) -> None:  # noqa: ANN401 - libyaml's events
        """Where the held list was in the mapping: after ``index`` pairs, under ``key``, between two events."""
        self.index = index
        if self._kept is not None:
            items = [item.node for item in self._kept if item.node is not None]
            value = SequenceNode(Resolver.DEFAULT_SEQUENCE_TAG, items, start.start_mark, end.end_mark, start.flow_style)
            self.pair = (key, value)

    def __iter__(self) -> Iterator[Manifest]:
        """The held items, in order."""
        if self._kept is not None:
            yield from self._kept
            return
        if self._file is None:
            return
        self._file.seek(0)
        for _ in range(self._count):
            line, data = pickle.load(self._file)  # noqa: S301 - written by this process a moment ago
            yield Manifest(source=self._source, line=line, data=data, node=None)


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
    """Where the replaced text is in the manifest's text (the value only: an anchor or tag before it stays)."""
    replacement: str
    decision: Decision
    aliases: tuple[int, ...] = ()
    """Lines where a pod takes the image through an alias (``image: *img``): it follows the anchor rewritten here."""


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


def rewrite_text(
    text: str, source: str, rules: Rules, pull_secrets: Callable[[Workload], bool] | None = None
) -> Rewrite:
    """Rewrite every image the rules rewrite in ``text``; all or nothing (raises :class:`ManifestError`).

    ``pull_secrets`` says whether a workload's pods will pull with ``imagePullSecrets`` (its ServiceAccount's
    included); by default the pod spec's own are read.
    """
    # libyaml skips a leading BOM and counts positions after it; JSON's surrogate-pair escapes are read shortened.
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom) :]
    read, ends = unpair(body)
    edits: dict[int, Edit] = {}
    expected: list[str] = []
    for manifest, images in _images(read, source, rules, pull_secrets):
        for node_path, decision in images:
            expected.append(decision.result)
            if not decision.rewrites:
                continue
            edit, alias = _edit(read, manifest, node_path, decision)
            first = edits.setdefault(edit.start, edit)
            if alias is not None:
                edits[edit.start] = dataclasses.replace(first, aliases=(*first.aliases, alias))
    if not edits:
        return Rewrite(source, text, text, ())
    placed: list[Edit] = []
    pieces: list[str] = [bom]
    position = 0
    for edit in (edits[start] for start in sorted(edits)):
        start, end = _original_index(ends, edit.start), _original_index(ends, edit.end)
        pieces.extend((body[position:start], edit.replacement))
        position = end
        placed.append(dataclasses.replace(edit, start=len(bom) + start, end=len(bom) + end))
    pieces.append(body[position:])
    rewritten = "".join(pieces)
    # The new text must read back as the same objects with the new images: a cheap proof nothing else moved, and
    # the catch for a scalar one pod rewrites and another (opted out, through an anchor) must keep.
    after = [
        decision.image
        for _, images in _images(rewritten[len(bom) :], source, rules, pull_secrets)
        for _, decision in images
    ]
    if after != expected:
        raise ManifestError(
            f"{source}: an image shared through an anchor or merge key (<<) is rewritten for one pod and must stay "
            "for another; file left as it is"
        )
    return Rewrite(source, text, rewritten, tuple(placed))


def _images(
    text: str, source: str, rules: Rules, pull_secrets: Callable[[Workload], bool] | None
) -> Iterator[tuple[Manifest, list[tuple[list[PathPart], Decision]]]]:
    """Each manifest with the path (below its node) and the decision of each of its images, in document order."""
    for manifest in read_manifests(text, source):
        images = []
        for workload in workloads(manifest.data, (), manifest.kind):
            slots = workload.image_slots()
            secrets = pull_secrets(workload) if pull_secrets is not None else has_pull_secrets(workload.spec)
            opted_out = is_opted_out(workload.pod_metadata)
            for item in decide_slots(slots, rules, opted_out=opted_out, pull_secrets=secrets):
                if item.slot.image is None:
                    continue
                below_spec = item.slot.pointer("").split("/")[1:]  # patch.py knows where an image sits
                images.append(([*workload.spec_path, *below_spec], item.decision))
        yield manifest, images


def _edit(text: str, manifest: Manifest, path: list[PathPart], decision: Decision) -> tuple[Edit, int | None]:
    """The edit of one image scalar, and the line of its key if the image is taken there through an alias."""
    key, node = _node_at(manifest.node, path)
    if not isinstance(node, ScalarNode) or node.value != decision.image:  # pragma: no cover - decoded from it
        raise ManifestError(f"{manifest.location}: cannot locate image {decision.image!r} in the text to rewrite it")
    start, end = node.start_mark.index, node.end_mark.index
    properties = _PROPERTIES.match(text, start, end)  # an anchor or a tag stays; the value after it changes
    if properties is not None:
        start = properties.end()
    written = text[start:end]
    line = node.start_mark.line + 1 + text.count("\n", node.start_mark.index, start)
    if not node.style and written == decision.image:  # libyaml says "" for plain, PyYAML None
        replacement = decision.result
    elif node.style == '"' and written.startswith('"') and written.endswith('"'):
        replacement = json.dumps(decision.result)
    elif node.style == "'" and written.startswith("'") and written.endswith("'"):
        replacement = "'" + decision.result.replace("'", "''") + "'"
    else:
        raise ManifestError(
            f"{manifest.source}:{line}: image {decision.image!r} is written over several lines or as a block scalar; "
            "write it as a plain or quoted scalar to rewrite it"
        )
    # Through an alias, the value was written (with its anchor) before the key that takes it.
    alias = key.start_mark.line + 1 if key is not None and node.start_mark.index < key.start_mark.index else None
    return Edit(line=line, start=start, end=end, replacement=replacement, decision=decision), alias


def _node_at(node: Node | None, path: list[PathPart]) -> tuple[Node | None, Node | None]:
    """The node at ``path`` and, if it is a mapping value, its key (for a repeated key the last, as decoded)."""
    key: Node | None = None
    for part in path:
        if isinstance(node, MappingNode):
            matches = [pair for pair in node.value if isinstance(pair[0], ScalarNode) and pair[0].value == str(part)]
            key, node = matches[-1] if matches else (None, None)
        elif isinstance(node, SequenceNode):
            index = int(part)
            key, node = None, node.value[index] if 0 <= index < len(node.value) else None
        else:  # pragma: no cover - the decoded object went through a mapping or list here, so the node did too
            return None, None
    return key, node


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
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, then a rename.

    A symbolic link stays one: its target is written (the temporary file beside the target).
    """
    if path.is_symlink():
        path = path.resolve()
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
