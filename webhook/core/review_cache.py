"""Answers per pod template: the pods of one ReplicaSet, Job or DaemonSet ask the same question.

A rollout or a node-group scale-up sends hundreds of CREATE reviews whose pods differ in name and uid only. What
:func:`webhook.admission.review` answers depends on nothing else (see :func:`webhook.patch.pod_template_key`), so it
is computed once per (template, mode) and each later review gets the same answer under its own uid. The decisions,
the encoded patch, the warnings and the summaries that logs and metrics read are all shared.

Only the common case is cached: a Pod CREATE without vetoes. Everything else (``kubectl debug``, a review the
verifier vetoed, a review that failed open) is answered by :func:`~webhook.admission.review` directly, every time.
The cache belongs to one :class:`~webhook.rules.Rules`: when the rules change (``rules: discover``), it starts over.

A caller that decoded the pod into a shape of its own may key the cache with that instead (``key=``), and look an
answer up by it without building the pod at all (:meth:`ReviewCache.lookup`): ``webhook.serve.sparse`` does, for the
common case. Such a key must be *at least as fine* as :func:`~webhook.patch.pod_template_key`: two pods with equal
keys must have equal template keys. Keys of the two kinds never compare equal (the caller's starts with a string).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Final

from webhook.core.admission import Mode, Outcome, Review, review
from webhook.core.patch import RECORD_POINTER, TemplateKey, is_json_object, pod_template_key, record_fits

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping

    from webhook.core.reasons import Reason
    from webhook.core.rules import Rules

REVIEW_CACHE_SIZE: Final = 1024
"""Templates kept, least recently used dropped first: a cluster runs a few hundred distinct pod templates."""
REVIEW_CACHE_BYTES: Final = 16 * 1024 * 1024
"""What the kept answers may hold, estimated (:func:`_weight`): a 10-container pod's answer is about 15 KiB. An answer
over a sixty-fourth of it (a pod with hundreds of containers or huge image strings) is never kept, so pods made to
be large cannot fill the webhook's memory."""
SLOT_OVERHEAD: Final = 1200
"""Bytes per image slot beyond its strings: the key's tuple, the decision, the patch op and the log record (measured
with tracemalloc: 20 KB held per cached 10-container template, its decision lines and decisions included)."""


class ReviewCache:
    """A bounded LRU of review outcomes by (mode, pod template), for one rule set at a time."""

    def __init__(self, maxsize: int = REVIEW_CACHE_SIZE, max_bytes: int = REVIEW_CACHE_BYTES) -> None:
        """Keep at most ``maxsize`` answers, of at most ``max_bytes`` in all (estimated)."""
        if maxsize < 1 or max_bytes < 1:
            raise ValueError("maxsize and max_bytes must be at least 1")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        """Reviews answered from the cache, and reviews that filled it (uncacheable ones count as neither)."""
        self.bytes = 0
        """What the kept answers hold, estimated."""
        self._rules: Rules | None = None
        self._outcomes: collections.OrderedDict[tuple[Mode, Hashable], tuple[Outcome, int, _Record]]
        self._outcomes = collections.OrderedDict()

    def __len__(self) -> int:
        """How many answers are kept."""
        return len(self._outcomes)

    def review(
        self,
        request: Review,
        rules: Rules,
        mode: Mode,
        vetoes: Mapping[str, Reason] | None = None,
        *,
        key: Hashable | None = None,
    ) -> Outcome:
        """What :func:`webhook.admission.review` answers, from the cache when the template was seen.

        ``key``: the caller's key for this pod's template (see the module's docstring); by default
        :func:`~webhook.patch.pod_template_key`.
        """
        if vetoes or not _is_pod_create(request) or request.object is None:
            return review(request, rules, mode, vetoes)
        self._follow(rules)
        template = pod_template_key(request.object) if key is None else None
        annotations = _annotations_of(request.object)
        found = self.lookup(template if key is None else key, rules, mode, annotations)
        if found is not None:
            return found.answering(request)
        outcome = review(request, rules, mode)
        if outcome.error is not None or not _annotations_fit(annotations, outcome):
            # A failure is reported (logged, counted) each time it happens, never replayed; a pod whose annotations
            # left no room for the record is answered for itself (the record's room depends on every annotation).
            return outcome
        if template is None:  # the caller's key: the template key only to weigh the answer, once per miss
            template = pod_template_key(request.object)
        weight = _weight(template, outcome)
        if weight <= self.max_bytes // 64:
            self.misses += 1
            self._outcomes[mode, template if key is None else key] = (outcome, weight, _record_of(outcome))
            self.bytes += weight
            while len(self._outcomes) > self.maxsize or self.bytes > self.max_bytes:
                _, (_, dropped, _) = self._outcomes.popitem(last=False)
                self.bytes -= dropped
        return outcome

    def lookup(self, key: Hashable, rules: Rules, mode: Mode, annotations: object) -> Outcome | None:
        """The answer kept under the caller's ``key`` for a Pod CREATE, counted as a hit; ``None``: ask :meth:`review`.

        Only if its record fits ``annotations`` (the pod's). Ask :meth:`review` with the same ``key`` when ``None``.

        The answer carries the uid of the review that filled the cache: :meth:`Outcome.answering` gives it this
        review's.
        """
        if rules is not self._rules:
            return None
        cache_key = (mode, key)
        found = self._outcomes.get(cache_key)
        if found is None:
            return None
        outcome, _, record = found  # never a record left out (False): such answers are not kept
        if isinstance(record, str) and not record_fits(annotations, record):
            return None
        self.hits += 1
        self._outcomes.move_to_end(cache_key)
        return outcome

    def _follow(self, rules: Rules) -> None:
        """Start over when the rules changed: every kept answer was decided by the old ones."""
        if rules is not self._rules:
            self._outcomes.clear()
            self.bytes = 0
            self._rules = rules


def _annotations_of(pod: Mapping[str, Any]) -> object:
    """A pod's annotations (``None`` without metadata)."""
    metadata = pod.get("metadata")
    return metadata.get("annotations") if is_json_object(metadata) else None


_Record = str | bool
"""How a kept answer's patch meets a pod's other annotations: the original-images record it writes beside them (it
must fit), ``True`` when nothing it writes can overflow them, ``False`` when it left the record out for lack of room."""


def _record_of(outcome: Outcome) -> _Record:
    """:data:`_Record` of ``outcome``: found once when the answer is kept, read on every hit."""
    plan = outcome.plan
    if plan is None or not plan.patch or outcome.body["response"].get("patchType") is None:
        return True
    last = plan.patch[-1]
    if last["path"] == RECORD_POINTER:
        return str(last["value"])
    return last["path"].startswith("/metadata")  # written whole (no annotations before): it fits every such pod


def _annotations_fit(annotations: object, outcome: Outcome) -> bool:
    """Whether ``outcome``'s patch suits a pod's ``annotations``: the record it writes fits them, or it needs none.

    Pods of one template share their image slots and record, not their other annotations: a cached record that
    would push this pod over the annotation limit is not reused (``review`` then answers without it), and an answer
    that left the record out for lack of room is never kept.
    """
    record = _record_of(outcome)
    return record_fits(annotations, record) if isinstance(record, str) else record


def _is_pod_create(request: Review) -> bool:
    return request.operation == "CREATE" and not request.sub_resource and request.targets_pod


def _weight(template: TemplateKey, outcome: Outcome) -> int:
    """Bytes an answer holds, estimated: its strings (names, images, patch, warnings) and a fixed cost per slot."""
    slots = template[0]
    strings = sum(len(name) + 2 * len(image or "") for _, _, name, image in slots)
    response = outcome.body["response"]
    patch = len(response.get("patch", ""))
    warnings = sum(len(warning) for warning in response.get("warnings", ()))
    return strings + patch + warnings + SLOT_OVERHEAD * len(slots)
