"""Write the chart's Grafana dashboard (charts/ecr-ptc-webhook/dashboards/ecr-ptc-webhook.json) from the panels below.

`.venv/bin/python hack/dashboard.py` rewrites the file; `--check` exits 1 when the committed file differs from what
this script makes (tests/integration/test_dashboard.py runs it). Edit the panels here, never the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

OUTPUT: Final = (
    Path(__file__).resolve().parents[1] / "charts" / "ecr-ptc-webhook" / "dashboards" / "ecr-ptc-webhook.json"
)
UID: Final = "ecr-ptc-webhook"
TITLE: Final = "ECR pull-through cache webhook"
SCHEMA_VERSION: Final = 39  # Grafana 10.4 and 11
GRID_WIDTH: Final = 24
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR: Final = 'namespace=~"$namespace", job=~"$job", pod=~"$pod"'
RATE: Final = "[$__rate_interval]"
DAY: Final = 86_400

Json = dict[str, Any]
PanelKind = Literal["timeseries", "stat", "table"]


def series(metric: str, matchers: str = "") -> str:
    """``metric`` limited to the dashboard's namespace, job and pod, and to ``matchers`` (PromQL label matchers)."""
    return f"{metric}{{{SELECTOR}{', ' + matchers if matchers else ''}}}"


def rate(metric: str, matchers: str = "") -> str:
    """Per-second rate of a counter over Grafana's rate interval."""
    return f"rate({series(metric, matchers)}{RATE})"


def quantile(q: float, histogram: str, by: str = "", matchers: str = "") -> str:
    """The ``q`` quantile of ``histogram`` (its name without ``_bucket``), summed over pods, per ``by`` labels."""
    grouping = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) ({rate(histogram + '_bucket', matchers)}))"


@dataclass(frozen=True)
class Query:
    """One PromQL target and its legend (``__auto``: Grafana names the series)."""

    expr: str
    legend: str = "__auto"
    table: bool = False  # an instant query shown as a table


@dataclass(frozen=True)
class Panel:
    """A panel; its place on the grid is given by :func:`layout`."""

    title: str
    description: str
    queries: tuple[Query, ...]
    kind: PanelKind = "timeseries"
    unit: str = "short"
    width: int = 8
    height: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[tuple[str, str, str], ...] = ()  # value, text, colour
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


def ratio(part: str, whole: str) -> str:
    """``part`` over ``whole``, each summed over pods."""
    return f"sum({part}) / sum({whole})"


def tile(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),),
) -> Panel:
    """A small stat panel of one query, for the overview row (eight to a line)."""
    return Panel(title, description, (Query(expr),), "stat", unit, 3, 4, thresholds)


# Label matchers (outside the f-strings: Python 3.11 does not nest quotes in them).
REWRITE: Final = 'action="rewrite"'
SKIP: Final = 'action="skip"'
HIT: Final = 'result="hit"'
REPLICAS: Final = ((None, "red"), (1, "orange"), (2, "green"))
HIT_RATIO: Final = ratio(rate("ecr_ptc_webhook_review_cache_total", HIT), rate("ecr_ptc_webhook_review_cache_total"))

ROWS: Final = (
    Row(
        "Overview",
        (
            tile(
                "Replicas scraped",
                "Webhook processes Prometheus scrapes (one per pod). Fewer than the Deployment's replicas: pods are "
                "down or not scraped, and with failurePolicy Ignore pods are admitted unchanged.",
                f"count({series('ecr_ptc_webhook_info')})",
                thresholds=REPLICAS,
            ),
            tile(
                "Replicas ready",
                "Scraped replicas that report ready (/readyz 200), so in the Service. Fewer than scraped: the "
                "Readiness row says why; none ready fires EcrPtcWebhookNoReplicaReady.",
                f"sum({series('ecr_ptc_webhook_ready')})",
                thresholds=REPLICAS,
            ),
            tile(
                "Admissions",
                "Admission requests answered per second (/mutate and /audit, every status).",
                f"sum({rate('ecr_ptc_webhook_requests_total')})",
                unit="reqps",
            ),
            tile(
                "Images rewritten",
                "Share of image decisions that rewrite to the cache (mutate and audit).",
                ratio(rate("ecr_ptc_webhook_decisions_total", REWRITE), rate("ecr_ptc_webhook_decisions_total")),
                unit="percentunit",
            ),
            tile(
                "Failing open",
                "Share of admission requests whose pod kept its images because of a failure, every cause of "
                "failed_open_total (408 body deadlines included). EcrPtcWebhookFailingOpen fires over 1% for one "
                "cause.",
                ratio(rate("ecr_ptc_webhook_failed_open_total"), rate("ecr_ptc_webhook_requests_total")),
                unit="percentunit",
                thresholds=((None, "green"), (0.001, "orange"), (0.01, "red")),
            ),
            tile(
                "Answer-cache hit ratio",
                "Pod reviews answered from the per-template answer cache.",
                HIT_RATIO,
                unit="percentunit",
            ),
            tile(
                "Certificate expires in",
                "Time until the first serving certificate of any replica expires. Red under 7 days, orange under 14.",
                f"min({series('ecr_ptc_webhook_certificate_expiry_timestamp_seconds')}) - time()",
                unit="dtdurations",
                thresholds=((None, "red"), (7 * DAY, "orange"), (14 * DAY, "green")),
            ),
            tile(
                "Certificate reload failing",
                "Replicas whose new certificate files do not load (they keep serving the older certificate). "
                "EcrPtcWebhookCertificateRotationFailing fires after 10 minutes.",
                f"sum({series('ecr_ptc_webhook_certificate_reload_failing')})",
                thresholds=((None, "green"), (1, "red")),
            ),
        ),
    ),
    Row(
        "Readiness",
        (
            Panel(
                "Replicas ready",
                "Replicas that report ready (/readyz 200) against those scraped. A replica not ready is out of the "
                "Service; with none ready the API server cannot call the webhook.",
                (
                    Query(f"sum({series('ecr_ptc_webhook_ready')})", "ready"),
                    Query(f"count({series('ecr_ptc_webhook_ready')})", "scraped"),
                ),
            ),
            Panel(
                "Replicas not ready, by reason",
                "Replicas giving each reason: no_certificate, certificate_expired, rules_not_read (rules: discover "
                "has not read the cache's rules yet), shutting_down. A replica may give several.",
                (
                    Query(
                        f"sum by (reason) ({series('ecr_ptc_webhook_not_ready')} == 1)",
                        "{{reason}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "Not ready now, by pod",
                "The reasons each replica gives at the end of the time range. Empty when every scraped replica is "
                "ready; see the runbook of EcrPtcWebhookNoReplicaReady for each reason.",
                (
                    Query(
                        f"max by (pod, reason) ({series('ecr_ptc_webhook_not_ready')} == 1)",
                        table=True,
                    ),
                ),
                kind="table",
            ),
        ),
    ),
    Row(
        "Decisions",
        (
            Panel(
                "Rewrites by tier",
                "Images rewritten to the cache per second, by tier (mode audit: would be rewritten in dry-run).",
                (
                    Query(
                        f"sum by (tier, mode) ({rate('ecr_ptc_webhook_decisions_total', REWRITE)})",
                        "{{tier}} ({{mode}})",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "Skips by reason",
                "Images left on their upstream per second, by reason (see the README's reason codes).",
                (
                    Query(
                        f"sum by (reason) ({rate('ecr_ptc_webhook_decisions_total', SKIP)})",
                        "{{reason}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "Skips by tier",
                "Images left on their upstream per second, by tier (empty tier: the registry has none).",
                (
                    Query(
                        f"sum by (tier) ({rate('ecr_ptc_webhook_decisions_total', SKIP)})",
                        "{{tier}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "Decisions over the time range, by tier and reason",
                "Image decisions counted over the dashboard's time range.",
                (
                    Query(
                        "sum by (tier, reason, action, mode) "
                        f"(increase({series('ecr_ptc_webhook_decisions_total')}[$__range]))",
                        table=True,
                    ),
                ),
                kind="table",
                width=24,
            ),
        ),
    ),
    Row(
        "Failing open and errors",
        (
            Panel(
                "Failing open, by cause",
                "Share of admission requests whose pod kept its images, per cause: internal (an unexpected error), "
                "too_large (over 2,000 containers and volumes), verify_failed and verify_deadline (rewrites "
                "dropped), body_deadline (answered 408, the API server admits the pod unchanged).",
                (
                    Query(
                        f"sum by (cause) ({rate('ecr_ptc_webhook_failed_open_total')})"
                        f" / ignoring (cause) group_left sum({rate('ecr_ptc_webhook_requests_total')})",
                        "{{cause}}",
                    ),
                ),
                unit="percentunit",
                width=6,
            ),
            Panel(
                "Answers without a full decision, by kind",
                "errors_total: bad_request (refused before deciding: a 4xx, including the 408 of a body that came "
                "too late, which failed open), internal, too_large and verify. See failing open, by cause.",
                (Query(f"sum by (kind) ({rate('ecr_ptc_webhook_errors_total')})", "{{kind}}"),),
                unit="reqps",
                width=6,
            ),
            Panel(
                "Requests by path and code",
                "Admission requests per second, by path and HTTP status.",
                (Query(f"sum by (path, code) ({rate('ecr_ptc_webhook_requests_total')})", "{{path}} {{code}}"),),
                unit="reqps",
                width=6,
                stacked=True,
            ),
            Panel(
                "Connections shed",
                "Connections refused over --max-concurrency per second: their requests were answered 503.",
                (Query(f"sum by (pod) ({rate('ecr_ptc_webhook_connections_shed_total')})", "{{pod}}"),),
                unit="cps",
                width=6,
            ),
        ),
    ),
    Row(
        "Latency",
        (
            Panel(
                "Admission latency",
                "Time to answer an admission request, body read included. The API server gives up after the "
                "webhook's timeoutSeconds (3 s in the chart).",
                (
                    Query(quantile(0.5, "ecr_ptc_webhook_request_duration_seconds"), "p50"),
                    Query(quantile(0.9, "ecr_ptc_webhook_request_duration_seconds"), "p90"),
                    Query(quantile(0.99, "ecr_ptc_webhook_request_duration_seconds"), "p99"),
                    Query(
                        f"sum({rate('ecr_ptc_webhook_request_duration_seconds_sum')})"
                        f" / sum({rate('ecr_ptc_webhook_request_duration_seconds_count')})",
                        "mean",
                    ),
                ),
                unit="s",
                width=12,
            ),
            Panel(
                "p99 admission latency by path",
                "99th percentile per endpoint: /mutate rewrites, /audit answers dry-run namespaces.",
                (Query(quantile(0.99, "ecr_ptc_webhook_request_duration_seconds", by="path"), "{{path}}"),),
                unit="s",
                width=12,
            ),
        ),
    ),
    Row(
        "Answer cache",
        (
            Panel(
                "Answer-cache hit ratio",
                "Pod reviews answered from the per-template cache; rollouts of many replicas should be mostly hits.",
                (Query(HIT_RATIO, "hit ratio"),),
                unit="percentunit",
                width=12,
            ),
            Panel(
                "Answer-cache lookups by result",
                "Hits and misses per second.",
                (Query(f"sum by (result) ({rate('ecr_ptc_webhook_review_cache_total')})", "{{result}}"),),
                unit="ops",
                width=12,
                stacked=True,
            ),
        ),
    ),
    Row(
        "Rules (rules: discover)",
        (
            Panel(
                "Rule drift",
                "Differences between the config and the cache's pull-through cache rules: each tier listed is not "
                "rewritten. Empty when the rules match, or without rules: discover.",
                (Query(f"max by (tier, kind, prefix) ({series('ecr_ptc_webhook_rules_drift')})", table=True),),
                kind="table",
            ),
            Panel(
                "Tiers rewritten",
                "1 while every replica rewrites the tier (its rule exists as expected), 0 when any does not.",
                (Query(f"min by (tier) ({series('ecr_ptc_webhook_tier_available')})", "{{tier}}"),),
                kind="stat",
                mappings=(("0", "not rewritten", "red"), ("1", "rewritten", "green")),
            ),
            Panel(
                "Since the last successful rule read",
                "Time since the replica that read the cache's rules longest ago last succeeded (every "
                "rulesRefreshSeconds, 300 s by default; a failed read keeps the last known rules).",
                (Query(f"time() - min({series('ecr_ptc_webhook_discovery_last_success_timestamp_seconds')} > 0)"),),
                kind="stat",
                unit="dtdurations",
                thresholds=((None, "green"), (900, "orange"), (3600, "red")),
            ),
            Panel(
                "Discovered rules",
                "The pull-through cache rules read from ECR.",
                (
                    Query(
                        f"max by (tier, upstream, prefix) ({series('ecr_ptc_webhook_discovered_rules')})",
                        table=True,
                    ),
                ),
                kind="table",
                width=12,
            ),
            Panel(
                "Rule read failures",
                "Reads of the cache's rules that failed, per pod (the last known rules stay in force).",
                (
                    Query(
                        f"sum by (pod) (increase({series('ecr_ptc_webhook_discovery_failures_total')}{RATE}))",
                        "{{pod}}",
                    ),
                ),
                width=12,
            ),
        ),
    ),
    Row(
        "Verify (verify: true)",
        (
            Panel(
                "Verify lookups by outcome",
                "Registry lookups of rewritten references (resolved, missing, failed), and verifications answered "
                "from the verifier's cache.",
                (
                    Query(f"sum by (outcome) ({rate('ecr_ptc_webhook_verify_lookups_total')})", "lookup {{outcome}}"),
                    Query(
                        f"sum by (outcome) ({rate('ecr_ptc_webhook_verify_cache_hits_total')})",
                        "cache hit {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Vetoed rewrites by cause",
                "Rewrites cancelled by verification (the original image kept), by reason and cause: missing, "
                "failed, budget, breaker, overload.",
                (
                    Query(
                        f"sum by (reason, cause) ({rate('ecr_ptc_webhook_verify_vetoes_total')})",
                        "{{reason}} ({{cause}})",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "Verify lookup latency",
                "Time one registry lookup took, those past their admission's budget included.",
                (
                    Query(quantile(0.5, "ecr_ptc_webhook_verify_lookup_duration_seconds"), "p50"),
                    Query(quantile(0.99, "ecr_ptc_webhook_verify_lookup_duration_seconds"), "p99"),
                ),
                unit="s",
            ),
            Panel(
                "Verify breaker",
                "Open on any replica: lookups are stopped because the registry is failing, and rewrites are vetoed.",
                (Query(f"max({series('ecr_ptc_webhook_verify_breaker_open')})"),),
                kind="stat",
                width=12,
                height=4,
                mappings=(("0", "closed", "green"), ("1", "open", "red")),
            ),
            Panel(
                "Lookups in flight",
                "Registry lookups running now, all replicas.",
                (Query(f"sum({series('ecr_ptc_webhook_verify_lookups_in_flight')})"),),
                kind="stat",
                width=12,
                height=4,
            ),
        ),
    ),
    Row(
        "Certificate and logs",
        (
            Panel(
                "Time until the serving certificate expires",
                "Per pod; a rotated certificate shows as a jump up. Reloaded from the mounted Secret without restart.",
                (
                    Query(
                        f"min by (pod) ({series('ecr_ptc_webhook_certificate_expiry_timestamp_seconds')}) - time()",
                        "{{pod}}",
                    ),
                ),
                unit="s",
                width=6,
            ),
            Panel(
                "Certificate reloads by result",
                "failure: a changed certificate that does not match its key, has expired or is not valid yet; the old "
                "one keeps serving.",
                (
                    Query(
                        f"sum by (result) (increase({series('ecr_ptc_webhook_certificate_reloads_total')}{RATE}))",
                        "{{result}}",
                    ),
                ),
                width=6,
            ),
            Panel(
                "Certificate reload failing",
                "Per pod: failing while the certificate files mounted from the Secret do not load (a key that does "
                "not match, a certificate expired or not valid yet, unreadable files); the older one keeps serving.",
                (Query(f"max by (pod) ({series('ecr_ptc_webhook_certificate_reload_failing')})", "{{pod}}"),),
                kind="stat",
                width=6,
                mappings=(("0", "ok", "green"), ("1", "failing", "red")),
            ),
            Panel(
                "Decision log lines dropped",
                "Log lines (decisions included) dropped per second because stderr's reader fell behind; admissions "
                "are never held up by it.",
                (Query(f"sum by (pod) ({rate('ecr_ptc_webhook_decision_log_lines_dropped_total')})", "{{pod}}"),),
                width=6,
            ),
        ),
    ),
)


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def _mappings(mappings: tuple[tuple[str, str, str], ...]) -> list[Json]:
    if not mappings:
        return []
    options = {
        value: {"text": text, "color": color, "index": index} for index, (value, text, color) in enumerate(mappings)
    }
    return [{"type": "value", "options": options}]


def _target(query: Query, ref_id: str) -> Json:
    target: Json = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": query.expr,
        "legendFormat": query.legend,
        "refId": ref_id,
    }
    if query.table:
        target |= {"format": "table", "instant": True, "range": False}
    else:
        target |= {"range": True}
    return target


def _options(panel: Panel) -> Json:
    if panel.kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    if panel.kind == "table":
        return {"cellHeight": "sm", "showHeader": True}
    return {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _defaults(panel: Panel) -> Json:
    defaults: Json = {
        "mappings": _mappings(panel.mappings),
        "thresholds": _thresholds(panel.thresholds),
        "unit": panel.unit,
    }
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 20 if panel.stacked else 0,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if panel.stacked else "none"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
    return defaults


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    rendered: Json = {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {"defaults": _defaults(panel), "overrides": []},
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "options": _options(panel),
        "targets": [_target(query, chr(ord("A") + index)) for index, query in enumerate(panel.queries)],
        "title": panel.title,
        "type": panel.kind,
    }
    if panel.kind == "table":
        rendered["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return rendered


def layout(rows: tuple[Row, ...]) -> list[Json]:
    """Rows one under the other, each row's panels left to right, wrapping at the grid's width."""
    panels: list[Json] = []
    y = 0
    for row in rows:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "id": len(panels) + 1,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _variable(name: str, label: str, query: str, *, include_all: bool) -> Json:
    variable: Json = {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "hide": 0,
        "includeAll": include_all,
        "label": label,
        "multi": include_all,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


def templating() -> list[Json]:
    """The data source, then namespace, job and pod, each narrowed by the ones before it."""
    return [
        {
            "current": {},
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "type": "datasource",
        },
        _variable("namespace", "Namespace", "label_values(ecr_ptc_webhook_info, namespace)", include_all=False),
        _variable("job", "Job", 'label_values(ecr_ptc_webhook_info{namespace=~"$namespace"}, job)', include_all=True),
        _variable(
            "pod",
            "Pod",
            'label_values(ecr_ptc_webhook_info{namespace=~"$namespace", job=~"$job"}, pod)',
            include_all=True,
        ),
    ]


def dashboard() -> Json:
    """The whole dashboard, as Grafana's JSON model."""
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Rewrites, readiness, fail-open, latency, answer cache, rules, verify and certificate of "
        "ecr-ptc-webhook (generated by hack/dashboard.py).",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout(ROWS),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["ecr-ptc-webhook", "admission-webhook"],
        "templating": {"list": templating()},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": TITLE,
        "uid": UID,
        "version": 1,
    }


def render() -> str:
    """The file's content: indented JSON with sorted keys and a final newline, so diffs stay readable."""
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard, or with ``--check`` say whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")
    args = parser.parse_args(argv)
    content = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != content:
            print(f"{OUTPUT} is stale: run `.venv/bin/python hack/dashboard.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(content, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
