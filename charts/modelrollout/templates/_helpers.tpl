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
Rules on namespaced resources: exactly the calls the operator makes for a rollout (each
rule names its caller). Rendered into a ClusterRole (cluster-wide mode) or a Role per
watched namespace. No secrets, no wildcards, no delete: the operator never deletes anything.
Proven on a live cluster by e2e/tests/test_chart_rbac.py (the operator runs with this
ServiceAccount's token, and `kubectl auth can-i --list` must equal these rules).
*/}}
{{- define "modelrollout.workloadRules" -}}
# ModelRollouts: kopf lists/watches them and patches its finalizer and annotations;
# the controller GETs each one fresh before acting (adapters/rollouts.py).
- apiGroups: ["modelrollout.io"]
  resources: ["modelrollouts"]
  verbs: ["get", "list", "watch", "patch"]
# The status: one JSON merge patch per change (adapters/rollouts.py write_status).
- apiGroups: ["modelrollout.io"]
  resources: ["modelrollouts/status"]
  verbs: ["patch"]
# The stable and canary Deployments (adapters/kubeapi.py): read, create the canary from
# the stable's template, replace templates (promotion, rollback), merge-patch the canary's
# replicas and weight annotation (replicas router).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "update", "patch"]
# Replica counts of the stable (replicas router, rollback): merge patch of /scale.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# Canary health by label selector: revisions (ReplicaSets), OOMKilled / CrashLoopBackOff
# pods; kopf also watches the pods ReplicaSets own (handlers.py canary_pod, matched to the
# canary by ownership) to roll back at once; the replicas router counts ready pods.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events on ModelRollouts (adapters/notifiers/events.py POSTs core/v1 Events; kopf's own
# event posting is disabled).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The gatewayAPI router's start with a shadow step or a dark start: read the stable's Service
# to refuse one whose selector also matches the canary's pods (adapters/kube.py).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
# The gatewayAPI router: read the rollout's HTTPRoute, replace it with new backendRef weights.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "update"]
{{- end -}}

{{/* kopf peering: it lists and watches the peering object, and patches itself in and out. */}}
{{- define "modelrollout.peeringVerbs" -}}
["list", "watch", "patch"]
{{- end -}}
