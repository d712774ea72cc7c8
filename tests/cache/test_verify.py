"""TargetVerifier's behaviour with a scripted registry: outcomes, caches, single-flight, budget, breaker."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from cache.cache_support import Certificates
from prometheus_client import CollectorRegistry
from reviews import make_pod, make_review

from webhook.cache.registry_client import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    BasicAuth,
    ManifestAnswer,
    RegistryClient,
)
from webhook.cache.verify import (
    BreakerState,
    Lookup,
    Outcome,
    ResultCache,
    TargetVerifier,
    VerifySettings,
    classify,
    registry_failing,
)
from webhook.core.config import parse_config
from webhook.core.reasons import Reason
from webhook.core.rules import Rules
from webhook.serve.app import create_app

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from pathlib import Path

    from webhook.core.reference import ImageReference

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "a" * 64
TAGGED = "quay.io/org/app:1.0"
PINNED = f"quay.io/org/app@{DIGEST}"
BOTH = f"quay.io/org/app:1.0@{DIGEST}"
OTHER = "quay.io/org/other:2.0"
THIRD = "quay.io/org/third:3.0"
T = TypeVar("T")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedRegistry:
    """Answers HEADs from ``answers`` (identifier -> status, default 200); ``gate`` holds every answer until set,
    ``gates`` the answers for one identifier."""

    answers: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    raises: Exception | None = None
    closed: bool = False
    warmed: int = 0
    warm_up_raises: Exception | None = None

    async def head_manifest(self, reference: ImageReference, identifier: str) -> ManifestAnswer:
        self.calls.append(f"{reference.path}/{identifier}")
        if self.gate is not None:
            await self.gate.wait()
        if identifier in self.gates:
            await self.gates[identifier].wait()
        if self.raises is not None:
            raise self.raises
        status = self.answers.get(identifier, 200)
        return ManifestAnswer(status, digest=DIGEST if status == 200 else None, error=None if status == 200 else "no")

    async def warm_up(self) -> None:
        self.warmed += 1
        if self.warm_up_raises is not None:
            raise self.warm_up_raises

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def rules() -> Rules:
    return Rules(parse_config({"registry": REGISTRY, "tiers": ["quay", "k8s"]}))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def verifier(
    probe: ScriptedRegistry, clock: Clock | None = None, registry: CollectorRegistry | None = None, **settings: Any
) -> TargetVerifier:
    return TargetVerifier(
        probe, VerifySettings(**{"budget": 0.2, **settings}), registry=registry, clock=clock or time.monotonic
    )


def breaker(subject: TargetVerifier) -> BreakerState:
    """The breaker's state, read afresh (mypy would otherwise keep an earlier assert's narrowing)."""
    return subject.breaker


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.RESOLVED),
        (404, Outcome.MISSING),
        (401, Outcome.FAILED),
        (503, Outcome.FAILED),
        (0, Outcome.FAILED),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


@pytest.mark.parametrize(("status", "failing"), [(0, True), (401, True), (429, True), (500, True), (503, True)])
def test_no_answer_5xx_429_and_401_say_the_registry_is_failing(status: int, failing: bool) -> None:
    assert registry_failing(status) is failing


@pytest.mark.parametrize("status", [400, 403, 405])
def test_other_refusals_concern_one_target_only(status: int) -> None:
    assert not registry_failing(status)


def test_a_resolved_tag_is_rewritten_and_cached(rules: Rules) -> None:
    probe, registry = ScriptedRegistry(), CollectorRegistry()
    subject = verifier(probe, registry=registry)

    async def scenario() -> list[dict[str, Reason]]:
        decisions = [rules.decide(TAGGED)]
        return [dict(await subject.vetoes(decisions)) for _ in range(3)]

    assert run(scenario()) == [{}, {}, {}]
    assert probe.calls == ["quay/org/app/1.0"]
    assert sample(registry, "ecr_ptc_webhook_verify_lookups_total", outcome="resolved") == 1
    assert sample(registry, "ecr_ptc_webhook_verify_cache_hits_total", outcome="resolved") == 2


def test_the_new_tiers_targets_are_verified_in_the_cache() -> None:
    upstream = {"name": "central-ecr", "upstreamRegistry": "ecr", "host": "111122223333.dkr-ecr.us-east-1.on.aws"}
    config = {
        "registry": REGISTRY,
        "upstreams": [{**upstream, "prefix": "use1"}],
        "tiers": ["central-ecr", "chainguard"],
    }
    rules = Rules(parse_config(config))
    probe = ScriptedRegistry({"v2": 404})
    central = "111122223333.dkr.ecr.us-east-1.amazonaws.com/platform/api:v2"
    chainguard = "cgr.dev/chainguard/static:1.0"

    async def scenario() -> dict[str, Reason]:
        return dict(await verifier(probe).vetoes([rules.decide(central), rules.decide(chainguard)]))

    assert run(scenario()) == {central: Reason.TARGET_MISSING}
    assert sorted(probe.calls) == ["chainguard/chainguard/static/1.0", "use1/platform/api/v2"]


def test_a_missing_target_is_vetoed_and_cached_for_the_negative_ttl(rules: Rules) -> None:
    probe, clock = ScriptedRegistry({"1.0": 404}), Clock()
    subject = verifier(probe, clock, negative_ttl=30.0)

    async def scenario() -> list[dict[str, Reason]]:
        decisions = [rules.decide(TAGGED)]
        first = dict(await subject.vetoes(decisions))
        clock.now += 29
        second = dict(await subject.vetoes(decisions))
        clock.now += 2
        probe.answers.clear()  # pushed upstream meanwhile
        third = dict(await subject.vetoes(decisions))
        return [first, second, third]

    assert run(scenario()) == [{TAGGED: Reason.TARGET_MISSING}, {TAGGED: Reason.TARGET_MISSING}, {}]
    assert len(probe.calls) == 2


def test_a_resolved_target_expires_after_the_positive_ttl(rules: Rules) -> None:
    probe, clock = ScriptedRegistry(), Clock()
    subject = verifier(probe, clock, positive_ttl=600.0)

    async def scenario() -> dict[str, Reason]:
        await subject.vetoes([rules.decide(TAGGED)])
        clock.now += 601
        probe.answers["1.0"] = 404  # the cache lost it
        return dict(await subject.vetoes([rules.decide(TAGGED)]))

    assert run(scenario()) == {TAGGED: Reason.TARGET_MISSING}


@pytest.mark.parametrize("status", [401, 429, 500, 503, 0])
def test_a_registry_failure_is_vetoed_and_not_cached(rules: Rules, status: int) -> None:
    probe = ScriptedRegistry({"1.0": status})
    subject = verifier(probe)

    async def scenario() -> list[dict[str, Reason]]:
        return [dict(await subject.vetoes([rules.decide(TAGGED)])) for _ in range(2)]

    assert run(scenario()) == [{TAGGED: Reason.VERIFY_FAILED}] * 2
    assert len(probe.calls) == 2


def test_a_digest_is_looked_up_by_digest_only(rules: Rules) -> None:
    probe = ScriptedRegistry()
    assert run(verifier(probe).vetoes([rules.decide(PINNED)])) == {}
    assert probe.calls == [f"quay/org/app/{DIGEST}"]


def test_tag_and_digest_warm_by_tag_first_and_the_digest_decides(rules: Rules) -> None:
    probe = ScriptedRegistry({DIGEST: 404})
    assert run(verifier(probe).vetoes([rules.decide(BOTH)])) == {BOTH: Reason.TARGET_MISSING}
    assert probe.calls == ["quay/org/app/1.0", f"quay/org/app/{DIGEST}"]


def test_a_moved_tag_does_not_block_a_digest_that_resolves(rules: Rules) -> None:
    probe = ScriptedRegistry({"1.0": 404})
    assert run(verifier(probe).vetoes([rules.decide(BOTH)])) == {}


def test_a_failing_tag_lookup_fails_without_asking_for_the_digest(rules: Rules) -> None:
    probe = ScriptedRegistry({"1.0": 503})
    assert run(verifier(probe).vetoes([rules.decide(BOTH)])) == {BOTH: Reason.VERIFY_FAILED}
    assert probe.calls == ["quay/org/app/1.0"]


def test_only_rewrites_are_looked_up(rules: Rules) -> None:
    probe = ScriptedRegistry()
    decisions = [rules.decide("docker.io/library/nginx:1.27"), rules.decide(f"{REGISTRY}/quay/org/app:1")]
    assert run(verifier(probe).vetoes(decisions)) == {}
    assert probe.calls == []


def test_concurrent_lookups_of_one_target_are_made_once(rules: Rules) -> None:
    probe = ScriptedRegistry(gate=None)
    subject = verifier(probe, budget=1.0)

    async def scenario() -> list[dict[str, Reason]]:
        probe.gate = asyncio.Event()
        # `quay.io/org/app:1.0` and `Quay.io/org/app:1.0` are two spellings of one target.
        decisions = [rules.decide(TAGGED), rules.decide("Quay.io/org/app:1.0")]
        waiting = [asyncio.create_task(subject.vetoes(decisions)) for _ in range(20)]
        await asyncio.sleep(0.01)
        probe.gate.set()
        return [dict(item) for item in await asyncio.gather(*waiting)]

    assert run(scenario()) == [{}] * 20
    assert probe.calls == ["quay/org/app/1.0"]


def test_past_the_budget_the_original_is_kept_and_the_answer_fills_the_cache(rules: Rules) -> None:
    probe, registry = ScriptedRegistry(), CollectorRegistry()
    subject = verifier(probe, registry=registry, budget=0.05)

    async def scenario() -> tuple[dict[str, Reason], float, dict[str, Reason]]:
        probe.gate = asyncio.Event()
        started = time.monotonic()
        late = dict(await subject.vetoes([rules.decide(TAGGED), rules.decide(OTHER)]))
        elapsed = time.monotonic() - started
        probe.gate.set()  # the registry answers after the admission gave up
        await asyncio.sleep(0.01)
        return late, elapsed, dict(await subject.vetoes([rules.decide(TAGGED), rules.decide(OTHER)]))

    late, elapsed, next_pod = run(scenario())
    assert late == {TAGGED: Reason.VERIFY_FAILED, OTHER: Reason.VERIFY_FAILED}
    assert elapsed < 1.0
    assert next_pod == {}
    assert len(probe.calls) == 2
    assert sample(registry, "ecr_ptc_webhook_verify_vetoes_total", reason="verify-failed", cause="budget") == 2


def test_the_breaker_opens_vetoes_without_network_then_probes_once(rules: Rules) -> None:
    probe, clock, registry = ScriptedRegistry({"1.0": 503, "2.0": 503}), Clock(), CollectorRegistry()
    subject = verifier(probe, clock, registry=registry, failure_threshold=3, cool_down=30.0)

    async def scenario() -> None:
        for _ in range(3):
            assert await subject.vetoes([rules.decide(TAGGED)]) == {TAGGED: Reason.VERIFY_FAILED}
        assert breaker(subject) is BreakerState.OPEN
        assert sample(registry, "ecr_ptc_webhook_verify_breaker_open") == 1
        assert "breaker open" in subject.status()
        calls = len(probe.calls)
        assert await subject.vetoes([rules.decide(OTHER)]) == {OTHER: Reason.VERIFY_FAILED}
        assert len(probe.calls) == calls  # no network while open
        clock.now += 31
        probe.answers.clear()  # the registry is back
        probe.gate = asyncio.Event()
        probe_pod = asyncio.create_task(subject.vetoes([rules.decide(TAGGED)]))
        await asyncio.sleep(0.01)
        assert breaker(subject) is BreakerState.HALF_OPEN
        # While the one probe runs, other lookups are still refused at once.
        assert await subject.vetoes([rules.decide(OTHER)]) == {OTHER: Reason.VERIFY_FAILED}
        probe.gate.set()
        assert await probe_pod == {}
        assert breaker(subject) is BreakerState.CLOSED
        assert await subject.vetoes([rules.decide(OTHER)]) == {}

    run(scenario())
    assert sample(registry, "ecr_ptc_webhook_verify_breaker_open") == 0
    assert sample(registry, "ecr_ptc_webhook_verify_vetoes_total", reason="verify-failed", cause="breaker") == 2


def test_a_failed_probe_opens_the_breaker_again(rules: Rules) -> None:
    probe, clock = ScriptedRegistry({"1.0": 503}), Clock()
    subject = verifier(probe, clock, failure_threshold=2, cool_down=10.0)

    async def scenario() -> None:
        for _ in range(2):
            await subject.vetoes([rules.decide(TAGGED)])
        clock.now += 11
        await subject.vetoes([rules.decide(TAGGED)])  # the probe fails
        assert breaker(subject) is BreakerState.OPEN
        calls = len(probe.calls)
        await subject.vetoes([rules.decide(TAGGED)])
        assert len(probe.calls) == calls

    run(scenario())


def test_a_missing_target_does_not_count_towards_the_breaker(rules: Rules) -> None:
    probe = ScriptedRegistry({"1.0": 404, "2.0": 404})
    subject = verifier(probe, failure_threshold=1, negative_ttl=0.0)

    async def scenario() -> None:
        for _ in range(3):
            await subject.vetoes([rules.decide(TAGGED), rules.decide(OTHER)])

    run(scenario())
    assert breaker(subject) is BreakerState.CLOSED


def test_lookups_in_flight_are_bounded(rules: Rules) -> None:
    probe, registry = ScriptedRegistry(), CollectorRegistry()
    subject = verifier(probe, registry=registry, max_in_flight=1, budget=0.02)

    async def scenario() -> dict[str, Reason]:
        probe.gate = asyncio.Event()
        await subject.vetoes([rules.decide(TAGGED)])  # left running in the background
        vetoes = dict(await subject.vetoes([rules.decide(OTHER)]))
        probe.gate.set()
        await asyncio.sleep(0)
        return vetoes

    assert run(scenario()) == {OTHER: Reason.VERIFY_FAILED}
    assert probe.calls == ["quay/org/app/1.0"]
    assert sample(registry, "ecr_ptc_webhook_verify_vetoes_total", reason="verify-failed", cause="overload") == 1


def test_an_exception_in_a_lookup_is_a_failure_not_a_crash(rules: Rules) -> None:
    probe = ScriptedRegistry(raises=RuntimeError("boom"))
    subject = verifier(probe)
    assert run(subject.vetoes([rules.decide(TAGGED)])) == {TAGGED: Reason.VERIFY_FAILED}
    assert "boom" in subject._last_failure


def test_lookup_without_budget_shares_the_cache(rules: Rules) -> None:
    probe = ScriptedRegistry({DIGEST: 404})
    subject = verifier(probe)

    async def scenario() -> tuple[Lookup, dict[str, Reason]]:
        lookup = await subject.lookup(rules.decide(BOTH).result)
        return lookup, dict(await subject.vetoes([rules.decide(BOTH)]))

    lookup, vetoes = run(scenario())
    assert lookup.outcome is Outcome.MISSING
    assert DIGEST in lookup.detail
    assert vetoes == {BOTH: Reason.TARGET_MISSING}
    assert len(probe.calls) == 2


def test_aclose_cancels_lookups_and_closes_the_client(rules: Rules) -> None:
    probe = ScriptedRegistry()
    subject = verifier(probe, budget=0.01)

    async def scenario() -> None:
        probe.gate = asyncio.Event()
        await subject.vetoes([rules.decide(TAGGED)])
        assert subject._in_flight
        await subject.aclose()
        assert not subject._in_flight

    run(scenario())
    assert probe.closed


def test_the_result_cache_is_bounded_least_recently_used_first() -> None:
    cache = ResultCache(2)
    resolved = Lookup(Outcome.RESOLVED)
    cache.put("a", resolved, 100.0)
    cache.put("b", resolved, 100.0)
    assert cache.get("a", 0.0) is resolved
    cache.put("c", resolved, 100.0)
    assert cache.get("b", 0.0) is None
    assert cache.get("a", 0.0) is resolved
    assert cache.get("c", 100.0) is None  # expired
    assert len(cache) == 1


def test_status_reports_a_healthy_verifier(rules: Rules) -> None:
    subject = verifier(ScriptedRegistry())
    run(subject.vetoes([rules.decide(TAGGED)]))
    assert subject.status() == "verify: ok (1 cached, 0 in flight)"


def test_the_app_keeps_vetoed_images_and_rewrites_the_rest(rules: Rules) -> None:
    probe = ScriptedRegistry({"2.0": 404})
    subject = verifier(probe)
    app = create_app(rules, verifier=subject)

    async def scenario() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
            response = await client.post("/mutate", json=make_review(make_pod(TAGGED, OTHER)))
            answer: dict[str, Any] = response.json()
            return answer

    response = run(scenario())["response"]
    patch = json.loads(base64.b64decode(response["patch"]))
    images = {op["path"]: op["value"] for op in patch if op["path"].endswith("/image")}
    assert images == {"/spec/containers/0/image": f"{REGISTRY}/quay/org/app:1.0"}


def test_for_config_takes_the_budget_and_the_registry_connection_from_config_and_env(tmp_path: Path) -> None:
    certificates = Certificates(tmp_path)
    config = parse_config({"registry": "mirror.example:5000", "verify": True, "verifyBudgetSeconds": 0.25})
    env = {ENV_USERNAME: "user", ENV_PASSWORD: "secret", ENV_CA_FILE: str(certificates.ca)}
    subject = TargetVerifier.for_config(config, env=env)
    assert subject.settings.budget == 0.25
    assert isinstance(subject._probe, RegistryClient)
    assert isinstance(subject._probe._auth, BasicAuth)
    asyncio.run(subject.aclose())


async def open_breaker(subject: TargetVerifier, probe: ScriptedRegistry, rules: Rules, failures: int) -> None:
    """Make ``failures`` distinct targets fail with 503 (the registry failing)."""
    for n in range(failures):
        probe.answers[f"fail-{n}"] = 503
        await subject.vetoes([rules.decide(f"quay.io/org/failing:fail-{n}")])


@pytest.mark.parametrize("status", [403, 400])
def test_a_target_s_own_failure_is_vetoed_and_remembered_briefly(rules: Rules, status: int) -> None:
    probe, clock, registry = ScriptedRegistry({"1.0": status}), Clock(), CollectorRegistry()
    subject = verifier(probe, clock, registry=registry, failure_ttl=10.0)

    async def scenario() -> list[dict[str, Reason]]:
        seen = [dict(await subject.vetoes([rules.decide(TAGGED)])) for _ in range(3)]
        clock.now += 11
        seen.append(dict(await subject.vetoes([rules.decide(TAGGED)])))
        return seen

    assert run(scenario()) == [{TAGGED: Reason.VERIFY_FAILED}] * 4
    assert probe.calls == ["quay/org/app/1.0", "quay/org/app/1.0"]  # once, then again after the TTL
    assert sample(registry, "ecr_ptc_webhook_verify_cache_hits_total", outcome="failed") == 2


def test_a_forbidden_repository_does_not_open_the_breaker_for_every_image(rules: Rules) -> None:
    probe = ScriptedRegistry({f"{n}.0": 403 for n in range(10)})
    subject = verifier(probe, failure_threshold=2)

    async def scenario() -> dict[str, Reason]:
        for n in range(10):
            await subject.vetoes([rules.decide(f"quay.io/org/forbidden:{n}.0")])
        return dict(await subject.vetoes([rules.decide("quay.io/org/allowed:ok")]))

    assert run(scenario()) == {}
    assert breaker(subject) is BreakerState.CLOSED


def test_an_open_breaker_vetoes_targets_that_resolved_before(rules: Rules) -> None:
    probe, clock, registry = ScriptedRegistry(), Clock(), CollectorRegistry()
    subject = verifier(probe, clock, registry=registry, failure_threshold=2, cool_down=30.0)

    async def scenario() -> list[dict[str, Reason]]:
        seen = [dict(await subject.vetoes([rules.decide(TAGGED)]))]  # resolved and cached
        await open_breaker(subject, probe, rules, 2)
        assert breaker(subject) is BreakerState.OPEN
        calls = len(probe.calls)
        seen.append(dict(await subject.vetoes([rules.decide(TAGGED)])))
        assert len(probe.calls) == calls  # vetoed without a lookup
        clock.now += 31
        seen.append(dict(await subject.vetoes([rules.decide(TAGGED)])))  # the probe: looked up again, resolves
        assert probe.calls[calls:] == ["quay/org/app/1.0"]
        return seen

    assert run(scenario()) == [{}, {TAGGED: Reason.VERIFY_FAILED}, {}]
    assert breaker(subject) is BreakerState.CLOSED
    assert sample(registry, "ecr_ptc_webhook_verify_vetoes_total", reason="verify-failed", cause="breaker") == 1


def test_a_lookup_started_before_the_breaker_opened_cannot_close_it(rules: Rules) -> None:
    probe, clock = ScriptedRegistry(), Clock()
    subject = verifier(probe, clock, failure_threshold=2, cool_down=30.0, budget=0.01)

    async def scenario() -> None:
        probe.gates["1.0"] = asyncio.Event()
        await subject.vetoes([rules.decide(TAGGED)])  # slow: left running past the budget
        await open_breaker(subject, probe, rules, 2)
        assert breaker(subject) is BreakerState.OPEN
        probe.gates["1.0"].set()  # the old lookup resolves late
        await asyncio.gather(*subject._in_flight.values())
        assert breaker(subject) is BreakerState.OPEN

    run(scenario())


def test_a_late_failure_does_not_restart_the_cool_down(rules: Rules) -> None:
    probe, clock = ScriptedRegistry({"1.0": 503}), Clock()
    subject = verifier(probe, clock, failure_threshold=2, cool_down=30.0, budget=0.01)

    async def scenario() -> None:
        probe.gates["1.0"] = asyncio.Event()
        await subject.vetoes([rules.decide(TAGGED)])
        await open_breaker(subject, probe, rules, 2)
        clock.now += 20
        probe.gates["1.0"].set()  # the old lookup fails late
        await asyncio.gather(*subject._in_flight.values())
        clock.now += 11  # 31 s after the breaker opened
        calls = len(probe.calls)
        assert await subject.vetoes([rules.decide(OTHER)]) == {}  # the probe runs, and resolves
        assert len(probe.calls) == calls + 1

    run(scenario())
    assert breaker(subject) is BreakerState.CLOSED


def test_a_late_answer_while_half_open_does_not_decide_for_the_probe(rules: Rules) -> None:
    probe, clock = ScriptedRegistry({"3.0": 503}), Clock()
    subject = verifier(probe, clock, failure_threshold=2, cool_down=30.0, budget=0.01)

    async def scenario() -> None:
        probe.gates["1.0"] = asyncio.Event()
        await subject.vetoes([rules.decide(TAGGED)])  # started while closed, left running
        old = subject._in_flight[rules.decide(TAGGED).result]
        await open_breaker(subject, probe, rules, 2)
        clock.now += 31
        probe.gates["3.0"] = asyncio.Event()
        await subject.vetoes([rules.decide(THIRD)])  # the probe, left running
        assert breaker(subject) is BreakerState.HALF_OPEN
        probe.gates["1.0"].set()  # the old lookup resolves: not the probe's answer
        await old
        assert breaker(subject) is BreakerState.HALF_OPEN
        probe.gates["3.0"].set()  # the probe fails
        await asyncio.gather(*subject._in_flight.values())
        assert breaker(subject) is BreakerState.OPEN

    run(scenario())


def test_warm_up_fetches_the_credential_and_never_raises() -> None:
    probe = ScriptedRegistry(warm_up_raises=RuntimeError("no token"))
    subject = verifier(probe)
    run(subject.warm_up())
    assert probe.warmed == 1
