"""The per-template answer cache gives exactly what an uncached review gives, under each review's own uid."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reviews import make_pod, make_review
from strategies import NAMES, POD_IMAGES, pods

from webhook.core.admission import Mode, Outcome, Review, parse_review, review
from webhook.core.config import parse_config
from webhook.core.patch import OPT_OUT_ANNOTATION, OPT_OUT_VALUE, ORIGINAL_IMAGES_ANNOTATION, pod_template_key
from webhook.core.reasons import Reason
from webhook.core.review_cache import ReviewCache
from webhook.core.rules import Rules

if TYPE_CHECKING:
    from webhook.core.config import Config

QUAY = "quay.io/prometheus/node-exporter:v1.8.2"
SLOT_FIELDS = ("containers", "initContainers", "ephemeralContainers")


def request_for(pod: dict[str, Any], **options: Any) -> Review:
    """A review of ``pod`` as given (whatever its metadata looks like), with a fresh uid."""
    body = make_review(make_pod(QUAY), **options)
    body["request"]["object"] = copy.deepcopy(pod)
    return parse_review(body)


def assert_same_answer(cached: Outcome, fresh: Outcome) -> None:
    assert cached.body == fresh.body
    assert cached.error == fresh.error
    if fresh.plan is None:
        assert cached.plan is None
    else:
        assert cached.plan is not None
        assert cached.plan.decisions == fresh.plan.decisions
        assert cached.plan.patch == fresh.plan.patch


@st.composite
def near_duplicates(draw: st.DrawFn, pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with one change: each kind either must change the answer or must not (the cache may not tell)."""
    variant = copy.deepcopy(pod)
    spec = variant["spec"]
    containers = [(field, item) for field in SLOT_FIELDS for item in spec.get(field, [])]
    kinds = ["image", "name", "order", "move", "odd-image", "shift", "annotations", "pull-secrets", "unrelated"]
    change = draw(st.sampled_from(kinds))
    if change == "pull-secrets":  # the pod gains, loses or empties its imagePullSecrets
        spec["imagePullSecrets"] = draw(st.sampled_from([[], [{"name": "registry-robot"}], [{"name": "other"}]]))
        return variant
    if change == "annotations" or not containers:
        metadata = variant.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if isinstance(annotations, dict) and draw(st.booleans()):  # one annotation changed, the others kept
            key = draw(st.sampled_from([OPT_OUT_ANNOTATION, ORIGINAL_IMAGES_ANNOTATION]))
            annotations[key] = draw(st.sampled_from([OPT_OUT_VALUE, "enabled", '{"c": "quay.io/a/b"}', "{}", 7]))
            return variant
        variant["metadata"] = draw(
            st.sampled_from(
                [
                    {"annotations": {OPT_OUT_ANNOTATION: OPT_OUT_VALUE}},
                    {"annotations": {OPT_OUT_ANNOTATION: "enabled"}},
                    {"annotations": {ORIGINAL_IMAGES_ANNOTATION: '{"c": "quay.io/a/b"}'}},
                    {"annotations": {ORIGINAL_IMAGES_ANNOTATION: '{"gone": "quay.io/x/y"}'}},
                    {"annotations": {ORIGINAL_IMAGES_ANNOTATION: 7}},
                    {"annotations": []},
                    {"name": "web-1"},
                    [],
                ]
            )
        )
        return variant
    field, container = draw(st.sampled_from(containers))
    if change == "image":
        container["image"] = draw(POD_IMAGES)
    elif change == "name":
        container["name"] = draw(NAMES)
    elif change == "order":
        spec[field].reverse()
    elif change == "move":
        spec[field].remove(container)
        spec.setdefault(draw(st.sampled_from(SLOT_FIELDS)), []).append(container)
    elif change == "odd-image":
        container["image"] = draw(st.sampled_from([None, 5, {"image": QUAY}]))
    elif change == "shift":  # something that is no image slot, in front: every later slot's index (pointer) moves
        spec[field].insert(0, draw(st.sampled_from([None, "sidecar", []])))
        spec.setdefault("volumes", []).insert(0, {"name": "cache", "emptyDir": {}})
    else:
        container["env"] = [{"name": "LEVEL", "value": "debug"}]
    return variant


@st.composite
def review_sequences(draw: st.DrawFn) -> list[tuple[dict[str, Any], Mode]]:
    """Reviews of a few pods and their near-duplicates, repeated, in either mode."""
    base = draw(pods())
    family = [base, *(draw(near_duplicates(base)) for _ in range(draw(st.integers(1, 4))))]
    return draw(st.lists(st.tuples(st.sampled_from(family), st.sampled_from(list(Mode))), min_size=2, max_size=12))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(sequence=review_sequences())
def test_cached_answers_equal_fresh_ones(rules: Rules, sequence: list[tuple[dict[str, Any], Mode]]) -> None:
    cache = ReviewCache(maxsize=3)
    for index, (pod, mode) in enumerate(sequence):
        # What else a review carries must not matter: the namespace, the pod's name, dry runs, the requester.
        request = request_for(pod, dry_run=index % 2 == 1)._replace(namespace=f"team-{index % 3}", name=f"web-{index}")
        assert_same_answer(cache.review(request, rules, mode), review(request, rules, mode))
    assert cache.hits + cache.misses == len(sequence)
    assert len(cache) <= 3


@given(pod=pods())
def test_pods_of_one_template_share_a_key_whatever_else_differs(pod: dict[str, Any]) -> None:
    sibling = copy.deepcopy(pod)
    metadata = sibling.get("metadata")
    if isinstance(metadata, dict):
        metadata["name"] = "web-7d4b9c8f6-x2x9q"
        metadata["uid"] = "5f0c6a1e-0000-4000-8000-000000000009"
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations["kubectl.kubernetes.io/restartedAt"] = "2026-11-29T06:00:00Z"
    for container in sibling["spec"].get("containers", []):
        container["env"] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert pod_template_key(sibling) == pod_template_key(pod)


def test_a_repeated_template_is_answered_from_the_cache_under_its_own_uid(rules: Rules) -> None:
    cache = ReviewCache()
    first, second = (request_for(make_pod(QUAY, "nginx")) for _ in range(2))
    answered = cache.review(first, rules, Mode.MUTATE)
    again = cache.review(second, rules, Mode.MUTATE)
    assert (cache.hits, cache.misses) == (1, 1)
    assert answered.body["response"]["uid"] == first.uid
    assert again.body["response"]["uid"] == second.uid
    assert again.body["response"]["patch"] == answered.body["response"]["patch"]
    assert again.plan is answered.plan
    assert answered.body["response"]["uid"] == first.uid  # the first answer was not changed in place


def test_an_earlier_record_of_originals_is_part_of_the_template(rules: Rules) -> None:
    cache = ReviewCache()
    for record in ('{"sidecar": "quay.io/a/b:v1"}', '{"other": "nginx"}', "{}"):
        request = request_for(make_pod(QUAY, annotations={ORIGINAL_IMAGES_ANNOTATION: record}))
        assert_same_answer(cache.review(request, rules, Mode.MUTATE), review(request, rules, Mode.MUTATE))
    assert cache.misses == 3


def test_modes_are_cached_apart(rules: Rules) -> None:
    cache = ReviewCache()
    request = request_for(make_pod(QUAY))
    mutated = cache.review(request, rules, Mode.MUTATE)
    audited = cache.review(request, rules, Mode.AUDIT)
    assert "patch" in mutated.body["response"]
    assert "patch" not in audited.body["response"]
    assert audited.body["response"]["warnings"]
    assert cache.misses == 2


def test_least_recently_used_templates_are_dropped_first(rules: Rules) -> None:
    cache = ReviewCache(maxsize=2)
    a, b, c = (make_pod(f"quay.io/team/{name}:v1") for name in "abc")
    for pod in (a, b, a, c):  # b is the least recently used when c arrives
        cache.review(request_for(pod), rules, Mode.MUTATE)
    assert len(cache) == 2
    hits = cache.hits
    cache.review(request_for(a), rules, Mode.MUTATE)
    assert cache.hits == hits + 1
    cache.review(request_for(b), rules, Mode.MUTATE)
    assert cache.hits == hits + 1


def test_new_rules_start_a_new_cache(config: Config) -> None:
    cache = ReviewCache()
    request = request_for(make_pod("nginx:1.27"))
    with_hub = cache.review(request, Rules(config), Mode.MUTATE)
    without_hub = Rules(parse_config({"registry": config.registry, "tiers": ["quay"]}))
    answer = cache.review(request, without_hub, Mode.MUTATE)
    assert "patch" in with_hub.body["response"]
    assert "patch" not in answer.body["response"]
    assert cache.hits == 0


def test_vetoed_reviews_bypass_the_cache(rules: Rules) -> None:
    cache = ReviewCache()
    request = request_for(make_pod(QUAY, "nginx"))
    cache.review(request, rules, Mode.MUTATE)
    vetoes = {"nginx": Reason.VERIFY_FAILED}
    vetoed = cache.review(request, rules, Mode.MUTATE, vetoes)
    assert_same_answer(vetoed, review(request, rules, Mode.MUTATE, vetoes))
    assert (cache.hits, cache.misses) == (0, 1)
    assert_same_answer(cache.review(request, rules, Mode.MUTATE), review(request, rules, Mode.MUTATE))


@pytest.mark.parametrize(
    ("operation", "sub_resource"), [("UPDATE", None), ("UPDATE", "ephemeralcontainers"), ("CREATE", "binding")]
)
def test_only_pod_creations_are_cached(rules: Rules, operation: str, sub_resource: str | None) -> None:
    cache = ReviewCache()
    pod = make_pod(QUAY)
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "nginx"}]
    request = request_for(pod, operation=operation, sub_resource=sub_resource, old_pod=make_pod(QUAY))
    for _ in range(2):
        assert_same_answer(cache.review(request, rules, Mode.MUTATE), review(request, rules, Mode.MUTATE))
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_a_review_that_failed_open_is_not_replayed(rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(image: str, *_: object) -> None:
        raise RuntimeError(image)

    cache = ReviewCache()
    monkeypatch.setattr(rules, "decide", explode)
    for _ in range(2):
        outcome = cache.review(request_for(make_pod(QUAY)), rules, Mode.MUTATE)
        assert outcome.error == f"RuntimeError: {QUAY}"
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReviewCache(maxsize=0)
    with pytest.raises(ValueError, match="at least 1"):
        ReviewCache(max_bytes=0)


def test_what_the_answers_hold_stays_within_the_byte_budget(rules: Rules) -> None:
    cache = ReviewCache(max_bytes=2_000_000)
    for index in range(200):
        pod = make_pod(*(f"quay.io/team-{index}/app{i}:v1" for i in range(10)))
        cache.review(request_for(pod), rules, Mode.MUTATE)
        assert cache.bytes <= 2_000_000
    assert 50 < len(cache) < 200  # about 15 KB each
    cache.review(request_for(make_pod(QUAY)), Rules(rules.config), Mode.MUTATE)  # new rules: a new cache
    assert len(cache) == 1
    assert cache.bytes < 2_000_000 // 64


def test_pods_made_to_be_large_are_answered_but_never_kept(rules: Rules) -> None:
    cache = ReviewCache()
    pods = [
        make_pod(*(f"quay.io/team/app{i}:v1" for i in range(500))),  # hundreds of containers
        make_pod("quay.io/team/app:v1", "Not a reference " + "x" * 300_000),  # a huge image string
    ]
    for pod in pods:
        request = request_for(pod)
        for _ in range(2):
            assert_same_answer(cache.review(request, rules, Mode.MUTATE), review(request, rules, Mode.MUTATE))
    assert (len(cache), cache.hits, cache.misses, cache.bytes) == (0, 0, 0, 0)
