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

{{/* The credentials Secret: the chart's own when it runs MinIO (whose root user it sets), else s3.existingSecret or the chart's. */}}
{{- define "weir.s3Secret" -}}
{{- if and .Values.s3.existingSecret (not .Values.minio.enabled) }}{{ .Values.s3.existingSecret }}{{ else }}{{ include "weir.fullname" . }}-s3{{ end }}
{{- end }}

{{- define "weir.minio" -}}{{ include "weir.fullname" . }}-minio{{- end }}
{{- define "weir.etcd" -}}{{ include "weir.fullname" . }}-etcd{{- end }}

{{/* The S3 endpoint: the development MinIO's Service when enabled. */}}
{{- define "weir.s3Endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "weir.minio" .) .Release.Namespace (int .Values.minio.port) }}
{{- else }}
{{- .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{/* --etcd: every member of the development etcd, by its stable name. */}}
{{- define "weir.etcdEndpoints" -}}
{{- $eps := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $eps = append $eps (printf "http://%s-%d.%s.%s.svc:%d" (include "weir.etcd" $) $i (include "weir.etcd" $) $.Release.Namespace (int $.Values.etcd.ports.client)) }}
{{- end }}
{{- join "," $eps }}
{{- end }}

{{/* The environment that points a process at the development etcd. */}}
{{- define "weir.etcdEnv" -}}
{{- if .Values.etcd.enabled }}
- name: WEIR_ETCD_ENDPOINTS
  value: {{ include "weir.etcdEndpoints" . | quote }}
{{- end }}
{{- end }}

{{/* The metrics port as a listen address; 0.0.0.0 like the others. */}}
{{- define "weir.metricsArgs" -}}
{{- if .Values.metrics.enabled }}
- --metrics-listen=0.0.0.0:{{ .Values.metrics.port }}
{{- end }}
{{- end }}

{{- define "weir.metricsAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Checks that values.schema.json cannot express, each failing with a sentence. */}}
{{- define "weir.validate" -}}
{{- $n := int .Values.jobmanager.replicas }}
{{- if eq (mod $n 2) 0 }}
{{- fail (printf "jobmanager.replicas is %d: a raft group needs an odd number of JobManagers (1, 3, 5...); an even one survives no more failures than one fewer and can split evenly" $n) }}
{{- end }}
{{- if and .Values.minio.enabled .Values.s3.endpoint }}
{{- fail (printf "minio.enabled is true and s3.endpoint is %q: the in-cluster MinIO is the endpoint; set s3.endpoint to \"\" or minio.enabled to false" .Values.s3.endpoint) }}
{{- end }}
{{- $e := int .Values.etcd.replicas }}
{{- if and .Values.etcd.enabled (eq (mod $e 2) 0) }}
{{- fail (printf "etcd.replicas is %d: etcd needs an odd number of members (1, 3, 5...) for a quorum" $e) }}
{{- end }}
{{- /* Two listeners on one port: the process would fail at start. */}}
{{- $jm := dict "jobmanager.ports.client" .Values.jobmanager.ports.client "jobmanager.ports.raft" .Values.jobmanager.ports.raft "jobmanager.ports.health" .Values.jobmanager.ports.health }}
{{- $tm := dict "taskmanager.ports.data" .Values.taskmanager.ports.data "taskmanager.ports.health" .Values.taskmanager.ports.health }}
{{- if .Values.web.enabled }}
{{- $_ := set $jm "web.port" .Values.web.port }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $jm "metrics.port" .Values.metrics.port }}
{{- $_ := set $tm "metrics.port" .Values.metrics.port }}
{{- end }}
{{- range $ports := list $jm $tm }}
{{- $seen := dict }}
{{- range $name := keys $ports | sortAlpha }}
{{- $p := toString (index $ports $name) }}
{{- if hasKey $seen $p }}
{{- fail (printf "%s and %s are both %s: one process cannot listen twice on a port; set one of them to another port" (index $seen $p) $name $p) }}
{{- end }}
{{- $_ := set $seen $p $name }}
{{- end }}
{{- end }}
{{- if and (not .Values.minio.enabled) (not .Values.s3.existingSecret) (or (not .Values.s3.accessKey) (not .Values.s3.secretKey)) }}
{{- fail "S3 credentials are missing: set s3.existingSecret to the name of a Secret with the keys s3.accessKeyKey and s3.secretKeyKey, or set both s3.accessKey and s3.secretKey" }}
{{- end }}
{{- end }}

{{/* Environment both kinds of process share: S3 access. */}}
{{- define "weir.s3Env" -}}
{{- with include "weir.s3Endpoint" . }}
- name: WEIR_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if .Values.minio.enabled }}
# The development MinIO starts empty: create the bucket on first use.
- name: WEIR_S3_CREATE_BUCKET
  value: "true"
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
