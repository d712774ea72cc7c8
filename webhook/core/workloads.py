"""Pod specs inside Kubernetes objects: Pods, workload templates, CronJobs, PodTemplates and Lists.

Pure: decoded objects in, :class:`Workload` records out, each with the path of its pod spec inside the object, so
``audit`` can report it and ``rewrite`` can change it where it is written. What is not a known shape is passed over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from webhook.core.patch import image_slots

if TYPE_CHECKING:
    from webhook.core.patch import ImageSlot

PathPart = str | int
"""One step into a decoded object: a mapping key or a list index."""

_TEMPLATE_SPEC: Final = ("spec", "template")

POD_TEMPLATE_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "Pod": (),
    "Deployment": _TEMPLATE_SPEC,
    "StatefulSet": _TEMPLATE_SPEC,
    "DaemonSet": _TEMPLATE_SPEC,
    "ReplicaSet": _TEMPLATE_SPEC,
    "ReplicationController": _TEMPLATE_SPEC,
    "Job": _TEMPLATE_SPEC,
    "CronJob": ("spec", "jobTemplate", *_TEMPLATE_SPEC),
    "PodTemplate": ("template",),
}
"""Kind -> path to the object holding the pod's ``metadata`` and ``spec`` (the Pod itself, or a pod template)."""

TEMPLATE_OWNERS: Final[dict[str, frozenset[str]]] = {
    "Pod": frozenset({"ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}),
    "ReplicaSet": frozenset({"Deployment"}),
    "Job": frozenset({"CronJob"}),
}
"""Kind -> controller kinds whose own template already describes it (a live cluster lists both)."""

LIST_SUFFIX: Final = "List"


@dataclass(frozen=True, slots=True)
class Workload:
    """One pod spec: the object it belongs to and where in the document the spec sits."""

    kind: str
    namespace: str | None
    name: str
    spec_path: tuple[PathPart, ...]
    """Path from the document root to the pod spec, e.g. ``("items", 2, "spec", "template", "spec")``."""
    spec: Mapping[str, Any]
    pod_metadata: Mapping[str, Any] | None
    """The metadata pods get (the Pod's own, or the template's): where the opt-out annotation is read."""
    only: frozenset[str] | None = None
    """Keys of the images to report (container names, ``volumes/<name>``); ``None`` for all of them."""

    def image_slots(self) -> list[ImageSlot]:
        """The images of the pod spec (see :func:`webhook.patch.image_slots`), limited to :attr:`only`."""
        return [slot for slot in image_slots(self.spec) if self.only is None or slot.key in self.only]

    def beyond(self, template_keys: frozenset[str]) -> Workload | None:
        """This pod limited to the images whose keys its controller's template does not have; ``None`` if none.

        What a pod runs beyond its template was added on the way: sidecars other webhooks inject (istio-proxy,
        vault-agent), ephemeral containers from ``kubectl debug``. The webhook sees and rewrites those too.
        """
        extra = image_keys(self) - template_keys
        return replace(self, only=extra) if extra else None


def workloads(document: object, path: tuple[PathPart, ...] = (), kind: str | None = None) -> Iterator[Workload]:
    """Every pod spec in ``document``, descending into the ``items`` of List kinds (``kubectl get -o json``).

    ``path`` is where ``document`` sits in its file (e.g. ``("items", 3)`` for a streamed List item); ``kind`` is
    assumed when the object has none, as items of a typed list (``PodList``) returned by the API server.
    """
    if not isinstance(document, Mapping):
        return
    own_kind = document.get("kind")
    kind = own_kind if isinstance(own_kind, str) else kind
    if kind is None:
        return
    if kind.endswith(LIST_SUFFIX) and isinstance(document.get("items"), list):
        item_kind = list_item_kind(kind)
        for index, item in enumerate(document["items"]):
            yield from workloads(item, (*path, "items", index), item_kind)
        return
    template_path = POD_TEMPLATE_PATHS.get(kind)
    if template_path is None:
        return
    template = _get(document, template_path)
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        return
    metadata = document.get("metadata")
    namespace = _string(metadata, "namespace")
    pod_metadata = template.get("metadata")
    yield Workload(
        kind=kind,
        namespace=namespace,
        name=_string(metadata, "name") or "",
        spec_path=(*path, *template_path, "spec"),
        spec=template["spec"],
        pod_metadata=pod_metadata if isinstance(pod_metadata, Mapping) else None,
    )


def list_item_kind(kind: str | None) -> str | None:
    """The kind of a list's items that carry none: ``Pod`` for a ``PodList``; ``None`` for ``List`` (any kind)."""
    if kind is None or not kind.endswith(LIST_SUFFIX):
        return None
    return kind.removesuffix(LIST_SUFFIX) or None


def owned_by_template(document: object, kind: str) -> bool:
    """Whether a controller of a kind in :data:`TEMPLATE_OWNERS` manages this object (its template covers it)."""
    owner = controller_of(document)
    return owner is not None and owner.get("kind") in TEMPLATE_OWNERS.get(kind, frozenset())


def controller_of(document: object) -> Mapping[str, Any] | None:
    """The owner reference marked ``controller: true``, if any."""
    metadata = document.get("metadata") if isinstance(document, Mapping) else None
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(owners, list):
        return None
    return next((owner for owner in owners if isinstance(owner, Mapping) and owner.get("controller") is True), None)


def controller_uid(document: object) -> str | None:
    """The uid of the object's controller (the owner reference marked ``controller: true``), if any."""
    owner = controller_of(document)
    uid = owner.get("uid") if owner is not None else None
    return uid if isinstance(uid, str) else None


def uid_of(document: object) -> str | None:
    """``metadata.uid``, which owner references name."""
    return _string(document.get("metadata") if isinstance(document, Mapping) else None, "uid")


def image_keys(workload: Workload) -> frozenset[str]:
    """The keys of every image slot of a pod spec: its container names and ``volumes/<name>`` of image volumes."""
    return frozenset(slot.key for slot in workload.image_slots())


def _get(document: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _string(metadata: object, key: str) -> str | None:
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) else None
