{{/* Name of every object: the release name, or release-nightjar when it lacks "nightjar". */}}
{{- define "nightjar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nightjar.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nightjar.labels" -}}
{{ include "nightjar.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "nightjar.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "nightjar.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "nightjar.image" -}}
{{- if .override -}}
{{- .override -}}
{{- else -}}
{{- printf "%s:%s" .repository (.tag | default $.appVersion) -}}
{{- end -}}
{{- end -}}

{{/*
The agent's config file (nightjar.yaml). Keys not set here keep their defaults
(config/default.yaml). With the default values it says what deploy/kubernetes/base/nightjar.yaml
says.
*/}}
{{- define "nightjar.config" -}}
{{- $n := .Values.nightjar -}}
log:
  format: json
  level: {{ ternary "debug" "info" $n.debug }}
metrics:
  enabled: {{ $n.prometheus.enabled }}
  listen: {{ printf "%s:%v" ($n.prometheus.address | default "0.0.0.0") $n.prometheus.port | quote }}
  tetragon_names: {{ $n.prometheus.tetragonNames }}
control:
  socket: {{ printf "%s/nightjar.sock" .Values.exportDirectory }}
sensor:
  policies_dir: {{ ternary "/etc/nightjar/policies" "\"\"" $n.enablePolicies }}
  mount_tracefs: false
  process_cache_max: {{ $n.processCacheSize }}
pipeline:
  enrich:
    passwd_path: /host/etc/passwd
    group_path: /host/etc/group
    kubernetes:
      mode: {{ ternary "auto" "off" $n.enableK8sAPI }}
  filter:
    allowlist: {{ $n.exportAllowList | quote }}
    denylist: {{ $n.exportDenyList | quote }}
    field_filters: {{ $n.fieldFilters | quote }}
    redaction_filters: {{ $n.redactionFilters | quote }}
sinks:
  data_dir: {{ .Values.bufferDirectory }}
  stdout:
    enabled: false
  file:
    enabled: {{ not (empty $n.exportFilename) }}
    path: {{ printf "%s/%s" .Values.exportDirectory ($n.exportFilename | default "nightjar.log") }}
    max_size: {{ mul $n.exportFileMaxSizeMB 1048576 }}
    max_backups: {{ $n.exportFileMaxBackups }}
    compress: {{ $n.exportFileCompress }}
    mode: {{ printf "0o%s" (toString $n.exportFilePerm) }}
  elasticsearch:
    dead_letter_path: {{ printf "%s/elasticsearch-dead-letter.log" .Values.exportDirectory }}
    {{- with .Values.export.elasticsearch }}
    {{- if .enabled }}
    enabled: true
    endpoint: {{ .endpoint | quote }}
    index: {{ .index | quote }}
    schema: {{ .schema }}
    auth:
      kind: {{ .auth.kind }}
      user: {{ .auth.user | quote }}
      {{- if ne .auth.kind "none" }}
      secret:
        file: /etc/nightjar/secrets/elasticsearch/password
      {{- end }}
    {{- if .caCertificate }}
    tls:
      ca_file: /etc/nightjar/secrets/elasticsearch/ca.crt
    {{- end }}
    {{- end }}
    {{- end }}
  {{- with .Values.export.kafka }}
  {{- if .enabled }}
  kafka:
    enabled: true
    brokers: {{ .brokers | quote }}
    topic: {{ .topic | quote }}
    key: {{ .key }}
    security:
      protocol: {{ .security.protocol }}
      {{- if ne .security.protocol "plaintext" }}
      sasl_mechanism: {{ .security.saslMechanism }}
      sasl_username: {{ .security.saslUsername | quote }}
      sasl_password:
        file: /etc/nightjar/secrets/kafka/password
      {{- end }}
  {{- end }}
  {{- end }}
{{- end -}}
