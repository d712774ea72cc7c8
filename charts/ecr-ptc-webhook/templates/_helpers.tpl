{{/* Names, labels and the serving certificate material shared by the templates. */}}

{{- define "ecr-ptc-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or just the release when it already contains the chart name. */}}
{{- define "ecr-ptc-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ecr-ptc-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release, so kept apart from the full set (they select pods). */}}
{{- define "ecr-ptc-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecr-ptc-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "ecr-ptc-webhook.labels" -}}
{{ include "ecr-ptc-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "ecr-ptc-webhook.chart" . }}
{{- end }}

{{- define "ecr-ptc-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecr-ptc-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecr-ptc-webhook.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The DNS name the API server calls: <service>.<namespace>.svc. */}}
{{- define "ecr-ptc-webhook.serviceHost" -}}
{{- printf "%s.%s.svc" (include "ecr-ptc-webhook.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Every name the serving certificate is valid for. */}}
{{- define "ecr-ptc-webhook.dnsNames" -}}
{{- $svc := include "ecr-ptc-webhook.fullname" . }}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end }}

{{/* The Secret with the serving certificate (tls.crt, tls.key) that the pods mount. */}}
{{- define "ecr-ptc-webhook.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "ecr-ptc-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{/* The self-managed CA's Secret: never mounted, only read back on upgrade. */}}
{{- define "ecr-ptc-webhook.caSecretName" -}}
{{- printf "%s-ca" (include "ecr-ptc-webhook.fullname" .) }}
{{- end }}

{{/*
Self-managed certificates, as YAML {caCert, caKey, tlsCert, tlsKey} (PEM). The CA comes from the existing CA
Secret when there is one (helm install/upgrade against a cluster), so the caBundle survives upgrades; otherwise
(first install, helm template) a new one is generated. The serving certificate is issued anew from that CA on every
render. Generated once per render and cached, so the Secret and the webhook configuration agree.
*/}}
{{- define "ecr-ptc-webhook.selfManagedCerts" -}}
{{- if not (hasKey .Values "__selfManagedCerts") }}
{{- $ca := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ecr-ptc-webhook.caSecretName" .) }}
{{- if and $existing $existing.data (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- $ca = buildCustomCert (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- else }}
{{- $ca = genCA (printf "%s-ca" (include "ecr-ptc-webhook.fullname" .)) (int .Values.certificates.selfManaged.caValidityDays) }}
{{- end }}
{{- $names := include "ecr-ptc-webhook.dnsNames" . | fromYamlArray }}
{{- $cert := genSignedCert (include "ecr-ptc-webhook.serviceHost" .) nil $names (int .Values.certificates.selfManaged.certValidityDays) $ca }}
{{- $_ := set .Values "__selfManagedCerts" (dict "caCert" $ca.Cert "caKey" $ca.Key "tlsCert" $cert.Cert "tlsKey" $cert.Key) }}
{{- end }}
{{- toYaml (index .Values "__selfManagedCerts") }}
{{- end }}

{{/* The caBundle (base64 PEM) rendered into the webhook configuration; empty in certManager mode (injected). */}}
{{- define "ecr-ptc-webhook.caBundle" -}}
{{- if eq .Values.certificates.mode "selfManaged" }}
{{- (include "ecr-ptc-webhook.selfManagedCerts" . | fromYaml).caCert | b64enc }}
{{- else if eq .Values.certificates.mode "existingSecret" }}
{{- .Values.certificates.existingSecret.caBundle }}
{{- end }}
{{- end }}

{{/* The cert-manager Issuer of the serving certificate: the user's, or the chart's CA Issuer. */}}
{{- define "ecr-ptc-webhook.issuerRef" -}}
{{- if .Values.certificates.certManager.issuerRef }}
{{- toYaml .Values.certificates.certManager.issuerRef }}
{{- else }}
name: {{ include "ecr-ptc-webhook.fullname" . }}-ca
kind: Issuer
group: cert-manager.io
{{- end }}
{{- end }}

{{/*
checkov findings the chart accepts on purpose, as checkov.io/skipN annotations with the reason. The tests run
checkov over every ci/ value set and fail on any finding without one. Image checks apply only while the values
leave them open.
*/}}
{{- define "ecr-ptc-webhook.checkovImageSkips" -}}
{{- if not .Values.image.digest }}
checkov.io/skip1: "CKV_K8S_43=The default image is the chart's appVersion tag; set image.digest to pin it by digest."
{{- end }}
{{- if ne .Values.image.pullPolicy "Always" }}
checkov.io/skip2: "CKV_K8S_15=IfNotPresent lets webhook pods start while the image registry is unreachable; pin image.digest for immutability."
{{- end }}
{{- end }}
