{{/* Names and labels. */}}
{{- define "callauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "callauth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "callauth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource; pass (dict "ctx" $ "component" "gateway"). */}}
{{- define "callauth.labels" -}}
helm.sh/chart: {{ include "callauth.chart" .ctx }}
{{ include "callauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: callauth
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "callauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callauth.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* The image reference: by digest when one is given. */}}
{{- define "callauth.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The Secret the pods read: the chart's own or an existing one. */}}
{{- define "callauth.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "callauth.fullname" .) -}}
{{- end -}}

{{/* The Secret the hooks read: hooks run before the release's Secret exists on
     install, so the chart makes a hook copy (weight -10) unless an existing
     Secret is used. */}}
{{- define "callauth.hookSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-hooks" (include "callauth.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* A map of camelCase flag names to values, as CALLAUTH_* entries (nulls and
     empty strings skipped). */}}
{{- define "callauth.envMap" -}}
{{- range $k, $v := . }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{- /* YAML numbers arrive as float64: print integers without an exponent. */}}
{{- $s := toString $v }}
{{- if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) }}
{{- $s = int64 $v | toString }}
{{- end }}
{{ printf "CALLAUTH_%s" ($k | snakecase | upper) }}: {{ $s | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The shared settings as CALLAUTH_* entries. */}}
{{- define "callauth.sharedEnv" -}}
CALLAUTH_REDIS_PREFIX: {{ .Values.shared.redisPrefix | quote }}
CALLAUTH_PARTITIONS: {{ int64 .Values.shared.partitions | quote }}
CALLAUTH_FIRST_TIME_LIMIT_SEK: {{ int64 .Values.shared.firstTimeLimitSek | quote }}
CALLAUTH_ESTABLISHED_LIMIT_SEK: {{ int64 .Values.shared.establishedLimitSek | quote }}
CALLAUTH_THRESHOLD_PERCENT: {{ int64 .Values.shared.thresholdPercent | quote }}
CALLAUTH_LOG_FORMAT: {{ .Values.shared.logFormat | quote }}
RUST_LOG: {{ .Values.shared.rustLog | quote }}
{{- end -}}

{{/* An env entry from the Secret; pass (dict "ctx" $ "name" "CALLAUTH_STORE" "key" "redisUrl" "secret" <name>). */}}
{{- define "callauth.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ index .ctx.Values.secrets.keys .key }}
{{- end -}}

{{/* Roll the pods when configuration or the chart-made Secret changes. With
     an existing Secret, roll by changing a pod annotation (or use a reloader). */}}
{{- define "callauth.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{/* Pod-level settings common to every pod. */}}
{{- define "callauth.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Spread constraints with this component's selector filled in. */}}
{{- define "callauth.spread" -}}
{{- $sel := include "callauth.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- range .constraints }}
- {{ toYaml (merge (dict "labelSelector" (dict "matchLabels" $sel)) .) | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* Validations that the schema cannot express. */}}
{{- define "callauth.validate" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.secretName is required with tls.enabled (a kubernetes.io/tls Secret, e.g. from a cert-manager Certificate)" -}}
{{- end -}}
{{- if and (ne .Values.tls.clientAuth "none") (not .Values.tls.enabled) -}}
{{- fail "tls.clientAuth needs tls.enabled" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if not .Values.secrets.redisUrl -}}
{{- fail "secrets.redisUrl is required (or name an existingSecret)" -}}
{{- end -}}
{{- if not .Values.secrets.tokensToml -}}
{{- fail "secrets.tokensToml is required (or name an existingSecret)" -}}
{{- end -}}
{{- if lt (len .Values.secrets.prepaidCodeKey) 32 -}}
{{- fail "secrets.prepaidCodeKey must be at least 32 bytes (or name an existingSecret)" -}}
{{- end -}}
{{- if and .Values.settlement.enabled (not .Values.secrets.databaseUrl) -}}
{{- fail "secrets.databaseUrl is required with settlement.enabled (or name an existingSecret)" -}}
{{- end -}}
{{- if and .Values.settlement.enabled (not .Values.secrets.swishCallbackToken) -}}
{{- fail "secrets.swishCallbackToken is required with settlement.enabled (or name an existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- if gt (int .Values.settlement.shards) (int .Values.shared.partitions) -}}
{{- fail "settlement.shards must not exceed shared.partitions (a shard without partitions consumes nothing)" -}}
{{- end -}}
{{- with .Values.gateway.terminationGracePeriodSeconds -}}
{{- if le (int .) (add (int $.Values.gateway.config.shutdownGraceSeconds) (int $.Values.gateway.preStopSleepSeconds)) -}}
{{- fail "gateway.terminationGracePeriodSeconds must exceed preStopSleepSeconds + config.shutdownGraceSeconds" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* TLS (docs/deployment.md "TLS"): the serving certificate of both
     listeners, the client CA for mutual TLS, and the CA files for Redis
     (rediss://) and PostgreSQL (sslrootcert=). Secret volumes are mounted
     whole, never with subPath, so that a renewed certificate reaches the
     running pods (the processes re-read the files; no restart).
     Called with (dict "ctx" $ "serve" true|false): hook Jobs serve nothing. */}}
{{- define "callauth.tlsEnv" -}}
{{- $t := .ctx.Values.tls -}}
{{- if and .serve $t.enabled }}
- name: CALLAUTH_TLS_CERT
  value: /etc/callauth/tls/tls.crt
- name: CALLAUTH_TLS_KEY
  value: /etc/callauth/tls/tls.key
- name: CALLAUTH_TLS_RELOAD_SECONDS
  value: {{ int64 $t.reloadSeconds | quote }}
{{- if ne $t.clientAuth "none" }}
- name: CALLAUTH_TLS_CLIENT_CA
  value: {{ ternary "/etc/callauth/client-ca/ca.crt" "/etc/callauth/tls/ca.crt" (ne $t.clientCaSecretName "") }}
- name: CALLAUTH_TLS_CLIENT_AUTH
  value: {{ $t.clientAuth | quote }}
{{- with $t.clientTrustDomain }}
- name: CALLAUTH_TLS_CLIENT_TRUST_DOMAIN
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if $t.redisCaSecretName }}
- name: CALLAUTH_REDIS_CA_FILE
  value: /etc/callauth/redis-ca/ca.crt
{{- end }}
{{- end -}}

{{- define "callauth.tlsVolumeMounts" -}}
{{- $t := .ctx.Values.tls -}}
{{- if and .serve $t.enabled }}
- name: tls
  mountPath: /etc/callauth/tls
  readOnly: true
{{- if and (ne $t.clientAuth "none") $t.clientCaSecretName }}
- name: client-ca
  mountPath: /etc/callauth/client-ca
  readOnly: true
{{- end }}
{{- end }}
{{- if $t.redisCaSecretName }}
- name: redis-ca
  mountPath: /etc/callauth/redis-ca
  readOnly: true
{{- end }}
{{- if and .postgres $t.postgresCaSecretName }}
- name: postgres-ca
  mountPath: /etc/callauth/postgres-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "callauth.tlsVolumes" -}}
{{- $t := .ctx.Values.tls -}}
{{- if and .serve $t.enabled }}
- name: tls
  secret:
    secretName: {{ $t.secretName }}
{{- if and (ne $t.clientAuth "none") $t.clientCaSecretName }}
- name: client-ca
  secret:
    secretName: {{ $t.clientCaSecretName }}
{{- end }}
{{- end }}
{{- if $t.redisCaSecretName }}
- name: redis-ca
  secret:
    secretName: {{ $t.redisCaSecretName }}
{{- end }}
{{- if and .postgres $t.postgresCaSecretName }}
- name: postgres-ca
  secret:
    secretName: {{ $t.postgresCaSecretName }}
{{- end }}
{{- end -}}

{{/* Probes over HTTPS when TLS is on: the kubelet's native gRPC probe has
     no TLS, its HTTPS probe does (without verifying the certificate).
     /healthz is liveness, /readyz readiness: the same readiness probe as
     the gRPC health of the services. */}}
{{- define "callauth.httpsProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
  scheme: HTTPS
{{- end -}}
