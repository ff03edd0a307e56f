{{/*
Chart name, overridable.
*/}}
{{- define "fastswitch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: the release name, with the chart name unless the release
name already carries it.
*/}}
{{- define "fastswitch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's resources: <fullname>-operator.
*/}}
{{- define "fastswitch.operator.fullname" -}}
{{- printf "%s-operator" (include "fastswitch.fullname" .) }}
{{- end }}

{{/*
chart label value: name-version.
*/}}
{{- define "fastswitch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of a component: only name, instance and component, so they never change.
Call with (dict "context" $ "component" "operator").
*/}}
{{- define "fastswitch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastswitch.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Recommended labels of every resource of a component.
Call with (dict "context" $ "component" "operator").
*/}}
{{- define "fastswitch.labels" -}}
{{ include "fastswitch.selectorLabels" . }}
helm.sh/chart: {{ include "fastswitch.chart" .context }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: fastswitch
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "fastswitch.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "fastswitch.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag}; the tag defaults to the chart's appVersion.
Call with (dict "context" $ "image" .Values.images.worker).
*/}}
{{- define "fastswitch.image" -}}
{{- printf "%s:%s" .image.repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}

{{/*
Namespaces the operator serves when not cluster-wide, as a JSON list (read it back with
fromJsonArray): operator.watch.namespaces, or the release namespace.
*/}}
{{- define "fastswitch.operator.namespaces" -}}
{{- toJson (.Values.operator.watch.namespaces | default (list .Release.Namespace)) }}
{{- end }}

{{/*
The operator's permissions, shared by the ClusterRole and the per-namespace Roles.
It lists and watches no Secrets and touches no Pods.
*/}}
{{- define "fastswitch.operator.rules" -}}
# Its resource; kopf keeps its bookkeeping in annotations (patch) and the status.
- apiGroups: ["fastswitch.io"]
  resources: ["fastswitchclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["fastswitch.io"]
  resources: ["fastswitchclusters/status"]
  verbs: ["get", "patch"]
# Owner references that block owner deletion need this where that admission plugin is on.
- apiGroups: ["fastswitch.io"]
  resources: ["fastswitchclusters/finalizers"]
  verbs: ["update"]
# The children (watched: their readiness is the cluster's status).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The frontends' HorizontalPodAutoscaler, when spec.frontend.autoscaling asks for one.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The Secrets it generates (cluster credential, Redis password) are created once and never
# changed: get (does it exist, is it usable) and create. get also checks spec.tls's Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# Whether the model's claim exists yet.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# Events about the clusters it handles.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
