{{/* Names. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "weir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "weir.selector" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weir.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "weir.jobmanager" -}}{{ include "weir.fullname" . }}-jobmanager{{- end }}
{{- define "weir.headless" -}}{{ include "weir.fullname" . }}-jobmanager-raft{{- end }}
{{- define "weir.taskmanager" -}}{{ include "weir.fullname" . }}-taskmanager{{- end }}

{{/* The DNS name of JobManager i: <name>-jobmanager-<i>.<headless>.<ns>.svc */}}
{{- define "weir.jobmanagerHost" -}}
{{ include "weir.jobmanager" .ctx }}-{{ .i }}.{{ include "weir.headless" .ctx }}.{{ .ctx.Release.Namespace }}.svc
{{- end }}

{{/* --peers: every member's ID (its pod name) and raft address. */}}
{{- define "weir.peers" -}}
{{- $peers := list }}
{{- range $i := until (int .Values.jobmanager.replicas) }}
{{- $host := include "weir.jobmanagerHost" (dict "ctx" $ "i" $i) }}
{{- $peers = append $peers (printf "%s-%d=%s:%d" (include "weir.jobmanager" $) $i $host (int $.Values.jobmanager.ports.raft)) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{/* --jobmanager: every member's client address; callers find the leader among them. */}}
{{- define "weir.jobmanagerAddrs" -}}
{{- $addrs := list }}
{{- range $i := until (int .Values.jobmanager.replicas) }}
{{- $addrs = append $addrs (printf "%s:%d" (include "weir.jobmanagerHost" (dict "ctx" $ "i" $i)) (int $.Values.jobmanager.ports.client)) }}
{{- end }}
{{- join "," $addrs }}
{{- end }}

{{- define "weir.s3Secret" -}}
{{- if .Values.s3.existingSecret }}{{ .Values.s3.existingSecret }}{{ else }}{{ include "weir.fullname" . }}-s3{{ end }}
{{- end }}

{{/* Checks that values.schema.json cannot express, each failing with a sentence. */}}
{{- define "weir.validate" -}}
{{- $n := int .Values.jobmanager.replicas }}
{{- if eq (mod $n 2) 0 }}
{{- fail (printf "jobmanager.replicas is %d: a raft group needs an odd number of JobManagers (1, 3, 5...); an even one survives no more failures than one fewer and can split evenly" $n) }}
{{- end }}
{{- if and (not .Values.s3.existingSecret) (or (not .Values.s3.accessKey) (not .Values.s3.secretKey)) }}
{{- fail "S3 credentials are missing: set s3.existingSecret to the name of a Secret with the keys s3.accessKeyKey and s3.secretKeyKey, or set both s3.accessKey and s3.secretKey" }}
{{- end }}
{{- end }}

{{/* Environment both kinds of process share: S3 access. */}}
{{- define "weir.s3Env" -}}
{{- if .Values.s3.endpoint }}
- name: WEIR_S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
- name: WEIR_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "weir.s3Secret" . }}
      key: {{ .Values.s3.accessKeyKey }}
- name: WEIR_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "weir.s3Secret" . }}
      key: {{ .Values.s3.secretKeyKey }}
{{- end }}
