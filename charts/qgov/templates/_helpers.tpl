{{/* The app.kubernetes.io/name label: nameOverride, else qgov-operator. */}}
{{- define "qgov.name" -}}
{{- default "qgov-operator" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of the release's own objects (Deployment, Services, ClusterRole qgov-operator, ...):
fullnameOverride, else the name. Not prefixed with the release's name as most charts do: qgov is one
per cluster, and the defaults keep the names of the kustomize install (operator/manifests). Objects
the operator or tenants find by name keep theirs: the ClusterRoles qgov-executor (bound by the
operator in each budget's namespace), qgov-view/-edit/-budget-admin, and the webhook's objects. */}}
{{- define "qgov.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "qgov.name" . -}}
{{- end -}}
{{- end -}}

{{/* The operator's ServiceAccount: serviceAccount.name, else (created by the chart) the fullname,
else (yours) "default". */}}
{{- define "qgov.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "qgov.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "qgov.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qgov.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "qgov.labels" -}}
{{ include "qgov.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of cluster-wide objects: no selector meaning, just who made them. */}}
{{- define "qgov.commonLabels" -}}
app.kubernetes.io/part-of: qgov
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* repository:tag of (list .Values.<image> .Chart.AppVersion) */}}
{{- define "qgov.image" -}}
{{- $image := index . 0 -}}
{{- printf "%s:%s" $image.repository ($image.tag | default (index . 1) | toString) -}}
{{- end -}}

{{/* A setting as the operator reads it: integral numbers without an exponent (YAML numbers arrive as floats). */}}
{{- define "qgov.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}
