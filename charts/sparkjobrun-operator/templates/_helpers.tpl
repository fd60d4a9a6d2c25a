{{/* Names: 63 characters at most (DNS label), as Kubernetes requires for many of them. */}}
{{- define "sparkjobrun-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sparkjobrun-operator.fullname" -}}
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

{{- define "sparkjobrun-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never change after install (a Deployment's selector is immutable). */}}
{{- define "sparkjobrun-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sparkjobrun-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sparkjobrun-operator.labels" -}}
helm.sh/chart: {{ include "sparkjobrun-operator.chart" . }}
{{ include "sparkjobrun-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sparkjobrun-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sparkjobrun-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sparkjobrun-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" or "false": leaderElection.enabled when it is a boolean, otherwise (null) on exactly when
more than one replica runs. Two replicas without it would both poll and write status.
*/}}
{{- define "sparkjobrun-operator.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled }}
{{- if kindIs "bool" $enabled }}
{{- if and (not $enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount=1: several replicas without leader election would all poll and write status" }}
{{- end }}
{{- ternary "true" "false" $enabled }}
{{- else }}
{{- ternary "true" "false" (gt (int .Values.replicaCount) 1) }}
{{- end }}
{{- end }}

{{- define "sparkjobrun-operator.leaseName" -}}
{{- default (include "sparkjobrun-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* "true" or "false": podDisruptionBudget.enabled, or (null) on when more than one replica runs. */}}
{{- define "sparkjobrun-operator.pdbEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "bool" $enabled }}
{{- ternary "true" "false" $enabled }}
{{- else }}
{{- ternary "true" "false" (gt (int .Values.replicaCount) 1) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on SparkJobRunRef objects, Secrets and Events. tests/chart.rs checks
them against the hand-written list in tests/e2e/operator-rbac.yaml, and the end-to-end suite runs
the operator as the ServiceAccount this chart creates, so what is tested is what is installed.
Secrets are read by name only, when an object names one: no list, no watch.
*/}}
{{- define "sparkjobrun-operator.rules" -}}
- apiGroups: ["emrspark.io"]
  resources: ["sparkjobruns"]
  {{- $verbs := list "get" "list" "watch" }}
  {{- if .Values.cancelOnDelete.enabled }}{{ $verbs = append $verbs "patch" }}{{ end }}
  {{- if .Values.ttlAfterFinished.enabled }}{{ $verbs = append $verbs "delete" }}{{ end }}
  verbs: {{ toJson $verbs }}
{{- if .Values.cancelOnDelete.enabled }}
- apiGroups: ["emrspark.io"]
  resources: ["sparkjobruns/finalizers"]
  verbs: ["update"]
{{- end }}
- apiGroups: ["emrspark.io"]
  resources: ["sparkjobruns/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The operator's flags, one quoted list item each (label selectors may hold YAML syntax). */}}
{{- define "sparkjobrun-operator.args" -}}
- run
- {{ printf "--metrics-addr=0.0.0.0:%d" (int64 .Values.metrics.port) | quote }}
- {{ printf "--log-format=%s" .Values.logFormat | quote }}
- {{ printf "--network=%s" .Values.network | quote }}
{{- with .Values.defaultRegion }}
- {{ printf "--default-region=%s" . | quote }}
{{- end }}
{{- with .Values.endpoint }}
- {{ printf "--endpoint=%s" . | quote }}
{{- end }}
{{- range .Values.watchNamespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- with .Values.labelSelector }}
- {{ printf "--label-selector=%s" . | quote }}
{{- end }}
{{- if ne (.Values.credentials.imds | default "auto") "auto" }}
- {{ printf "--imds=%s" .Values.credentials.imds | quote }}
{{- end }}
{{- range .Values.assumeRoleAllow }}
- {{ printf "--assume-role-allow=%s" . | quote }}
{{- end }}
{{- if .Values.cancelOnDelete.enabled }}
- "--allow-cancel=true"
{{- end }}
{{- if .Values.ttlAfterFinished.enabled }}
- "--ttl-after-finished=true"
{{- with .Values.ttlAfterFinished.default }}
- {{ printf "--ttl-after-finished-default=%s" . | quote }}
{{- end }}
{{- else if .Values.ttlAfterFinished.default }}
{{- fail "ttlAfterFinished.default needs ttlAfterFinished.enabled=true" }}
{{- end }}
- {{ printf "--observe=%s" .Values.observe | quote }}
- {{ printf "--rate-limit=%v" .Values.rateLimit | quote }}
- {{ printf "--rate-burst=%d" (int64 .Values.rateBurst) | quote }}
- {{ printf "--min-poll-interval=%s" .Values.minPollInterval | quote }}
- {{ printf "--max-poll-interval=%s" .Values.maxPollInterval | quote }}
{{- $leader := include "sparkjobrun-operator.leaderElection" . }}
- {{ printf "--leader-election=%s" $leader | quote }}
{{- if eq $leader "true" }}
- {{ printf "--leader-election-namespace=%s" .Release.Namespace | quote }}
- {{ printf "--leader-election-lease-name=%s" (include "sparkjobrun-operator.leaseName" .) | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
