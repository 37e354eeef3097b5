{{/* Fixed names: qgov is one per cluster, and the operator binds the ClusterRole qgov-executor by name. */}}
{{- define "qgov.name" -}}qgov-operator{{- end -}}

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
