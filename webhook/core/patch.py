"""Pod -> JSON patch: which images a pod has, what to do with each, and the ops that do it.

Pure. The ops only ``replace`` an image string that exists and ``add`` what may be missing (``add`` replaces an
existing object member too), never ``test`` or ``remove``: a patch that fails to apply makes the API server reject
the pod even with ``failurePolicy: Ignore``, so every op here applies to the object it was built from.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypedDict, TypeGuard

import orjson

from webhook.core.reasons import Reason
from webhook.core.rules import Decision, skip

if TYPE_CHECKING:
    from webhook.core.rules import Rules

ANNOTATION_PREFIX: Final = "ecr-ptc-webhook/"
ORIGINAL_IMAGES_ANNOTATION: Final = "ecr-ptc-webhook/original-images"
"""JSON map of container name (``volumes/<name>`` for image volumes) -> the image before the rewrite."""
RECORD_POINTER: Final = "/metadata/annotations/" + ORIGINAL_IMAGES_ANNOTATION.replace("~", "~0").replace("/", "~1")
"""Where the record is written when the pod already has annotations: the key escaped as RFC 6901 says (``~`` first,
then ``/``)."""
OPT_OUT_ANNOTATION: Final = "ecr-ptc-webhook/rewrite"
OPT_OUT_VALUE: Final = "disabled"
"""``ecr-ptc-webhook/rewrite: disabled`` on a pod leaves all its images alone."""

ContainerField = Literal["containers", "initContainers", "ephemeralContainers"]
ImageField = Literal["containers", "initContainers", "ephemeralContainers", "volumes"]
CONTAINER_FIELDS: Final[tuple[ContainerField, ...]] = ("initContainers", "containers", "ephemeralContainers")


class PatchOperation(TypedDict):
    """One RFC 6902 operation; only the two kinds this webhook ever emits."""

    op: Literal["add", "replace"]
    path: str
    value: Any


@dataclass(slots=True)  # not frozen: one is made per image per review, and frozen __init__ costs 3x
class ImageSlot:
    """Where an image sits in a pod spec: a container's ``image`` or an image volume's ``image.reference``."""

    field: ImageField
    index: int
    name: str
    image: str | None
    """The value as found; ``None`` when missing or not a string (never patched)."""

    @property
    def key(self) -> str:
        """Key in the original-images annotation: container names are DNS labels, so no ``/`` collides."""
        return f"volumes/{self.name}" if self.field == "volumes" else self.name

    def pointer(self, spec_path: str = "/spec") -> str:
        """JSON pointer to the image string, below the pod spec at ``spec_path``."""
        suffix = "image/reference" if self.field == "volumes" else "image"
        return f"{spec_path}/{self.field}/{self.index}/{suffix}"


class ImageDecision(NamedTuple):
    """One image of a pod and what the rules decided for it."""

    slot: ImageSlot
    decision: Decision


@dataclass(frozen=True)  # no slots: the summaries below are computed once per plan (plans are cached per template)
class PodPlan:
    """Every image decision of one pod, and the patch that applies the rewrites."""

    decisions: tuple[ImageDecision, ...]
    patch: tuple[PatchOperation, ...] = field(default=())

    @functools.cached_property
    def rewrites(self) -> tuple[ImageDecision, ...]:
        """The decisions that change an image."""
        return tuple(item for item in self.decisions if item.decision.rewrites)

    @functools.cached_property
    def counts(self) -> Mapping[tuple[str, str, str], int]:
        """How many decisions per (tier or ``""``, reason, action): what the decision metrics count."""
        decisions = (item.decision for item in self.decisions)
        return collections.Counter((decision.tier or "", decision.reason, decision.action) for decision in decisions)

    @functools.cached_property
    def records(self) -> tuple[Mapping[str, str | None], ...]:
        """One flat record per decision (container key, original, result, action, reason, tier): what is logged."""
        return tuple(
            {
                "container": item.slot.key,
                "original": item.decision.image,
                "result": item.decision.result,
                "action": item.decision.action,
                "reason": item.decision.reason,
                "tier": item.decision.tier,
            }
            for item in self.decisions
        )


SlotKey = tuple[ImageField, int, str, str | None]
"""An image slot as plain values: field, index, name, image (what :class:`ImageSlot` holds)."""
ALL_IMAGE_FIELDS: Final[tuple[ImageField, ...]] = (*CONTAINER_FIELDS, "volumes")


def image_slots(spec: object, fields: tuple[ImageField, ...] = ALL_IMAGE_FIELDS) -> Iterator[ImageSlot]:
    """Every image of a pod spec, tolerating any shape: what is not a list of objects is passed over."""
    for key in _slot_keys(spec, fields):
        yield ImageSlot(*key)


def _slot_keys(spec: object, fields: tuple[ImageField, ...]) -> list[SlotKey]:
    """The walk behind :func:`image_slots`, as tuples: cheap enough to build a cache key from on every review."""
    keys: list[SlotKey] = []
    if not is_json_object(spec):
        return keys
    for name in fields:
        items = spec.get(name)
        if not isinstance(items, list):
            continue
        volumes = name == "volumes"
        for index, item in enumerate(items):
            if not is_json_object(item):
                continue
            if volumes:
                source = item.get("image")
                if not is_json_object(source):
                    continue  # not an image volume
                image = source.get("reference")
            else:
                image = item.get("image")
            item_name = item.get("name")
            keys.append(
                (
                    name,
                    index,
                    item_name if isinstance(item_name, str) else "",
                    image if isinstance(image, str) else None,
                )
            )
    return keys


TemplateKey = tuple[tuple[SlotKey, ...], tuple[object, ...]]
"""A pod's image slots, pull-secret and annotation state: what :func:`plan_pod` reads (see :func:`pod_template_key`)."""


def pod_template_key(pod: Mapping[str, Any]) -> TemplateKey:
    """Everything :func:`plan_pod` (without ``ephemeral_only``) reads from ``pod``, as one hashable value.

    Two pods with equal keys get equal plans from the same rules: the same slots (field, index, name, image), the
    same pull-secret state (whether the spec has ``imagePullSecrets``) and the same annotation state (missing
    metadata, missing annotations, or the opt-out flag and the earlier record). Pods of one ReplicaSet, Job or
    DaemonSet differ in name and uid only, so they share a key.
    """
    spec = pod.get("spec")
    return tuple(_slot_keys(spec, ALL_IMAGE_FIELDS)), (has_pull_secrets(spec), *annotation_state(pod.get("metadata")))


def annotation_state(metadata: object) -> tuple[object, ...]:
    """What :func:`plan_pod` reads of a pod's metadata (a part of :func:`pod_template_key`).

    Whether the metadata and its annotations are there, the opt-out flag and an earlier original-images record.
    """
    if not is_json_object(metadata):
        return ("no-metadata",)
    return annotations_state(metadata.get("annotations"))


def annotations_state(annotations: object) -> tuple[object, ...]:
    """:func:`annotation_state` of metadata whose ``annotations`` are these."""
    if not is_json_object(annotations):
        return ("no-annotations",)
    record = annotations.get(ORIGINAL_IMAGES_ANNOTATION)
    return (
        "annotations",
        annotations.get(OPT_OUT_ANNOTATION) == OPT_OUT_VALUE,
        record if isinstance(record, str) else None,
    )


def has_pull_secrets(spec: object) -> bool:
    """Whether a pod spec pulls with ``imagePullSecrets``; ``imagePullSecrets: []`` counts as none, any entry counts.

    The ServiceAccount's secrets are in the spec by then: the API server copies them in before any webhook runs.
    """
    secrets = spec.get("imagePullSecrets") if is_json_object(spec) else None
    return isinstance(secrets, list) and len(secrets) > 0


def is_json_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, decoded JSON's ``dict`` and ``None`` answered first (an ABC check is slow)."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def is_opted_out(metadata: object) -> bool:
    """Whether pod metadata carries the opt-out annotation."""
    annotations = metadata.get("annotations") if is_json_object(metadata) else None
    return is_json_object(annotations) and annotations.get(OPT_OUT_ANNOTATION) == OPT_OUT_VALUE


def decide_slots(
    slots: Iterable[ImageSlot],
    rules: Rules,
    *,
    opted_out: bool = False,
    pull_secrets: bool = False,
    vetoes: Mapping[str, Reason] | None = None,
) -> tuple[ImageDecision, ...]:
    """Decide every slot of a pod; an opted-out pod's images are all skipped with ``pod-opted-out``.

    ``pull_secrets`` says the pod has ``imagePullSecrets`` (see :func:`has_pull_secrets`).

    ``vetoes`` maps an image string to the reason its rewrite must not happen (e.g. the target did not verify);
    the rules still name the tier, so the skip stays attributable.
    """
    decisions = []
    for slot in slots:
        image = slot.image if slot.image is not None else ""
        if slot.image is None:
            decision = skip(image, Reason.INVALID_REFERENCE)
        elif opted_out:
            decision = skip(image, Reason.POD_OPTED_OUT)
        else:
            decision = rules.decide(image, pull_secrets)
            if vetoes and decision.rewrites and image in vetoes:
                decision = skip(image, vetoes[image], decision.tier)
        decisions.append(ImageDecision(slot, decision))
    return tuple(decisions)


def plan_pod(
    pod: Mapping[str, Any],
    rules: Rules,
    *,
    ephemeral_only: Mapping[str, Any] | None = None,
    vetoes: Mapping[str, Reason] | None = None,
) -> PodPlan:
    """Plan the rewrite of a pod object.

    With ``ephemeral_only`` (the old pod of a ``pods/ephemeralcontainers`` update), only ephemeral containers the
    old pod did not have are considered, and no annotation is written: the API server keeps existing ephemeral
    containers immutable and drops metadata changes on that subresource.
    """
    spec = pod.get("spec")
    metadata = pod.get("metadata")
    if ephemeral_only is None:
        slots = image_slots(spec)
    else:
        existing = {slot.name for slot in image_slots(ephemeral_only.get("spec"), ("ephemeralContainers",))}
        slots = (slot for slot in image_slots(spec, ("ephemeralContainers",)) if slot.name not in existing)
    decisions = decide_slots(
        slots, rules, opted_out=is_opted_out(metadata), pull_secrets=has_pull_secrets(spec), vetoes=vetoes
    )
    rewrites = [item for item in decisions if item.decision.rewrites]
    if not rewrites:
        return PodPlan(decisions)
    ops: list[PatchOperation] = [
        {"op": "replace", "path": item.slot.pointer(), "value": item.decision.result} for item in rewrites
    ]
    if ephemeral_only is None:
        ops.extend(_annotation_ops(metadata, {item.slot.key: item.decision.image for item in rewrites}))
    return PodPlan(decisions, tuple(ops))


def _annotation_ops(metadata: object, originals: dict[str, str]) -> list[PatchOperation]:
    """Ops recording ``originals``, merged into any record an earlier invocation left.

    None when the record would push the pod's annotations over :data:`ANNOTATIONS_LIMIT`: the API server would
    reject the pod, and the record is only a record (the rewrites stand without it; the decision log says so).
    """
    annotations = metadata.get("annotations") if is_json_object(metadata) else None
    if is_json_object(annotations):
        originals = {**_load_originals(annotations.get(ORIGINAL_IMAGES_ANNOTATION)), **originals}
    else:
        annotations = None
    record = _dump(originals)
    if not record_fits(annotations, record):
        return []
    if annotations is not None:
        return [{"op": "add", "path": RECORD_POINTER, "value": record}]
    if is_json_object(metadata):
        return [{"op": "add", "path": "/metadata/annotations", "value": {ORIGINAL_IMAGES_ANNOTATION: record}}]
    return [{"op": "add", "path": "/metadata", "value": {"annotations": {ORIGINAL_IMAGES_ANNOTATION: record}}}]


ANNOTATIONS_LIMIT: Final = 256 * 1024
"""Kubernetes' ``TotalAnnotationSizeLimitB``: the sum of key and value lengths (UTF-8 bytes) of a pod's
annotations, checked after every mutating webhook."""


def record_fits(annotations: object, record: str) -> bool:
    """Whether ``record``, as the original-images annotation, keeps ``annotations`` within :data:`ANNOTATIONS_LIMIT`.

    Any earlier record is replaced, so it does not count. Lengths in code points bound the UTF-8 length from below
    and, times four, from above: the exact count is only taken near the limit.
    """
    others = (
        [(key, value) for key, value in annotations.items() if key != ORIGINAL_IMAGES_ANNOTATION]
        if is_json_object(annotations)
        else []
    )
    rough = len(ORIGINAL_IMAGES_ANNOTATION) + len(record) + sum(len(key) + len(str(value)) for key, value in others)
    if 4 * rough <= ANNOTATIONS_LIMIT:
        return True
    if rough > ANNOTATIONS_LIMIT:
        return False
    exact = len(ORIGINAL_IMAGES_ANNOTATION) + len(record.encode(errors="surrogatepass"))
    exact += sum(
        len(key.encode(errors="surrogatepass")) + len(str(value).encode(errors="surrogatepass"))
        for key, value in others
    )
    return exact <= ANNOTATIONS_LIMIT


def _load_originals(raw: object) -> dict[str, str]:
    """The map an earlier invocation recorded; anything unreadable counts as empty (it is ours to overwrite)."""
    if not isinstance(raw, str):
        return {}
    try:
        loaded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {key: value for key, value in loaded.items() if isinstance(key, str) and isinstance(value, str)}


def _dump(originals: Mapping[str, str]) -> str:
    return orjson.dumps(dict(originals), option=orjson.OPT_SORT_KEYS).decode()
