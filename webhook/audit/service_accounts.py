"""Which ServiceAccounts pull with ``imagePullSecrets``: what a pod will have once the API server admits it.

The API server's ServiceAccount admission copies the account's ``imagePullSecrets`` into a pod that has none of its
own, before any webhook sees it. A workload's template does not show them, so ``audit`` reads the ServiceAccounts
(from the cluster, or from the same manifests) to decide as ``/mutate`` will. Pure: decoded objects in, answers out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from webhook.core.patch import has_pull_secrets, is_json_object
from webhook.core.workloads import LIST_SUFFIX

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from webhook.core.workloads import Workload

KIND: Final = "ServiceAccount"
DEFAULT_ACCOUNT: Final = "default"
"""The account a pod runs as when its spec names none."""


def service_accounts_in(document: object, kind: str | None = None) -> Iterator[Mapping[str, Any]]:
    """The ServiceAccount objects of a decoded document, descending into the ``items`` of List kinds."""
    if not is_json_object(document):
        return
    document_kind = document.get("kind", kind)
    if document_kind == KIND:
        yield document
        return
    items = document.get("items")
    if isinstance(document_kind, str) and document_kind.endswith(LIST_SUFFIX) and isinstance(items, list):
        item_kind = document_kind.removesuffix(LIST_SUFFIX) or None
        for item in items:
            yield from service_accounts_in(item, item_kind)


class ServiceAccounts:
    """ServiceAccounts seen so far, by (namespace, name), and whether each has ``imagePullSecrets``."""

    def __init__(self) -> None:
        """Start with none known."""
        self._pull_secrets: dict[tuple[str | None, str], bool] = {}

    def __len__(self) -> int:
        """How many accounts are known."""
        return len(self._pull_secrets)

    def add(self, account: Mapping[str, Any]) -> None:
        """Record one ServiceAccount object (anything without a name is passed over)."""
        metadata = account.get("metadata")
        if not is_json_object(metadata) or not isinstance(metadata.get("name"), str):
            return
        namespace = metadata.get("namespace")
        key = (namespace if isinstance(namespace, str) else None, metadata["name"])
        self._pull_secrets[key] = has_pull_secrets(account)

    def pull_secrets(self, workload: Workload) -> bool | None:
        """Whether the workload's pods will pull with secrets; ``None`` when that depends on an account not known here.

        The pod spec's own ``imagePullSecrets`` first; without them, its ServiceAccount's.
        """
        if has_pull_secrets(workload.spec):
            return True
        return self._pull_secrets.get((workload.namespace, account_of(workload)))


def account_of(workload: Workload) -> str:
    """The ServiceAccount a workload's pods run as (``serviceAccountName``, its deprecated alias, or ``default``)."""
    for key in ("serviceAccountName", "serviceAccount"):
        name = workload.spec.get(key)
        if isinstance(name, str) and name:
            return name
    return DEFAULT_ACCOUNT


def account_label(workload: Workload) -> str:
    """``namespace/name`` of the account a workload's pods run as (``-`` for a workload without a namespace)."""
    return f"{workload.namespace or '-'}/{account_of(workload)}"


def brief(labels: Iterable[str], most: int = 5) -> str:
    """The first ``most`` labels in order, then ``and others`` if there are more: for one line of a report."""
    ordered = sorted(labels)
    return ", ".join(ordered[:most]) + (" and others" if len(ordered) > most else "")
