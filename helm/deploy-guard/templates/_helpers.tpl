{{/* Names, labels and the RBAC rules shared by the templates. */}}

{{- define "deploy-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deploy-guard.fullname" -}}
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

{{- define "deploy-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deploy-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deploy-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deploy-guard.labels" -}}
helm.sh/chart: {{ include "deploy-guard.chart" . }}
{{ include "deploy-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "deploy-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deploy-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret whose keys become GUARD_* environment variables, or "" when there is none. */}}
{{- define "deploy-guard.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if .Values.secret.env }}
{{- include "deploy-guard.fullname" . }}
{{- end }}
{{- end }}

{{- define "deploy-guard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces whose Deployments the guard may roll out (namespaced RBAC). */}}
{{- define "deploy-guard.watchedNamespaces" -}}
{{- $namespaces := .Values.rbac.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/*
Exactly what guard/kube.py calls, nothing more; tests/helm/test_rbac_coverage.py checks this
against every request the guard sent to the Kubernetes API simulator during real rollouts:
  read_namespace       -> list deployments, replicasets (services, httproutes if a strategy
                          needs them): one listing per namespace per tick
  read_deployment      -> get deployments, list replicasets (label selector of the Deployment)
  set_images, restore_template, set_paused -> patch deployments
*/}}
{{- define "deploy-guard.rbacRules" -}}
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "patch", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "patch", "create", "delete"]
{{- if .Values.rbac.gatewayApi }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "update"]
{{- end }}
{{- end }}
