{{/* Names and labels shared by every template. */}}
{{- define "modelrollout.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelrollout.labels" -}}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaced mode needs the list of namespaces it is confined to. */}}
{{- define "modelrollout.validate" -}}
{{- if and .Values.namespaced (empty .Values.watchNamespaces) -}}
{{- fail "namespaced=true needs watchNamespaces: the namespaces the operator watches and gets Roles in" -}}
{{- end -}}
{{- end -}}

{{/*
Rules on namespaced resources: everything the operator reads or writes for a rollout.
Rendered into a ClusterRole (cluster-wide mode) or a Role per watched namespace.
No secrets, no wildcards, no delete: the operator never deletes anything.
*/}}
{{- define "modelrollout.workloadRules" -}}
# ModelRollouts: kopf watches them, patches the finalizer and its annotations; the operator writes status.
- apiGroups: ["modelrollout.io"]
  resources: ["modelrollouts"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["modelrollout.io"]
  resources: ["modelrollouts/status"]
  verbs: ["get", "patch", "update"]
# The stable and canary Deployments: the canary is created from the stable's template;
# weights are replica counts; promotion and rollback replace the stable's template.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch", "update"]
# Canary health: OOMKilled / CrashLoopBackOff pods, availability.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events on ModelRollouts (kopf posts core/v1 events; events.k8s.io for newer clients).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The gatewayAPI router sets backendRef weights on the rollout's HTTPRoute.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "update", "patch"]
{{- end -}}
