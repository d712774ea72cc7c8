"""Answers per pod template: the pods of one ReplicaSet, Job or DaemonSet ask the same question.

A rollout or a node-group scale-up sends hundreds of CREATE reviews whose pods differ in name and uid only. What
:func:`webhook.admission.review` answers depends on nothing else (see :func:`webhook.patch.pod_template_key`), so it
is computed once per (template, mode) and each later review gets the same answer under its own uid. The decisions,
the encoded patch, the warnings and the summaries that logs and metrics read are all shared.

Only the common case is cached: a Pod CREATE without vetoes. Everything else (``kubectl debug``, a review the
verifier vetoed, a review that failed open) is answered by :func:`~webhook.admission.review` directly, every time.
The cache belongs to one :class:`~webhook.rules.Rules`: when the rules change (``rules: discover``), it starts over.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Final

from webhook.admission import Mode, Outcome, Review, review
from webhook.patch import pod_template_key

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping

    from webhook.reasons import Reason
    from webhook.rules import Rules

REVIEW_CACHE_SIZE: Final = 1024
"""Templates kept, least recently used dropped first: a cluster runs a few hundred distinct pod templates."""


class ReviewCache:
    """A bounded LRU of review outcomes by (mode, pod template), for one rule set at a time."""

    def __init__(self, maxsize: int = REVIEW_CACHE_SIZE) -> None:
        """Keep at most ``maxsize`` answers."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        """Reviews answered from the cache, and reviews that filled it (uncacheable ones count as neither)."""
        self._rules: Rules | None = None
        self._outcomes: collections.OrderedDict[tuple[Mode, Hashable], Outcome] = collections.OrderedDict()

    def __len__(self) -> int:
        """How many answers are kept."""
        return len(self._outcomes)

    def review(self, request: Review, rules: Rules, mode: Mode, vetoes: Mapping[str, Reason] | None = None) -> Outcome:
        """What :func:`webhook.admission.review` answers, from the cache when the template was seen."""
        if vetoes or not _is_pod_create(request) or request.object is None:
            return review(request, rules, mode, vetoes)
        if rules is not self._rules:
            self._outcomes.clear()
            self._rules = rules
        key = (mode, pod_template_key(request.object))
        template = self._outcomes.get(key)
        if template is not None:
            self.hits += 1
            self._outcomes.move_to_end(key)
            return template.answering(request)
        outcome = review(request, rules, mode)
        if outcome.error is None:  # a failure is reported (logged, counted) each time it happens, never replayed
            self.misses += 1
            self._outcomes[key] = outcome
            if len(self._outcomes) > self.maxsize:
                self._outcomes.popitem(last=False)
        return outcome


def _is_pod_create(request: Review) -> bool:
    return request.operation == "CREATE" and not request.sub_resource and request.targets_pod
