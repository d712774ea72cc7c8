"""Facts about registries, as data: the tier table, Docker Hub aliases, ECR host patterns, unsupported upstreams.

Code reads these tables; it never repeats a host name, account or prefix of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

TierKind = Literal["default", "opt-in"]
CredentialKind = Literal["none", "secret", "role"]
"""What ECR needs to reach an upstream: nothing, a Secrets Manager secret (``credentialArn``), or an IAM role it
assumes (``customRoleArn``, for an ECR registry of another account)."""


@dataclass(frozen=True, slots=True)
class Tier:
    """One upstream registry that an ECR pull-through cache rule can front."""

    name: str
    """The tier's name in the config (`tiers: [quay, k8s]`) and in metrics."""
    hosts: tuple[str, ...]
    """Registry hosts (lowercase) whose images this tier rewrites."""
    default_prefix: str
    """ECR repository prefix of the cache rule, unless the config's `prefixes` says otherwise."""
    kind: TierKind
    """`default` tiers need no credentials; `opt-in` tiers need a Secrets Manager secret."""
    upstream_registry: str
    """ECR's `upstreamRegistry` enum value for CreatePullThroughCacheRule."""
    upstream_registry_url: str
    """ECR's `upstreamRegistryUrl` for CreatePullThroughCacheRule."""
    official_namespace: str | None = None
    """Namespace of one-component names (`nginx` is `library/nginx` on Docker Hub)."""
    private_images: bool = True
    """Whether the upstream can hold private images (registry.k8s.io cannot): with ``pullSecrets: keep``, a pod with
    ``imagePullSecrets`` keeps this tier's images on their upstream."""

    credential: CredentialKind | None = None
    """What ECR needs to reach the upstream; ``None``: none for default tiers, a secret for opt-in ones."""
    user_defined: bool = False
    """Declared in the config's ``upstreams`` (its host is the user's own) rather than built in."""

    @property
    def canonical_host(self) -> str:
        """The host that names this tier's images in patterns and reports (`docker.io` for all of Docker Hub's)."""
        return self.hosts[0]

    def repository_path(self, path: str) -> str:
        """``path`` as the tier names it: Docker Hub's one-component names are ``library/...``."""
        if self.official_namespace is not None and "/" not in path:
            return f"{self.official_namespace}/{path}"
        return path

    @property
    def credential_kind(self) -> CredentialKind:
        """What ECR needs to reach this tier's upstream."""
        if self.credential is not None:
            return self.credential
        return "secret" if self.kind == "opt-in" else "none"

    @property
    def needs_credentials(self) -> bool:
        """Whether ECR requires a Secrets Manager credential for this tier's cache rule."""
        return self.credential_kind == "secret"


TIERS: Final[tuple[Tier, ...]] = (
    Tier("quay", ("quay.io",), "quay", "default", "quay", "quay.io"),
    Tier("k8s", ("registry.k8s.io",), "k8s", "default", "k8s", "registry.k8s.io", private_images=False),
    Tier(
        "docker-hub",
        ("docker.io", "index.docker.io", "registry-1.docker.io"),
        "docker-hub",
        "opt-in",
        "docker-hub",
        "registry-1.docker.io",
        official_namespace="library",
    ),
    Tier("ghcr", ("ghcr.io",), "ghcr", "opt-in", "github-container-registry", "ghcr.io"),
    Tier(
        "gitlab",
        ("registry.gitlab.com",),
        "gitlab",
        "opt-in",
        "gitlab-container-registry",
        "registry.gitlab.com",
    ),
    Tier("chainguard", ("cgr.dev",), "chainguard", "opt-in", "chainguard", "cgr.dev"),
)
"""Every built-in tier, in the order users read them; the config's ``upstreams`` add tiers of :data:`UPSTREAM_KINDS`."""

TIERS_BY_NAME: Final[dict[str, Tier]] = {tier.name: tier for tier in TIERS}
TIER_BY_HOST: Final[dict[str, Tier]] = {host: tier for tier in TIERS for host in tier.hosts}
DEFAULT_TIERS: Final[tuple[str, ...]] = tuple(tier.name for tier in TIERS if tier.kind == "default")


@dataclass(frozen=True, slots=True)
class UpstreamKind:
    """An upstream ECR can cache whose host is the user's own (``upstreams:`` in the config): one row per kind.

    A host is one of ``host_forms`` with each ``{field}`` matching ``fields[field]``; the tier claims every form of the
    matched registry (an ECR registry answers on its FIPS and dual-stack hosts too), and the first form is the
    ``upstreamRegistryUrl`` ECR is given.
    """

    upstream_registry: str
    """ECR's ``upstreamRegistry`` enum value."""
    host_forms: tuple[str, ...]
    """Host templates, ``{field}`` for the parts that vary; the first is the one ECR's rule names."""
    fields: tuple[tuple[str, str], ...]
    """Each field of the templates and the regular expression its value matches."""
    credential: CredentialKind
    """What ECR needs to reach such an upstream (``role``: only when the upstream is in another account)."""
    shape: str
    """The host's shape in words, for error messages."""

    @property
    def patterns(self) -> tuple[str, ...]:
        """One regular expression per host form, with a named group per field (the chart's schema uses them)."""
        patterns = []
        for form in self.host_forms:
            pattern = re.escape(form)
            for name, value in self.fields:
                pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>{value})")
            patterns.append(pattern)
        return tuple(patterns)

    def match(self, host: str) -> dict[str, str] | None:
        """The fields of ``host`` (lowercase) if it is one of this kind's host forms, else ``None``."""
        for pattern in self.patterns:
            found = re.fullmatch(pattern, host, re.ASCII)
            if found is not None:
                return found.groupdict()
        return None

    def hosts(self, fields: dict[str, str]) -> tuple[str, ...]:
        """Every host of the registry that ``fields`` name, the rule's ``upstreamRegistryUrl`` first."""
        return tuple(form.format(**fields) for form in self.host_forms)


AWS_REGION: Final = r"[a-z]{2}(?:-[a-z]+)+-[0-9]+"
"""An AWS region name (``us-east-1``, ``us-gov-west-1``)."""
UPSTREAM_KINDS: Final[dict[str, UpstreamKind]] = {
    kind.upstream_registry: kind
    for kind in (
        UpstreamKind(
            "azure-container-registry",
            ("{name}.azurecr.io",),
            (("name", r"[a-z0-9]{5,50}"),),
            "secret",
            "<name>.azurecr.io, the registry name 5-50 letters and digits (Azure's rule), e.g. acmecorp.azurecr.io",
        ),
        UpstreamKind(
            "ecr",
            (
                "{account}.dkr.ecr.{region}.amazonaws.com",
                "{account}.dkr.ecr-fips.{region}.amazonaws.com",
                "{account}.dkr-ecr.{region}.on.aws",
                "{account}.dkr-ecr-fips.{region}.on.aws",
            ),
            (("account", "[0-9]{12}"), ("region", AWS_REGION)),
            "role",
            "<account>.dkr.ecr.<region>.amazonaws.com (or its FIPS dkr.ecr-fips or dual-stack dkr-ecr[-fips] "
            "<region>.on.aws form), e.g. 111122223333.dkr.ecr.us-east-1.amazonaws.com",
        ),
    )
}
"""Upstream kinds a user-defined tier may name in ``upstreams[].upstreamRegistry``: adding one is adding a row."""

DOCKER_HUB_DOMAIN: Final = "docker.io"
"""The domain distribution/reference gives names without one."""
DOCKER_HUB_LEGACY_DOMAIN: Final = "index.docker.io"
"""Normalised to `docker.io` by distribution/reference."""
DOCKER_HUB_OFFICIAL_NAMESPACE: Final = "library"
LOCALHOST: Final = "localhost"

PUBLIC_ECR_HOST: Final = "public.ecr.aws"

ECR_HOST_PATTERN: Final = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\."
    r"(?:amazonaws\.com(?:\.cn)?|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov)",
    re.ASCII,
)
"""Private ECR hosts: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, dual-stack `dkr-ecr.<region>.on.aws`."""

EKS_ADDON_DEFAULT_ACCOUNT: Final = "602401143452"
"""The account that serves EKS add-on images (CoreDNS, kube-proxy, VPC CNI...) in every region not listed below."""
EKS_ADDON_ACCOUNT_BY_REGION: Final[dict[str, str]] = {
    "af-south-1": "877085696533",
    "ap-east-1": "800184023465",
    "ap-east-2": "533267051163",
    "ap-south-2": "900889452093",
    "ap-southeast-3": "296578399912",
    "ap-southeast-4": "491585149902",
    "ap-southeast-5": "151610086707",
    "ap-southeast-6": "333609536671",
    "ap-southeast-7": "121268973566",
    "ca-west-1": "761377655185",
    "eu-central-2": "900612956339",
    "eu-south-1": "590381155156",
    "eu-south-2": "455263428931",
    "il-central-1": "066635153087",
    "me-central-1": "759879836304",
    "me-south-1": "558608220178",
    "mx-central-1": "730335286997",
    "cn-north-1": "918309763551",
    "cn-northwest-1": "961992271922",
    "us-gov-east-1": "151742754352",
    "us-gov-west-1": "013241004608",
}
"""Regions whose EKS add-on images come from an account of their own (AWS's page "View Amazon container image
registries for Amazon EKS add-ons"). Matching is by account, whatever region a host names: every private ECR host is
skipped anyway, so the table only decides whether users see ``eks-addon-registry`` or ``ecr-registry``."""
EKS_ADDON_ACCOUNTS: Final[frozenset[str]] = frozenset(
    {EKS_ADDON_DEFAULT_ACCOUNT, *EKS_ADDON_ACCOUNT_BY_REGION.values()}
)
"""AWS accounts that serve EKS add-on images: AWS-owned, never cached."""

UNSUPPORTED_UPSTREAM_HOSTS: Final[frozenset[str]] = frozenset({"gcr.io", "k8s.gcr.io"})
UNSUPPORTED_UPSTREAM_SUFFIXES: Final[tuple[str, ...]] = (".gcr.io", ".pkg.dev")
"""Google Container Registry and Artifact Registry: ECR pull-through cache cannot front them."""

ECR_REPOSITORY_NAME_MAX: Final = 256
"""ECR's limit on a repository name (`prefix/path`)."""
REFERENCE_PATH_MAX: Final = 255
"""distribution/reference's limit on a repository path."""

ECR_PREFIX_PATTERN: Final = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*", re.ASCII
)
"""ECR's `ecrRepositoryPrefix` pattern, without its trailing-slash and `ROOT` forms (we always name a prefix)."""
ECR_PREFIX_MIN: Final = 2
ECR_PREFIX_MAX: Final = 30
