#!/usr/bin/env bash
# End to end on a real cluster: install the chart, opt two namespaces in (rewrite, dry run), create pods, check.
#
#   REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com bash hack/e2e.sh                    # a new kind cluster
#   REGISTRY=... IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/ecr-ptc-webhook:0.1.0 \
#     CLUSTER=current bash hack/e2e.sh                                                        # kubectl's context (EKS)
#
# Needs helm and kubectl; for kind also docker and kind (the image is built here and loaded into the nodes). On EKS
# push IMAGE first; the rewritten pod must also start there (node IAM, security group: see the chart README). On kind
# only the rewrite is checked: kind's nodes have no ECR credentials to pull the rewritten image.
# KEEP=1 leaves the namespaces (and the kind cluster) for a look around.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${REGISTRY:?set REGISTRY to your ECR registry host, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com}"
CLUSTER=${CLUSTER:-kind}
PREFIX=${PREFIX:-quay} # the quay tier's pull-through cache prefix
VERSION=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' charts/ecr-ptc-webhook/Chart.yaml)
IMAGE=${IMAGE:-ecr-ptc-webhook:$VERSION}
UPSTREAM=quay.io/prometheus/node-exporter:v1.8.2
CACHED=$REGISTRY/$PREFIX/prometheus/node-exporter:v1.8.2

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
image_of() { kubectl -n "$1" get pod "$2" -o jsonpath='{.spec.containers[0].image}'; }

cleanup() {
  [[ ${KEEP:-0} == 1 ]] && return
  kubectl delete namespace e2e-rewrite e2e-dry-run --ignore-not-found --wait=false
  helm uninstall ecr-ptc-webhook --namespace ecr-ptc-webhook || true
  if [[ $CLUSTER == kind ]]; then kind delete cluster --name ecr-ptc-webhook-e2e; fi
}
trap cleanup EXIT

if [[ $CLUSTER == kind ]]; then
  step "kind cluster and the image built from this checkout"
  kind get clusters | grep -qx ecr-ptc-webhook-e2e || kind create cluster --name ecr-ptc-webhook-e2e --wait 120s
  docker build --tag "$IMAGE" .
  kind load docker-image "$IMAGE" --name ecr-ptc-webhook-e2e
fi

step "install the chart ($IMAGE) and helm test"
helm upgrade --install ecr-ptc-webhook charts/ecr-ptc-webhook \
  --namespace ecr-ptc-webhook --create-namespace \
  --set registry="$REGISTRY" --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --wait --timeout 5m
helm test ecr-ptc-webhook --namespace ecr-ptc-webhook

step "opt namespaces in: e2e-rewrite (enabled), e2e-dry-run (dry-run)"
kubectl create namespace e2e-rewrite --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace e2e-dry-run --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace e2e-rewrite ecr-ptc-webhook/rewrite=enabled --overwrite
kubectl label namespace e2e-dry-run ecr-ptc-webhook/rewrite=dry-run --overwrite

step "enabled: the image is rewritten to the cache"
kubectl -n e2e-rewrite run node-exporter --image="$UPSTREAM" --restart=Never
[[ $(image_of e2e-rewrite node-exporter) == "$CACHED" ]] || fail "e2e-rewrite: $(image_of e2e-rewrite node-exporter)"
if [[ $CLUSTER != kind ]]; then
  kubectl -n e2e-rewrite wait pod/node-exporter --for=condition=Ready --timeout=180s
fi

step "enabled, pod opted out: unchanged"
kubectl -n e2e-rewrite run opted-out --image="$UPSTREAM" --restart=Never \
  --annotations=ecr-ptc-webhook/rewrite=disabled
[[ $(image_of e2e-rewrite opted-out) == "$UPSTREAM" ]] || fail "opted-out: $(image_of e2e-rewrite opted-out)"

step "dry-run: unchanged, with a warning naming the cached image"
warnings=$(kubectl -n e2e-dry-run run node-exporter --image="$UPSTREAM" --restart=Never 2>&1 >/dev/null)
echo "$warnings"
grep -qF "$CACHED" <<<"$warnings" || fail "e2e-dry-run: no warning naming $CACHED"
[[ $(image_of e2e-dry-run node-exporter) == "$UPSTREAM" ]] || fail "e2e-dry-run: $(image_of e2e-dry-run node-exporter)"

step "PASS"
