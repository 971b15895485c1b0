{{- define "vw.name" -}}vworkspace-operator{{- end -}}
{{- define "vw.labels" -}}
app.kubernetes.io/name: vworkspace-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "vw.selector" -}}
app.kubernetes.io/name: vworkspace-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
