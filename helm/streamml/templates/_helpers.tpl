{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "streamml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. A release whose name already contains the chart name
is used as is, so release "streamml" gives streamml-ingestion, streamml-config and so on.
*/}}
{{- define "streamml.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamml.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamml.labels" -}}
helm.sh/chart: {{ include "streamml.chart" . }}
{{ include "streamml.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamml
{{- end }}

{{- define "streamml.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamml.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component. Call with (dict "root" $ "component" "ingestion"). */}}
{{- define "streamml.componentLabels" -}}
{{ include "streamml.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "streamml.componentSelectorLabels" -}}
{{ include "streamml.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "streamml.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamml.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The services and the topic roles each one consumes. Training joins features with labels
under one consumer group. Inference also reads the models topic by itself, in both modes.
*/}}
{{- define "streamml.services" -}}
ingestion: [input]
features: [raw]
training: [features, labels]
inference: [features]
{{- end }}

{{/* The pipeline spec text: pipeline.spec, or the bundled Elec2 example. */}}
{{- define "streamml.pipelineSpec" -}}
{{- if .Values.pipeline.spec }}
{{- .Values.pipeline.spec }}
{{- else }}
{{- .Files.Get "files/pipeline.yaml" }}
{{- end }}
{{- end }}

{{/* The pipeline name from the spec. Rendering fails when the spec has no valid name. */}}
{{- define "streamml.pipelineName" -}}
{{- $spec := fromYaml (include "streamml.pipelineSpec" .) }}
{{- if hasKey $spec "Error" }}
{{- fail (printf "pipeline.spec is not valid YAML: %s" $spec.Error) }}
{{- end }}
{{- if not $spec.name }}
{{- fail "pipeline.spec is missing name, which names the pipeline's topics and consumer groups" }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]*$" (toString $spec.name)) }}
{{- fail (printf "invalid pipeline name %q: use lower-case letters, digits and -" (toString $spec.name)) }}
{{- end }}
{{- $spec.name }}
{{- end }}

{{/*
Topic of a role, as the services derive it: the spec's topics.<role> (dead_letter for the
dead-letter role), else streamml.<pipeline>.<role>. Call with (dict "root" $ "role" "raw").
*/}}
{{- define "streamml.topic" -}}
{{- $spec := fromYaml (include "streamml.pipelineSpec" .root) }}
{{- $key := replace "-" "_" .role }}
{{- $overrides := $spec.topics | default dict }}
{{- if index $overrides $key }}
{{- index $overrides $key }}
{{- else }}
{{- printf "streamml.%s.%s" (include "streamml.pipelineName" .root) .role }}
{{- end }}
{{- end }}

{{/* Consumer group of a service: the services' own default, so both modes share offsets. */}}
{{- define "streamml.consumerGroup" -}}
{{- printf "streamml-%s-%s" .service (include "streamml.pipelineName" .root) }}
{{- end }}

{{- define "streamml.secretName" -}}
{{- default (printf "%s-kafka-credentials" (include "streamml.fullname" .)) .Values.kafka.existingSecret }}
{{- end }}

{{- define "streamml.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "streamml.tls" -}}
{{- if or (eq .Values.kafka.securityProtocol "SSL") (eq .Values.kafka.securityProtocol "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* Whether the Secret contains ca.crt. */}}
{{- define "streamml.customCA" -}}
{{- if .Values.kafka.existingSecret }}
{{- if .Values.kafka.tls.caCertInExistingSecret }}true{{ end }}
{{- else if .Values.kafka.tls.caCert }}true{{ end }}
{{- end }}

{{/* Cross-field checks that values.schema.json cannot express clearly. */}}
{{- define "streamml.validate" -}}
{{- if and (include "streamml.sasl" .) (not .Values.kafka.existingSecret) }}
{{- if not .Values.kafka.sasl.mechanism }}
{{- fail "kafka.sasl.mechanism is required with a SASL securityProtocol" }}
{{- end }}
{{- if or (not .Values.kafka.sasl.username) (not .Values.kafka.sasl.password) }}
{{- fail "kafka.sasl.username and kafka.sasl.password are required with a SASL securityProtocol (or set kafka.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and (include "streamml.customCA" .) (not (include "streamml.tls" .)) }}
{{- fail "a Kafka CA certificate is set but securityProtocol uses no TLS: use SSL or SASL_SSL" }}
{{- end }}
{{- if and .Values.tracing.enabled (not .Values.tracing.otlpEndpoint) }}
{{- fail "tracing.otlpEndpoint is required when tracing.enabled is true: set the OTLP/HTTP base URL of the collector" }}
{{- end }}
{{- end }}

{{/* Pod annotations of Prometheus's annotation-based discovery, or nothing. */}}
{{- define "streamml.scrapeAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Image of a service. Call with (dict "root" $ "service" "inference"). */}}
{{- define "streamml.image" -}}
{{- $root := .root }}
{{- $tag := $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- if and (eq .service "inference") $root.Values.gpu.enabled }}
{{- $tag = $root.Values.gpu.imageTag | default (printf "%s-gpu" $tag) }}
{{- end }}
{{- printf "%s/streamml-%s:%s" $root.Values.image.registry .service $tag }}
{{- end }}

{{/*
Per-service settings after the GPU switch: containerConcurrency, autoscaling and resources.
Call with (dict "root" $ "service" "inference"). The result is YAML.
*/}}
{{- define "streamml.serviceValues" -}}
{{- $values := index .root.Values .service }}
{{- if and (eq .service "inference") .root.Values.gpu.enabled }}
{{- $gpu := .root.Values.gpu }}
{{- $limits := merge (dict "nvidia.com/gpu" (toString $gpu.count)) ($gpu.resources.limits | default dict) }}
{{- $resources := dict "requests" ($gpu.resources.requests | default dict) "limits" $limits }}
{{- $values = deepCopy $values }}
{{- $_ := set $values "containerConcurrency" $gpu.containerConcurrency }}
{{- $_ = set $values "autoscaling" $gpu.autoscaling }}
{{- $_ = set $values "resources" $resources }}
{{- end }}
{{- toYaml $values }}
{{- end }}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "streamml.configChecksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.kafka.existingSecret }}
checksum/kafka-credentials: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Environment from the Secret: absent keys leave their variables unset. */}}
{{- define "streamml.kafkaEnv" -}}
{{- $secret := include "streamml.secretName" . }}
{{- $variables := list
  (list "STREAMML_KAFKA_SECURITY_PROTOCOL" "protocol")
  (list "STREAMML_KAFKA_SASL_MECHANISM" "sasl.mechanism")
  (list "STREAMML_KAFKA_SASL_USERNAME" "user")
  (list "STREAMML_KAFKA_SASL_PASSWORD" "password") }}
{{- range $variables }}
{{- $name := index . 0 }}
{{- $key := index . 1 }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- if include "streamml.customCA" . }}
- name: STREAMML_KAFKA_SSL_CA_LOCATION
  value: /etc/streamml/kafka/ca.crt
{{- end }}
{{- end }}

{{- define "streamml.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "streamml.volumeMounts" -}}
- name: pipeline
  mountPath: /etc/streamml
  readOnly: true
- name: scratch
  mountPath: /var/lib/streamml
{{- if include "streamml.customCA" . }}
- name: kafka-ca
  mountPath: /etc/streamml/kafka
  readOnly: true
{{- end }}
{{- end }}

{{/* Volumes of a pod. Call with (dict "root" $ "scratchSize" "64Mi"). */}}
{{- define "streamml.volumes" -}}
- name: pipeline
  configMap:
    name: {{ include "streamml.fullname" .root }}-pipeline
- name: scratch
  emptyDir:
    sizeLimit: {{ .scratchSize }}
{{- if include "streamml.customCA" .root }}
- name: kafka-ca
  secret:
    secretName: {{ include "streamml.secretName" .root }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{/*
The container of a service, shared by both modes. On Knative the single port must be named
http1 (or h2c), and a probe names the port by number.
Call with (dict "root" $ "service" "ingestion" "knative" true).
*/}}
{{- define "streamml.container" -}}
{{- $root := .root }}
{{- $values := fromYaml (include "streamml.serviceValues" (dict "root" $root "service" .service)) -}}
- name: {{ .service }}
  image: {{ include "streamml.image" (dict "root" $root "service" .service) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  ports:
    - name: {{ if .knative }}http1{{ else }}http{{ end }}
      containerPort: 8080
      protocol: TCP
  envFrom:
    - configMapRef:
        name: {{ include "streamml.fullname" $root }}-config
  env:
    {{- include "streamml.kafkaEnv" $root | trim | nindent 4 }}
    {{- if and (eq .service "inference") $root.Values.gpu.enabled }}
    - name: STREAMML_INFERENCE_PROVIDER
      value: cuda
    {{- end }}
  {{- range $probe, $path := dict "startupProbe" "/healthz" "livenessProbe" "/healthz" "readinessProbe" "/readyz" }}
  {{ $probe }}:
    httpGet:
      path: {{ $path }}
      port: {{ if $.knative }}8080{{ else }}http{{ end }}
    {{- if eq $probe "startupProbe" }}
    periodSeconds: 2
    failureThreshold: 30
    {{- else if eq $probe "livenessProbe" }}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
    {{- else }}
    timeoutSeconds: 2
    {{- if not $.knative }}
    periodSeconds: 5
    {{- end }}
    {{- end }}
  {{- end }}
  resources:
    {{- toYaml $values.resources | nindent 4 }}
  securityContext:
    {{- include "streamml.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "streamml.volumeMounts" $root | nindent 4 }}
{{- end }}
