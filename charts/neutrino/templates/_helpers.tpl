{{/* The name every object of this release starts with: the release's own
name when it already says neutrino (`helm install neutrino` makes
neutrino-controller, not neutrino-neutrino-controller). */}}
{{- define "neutrino.fullname" -}}
{{- if contains "neutrino" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-neutrino" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "neutrino.labels" -}}
app.kubernetes.io/name: neutrino
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The image of both components. */}}
{{- define "neutrino.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
