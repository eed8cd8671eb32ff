{{/*
The chart's name is spelled out (not .Chart.Name) so that the sidecar templates, included from another
chart, name the same ConfigMap as this chart renders.
*/}}
{{- define "finops-agent.fullname" -}}
{{- if contains "finops-agent" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-finops-agent" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "finops-agent.labels" -}}
app.kubernetes.io/name: finops-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "finops-agent.selectorLabels" -}}
app.kubernetes.io/name: finops-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "finops-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "finops-agent.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The image: the agent's values' repository and tag (default: the finops-agent chart's appVersion, also when
included from a parent chart). Context: the root context. */}}
{{- define "finops-agent.image" -}}
{{- $sub := index .Values "finops-agent" -}}
{{- $v := ternary $sub .Values (kindIs "map" $sub) -}}
{{- $appVersion := .Chart.AppVersion -}}
{{- if and (kindIs "map" $sub) .Subcharts (hasKey .Subcharts "finops-agent") -}}
{{- $appVersion = (index .Subcharts "finops-agent").Chart.AppVersion -}}
{{- end -}}
{{- printf "%s:%s" $v.image.repository ($v.image.tag | default $appVersion) -}}
{{- end -}}

{{/* The state type the agent will use: the config's, else kafka when every source is a Kafka source (as the
agent's own loader decides), else local. Empty config (the demo): local. Argument: the values. */}}
{{- define "finops-agent.stateType" -}}
{{- $cfg := .config | default dict -}}
{{- $state := $cfg.state | default dict -}}
{{- if $state.type -}}
{{- $state.type -}}
{{- else -}}
{{- $sources := $cfg.sources | default dict -}}
{{- $allKafka := gt (len $sources) 0 -}}
{{- range $name, $src := $sources -}}
{{- if not (and (kindIs "map" $src) (eq (toString $src.type) "kafka")) -}}{{- $allKafka = false -}}{{- end -}}
{{- end -}}
{{- ternary "kafka" "local" $allKafka -}}
{{- end -}}
{{- end -}}

{{- define "finops-agent.isDemo" -}}
{{- if not .config -}}true{{- end -}}
{{- end -}}

{{/* sha256 of the agent's configuration: a pod annotation, so that a change rolls the pods. Argument: values. */}}
{{- define "finops-agent.configChecksum" -}}
{{- toYaml (.config | default dict) | sha256sum -}}
{{- end -}}

{{/*
The agent's container. Context: the root context `.` (this chart's, or a parent chart's that has the
finops-agent chart as a dependency: it then reads the parent's `finops-agent:` values).
*/}}
{{- define "finops-agent.container" -}}
{{- $sub := index .Values "finops-agent" -}}
{{- $v := ternary $sub .Values (kindIs "map" $sub) -}}
{{- $demo := include "finops-agent.isDemo" $v -}}
- name: finops-agent
  image: {{ include "finops-agent.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $demo }}
  # No config: the embedded demo (a synthetic month with injected anomalies, generated into the state volume).
  args: ["run"]
  {{- else }}
  args: ["run", "--config", "/etc/finops-agent/config.yaml"]
  {{- end }}
  ports:
    - name: finops-metrics   # (not `metrics`: a sidecar shares the pod's port names with your containers)
      containerPort: {{ $v.metricsPort }}
      protocol: TCP
  env:
    - name: HOST_IP
      valueFrom: {fieldRef: {fieldPath: status.hostIP}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: FINOPS_METRICS_ADDRESS
      value: 0.0.0.0
    - name: FINOPS_METRICS_PORT
      value: {{ $v.metricsPort | quote }}
    - name: FINOPS_HTTP_ADDRESS
      value: 0.0.0.0
    - name: FINOPS_HTTP_PORT
      value: {{ $v.metricsPort | quote }}
    - name: FINOPS_STATE_DIR
      value: {{ ternary "/var/lib/finops-agent/state" "/var/lib/finops-agent" (eq $demo "true") }}
    {{- if $demo }}
    - name: FINOPS_DEMO_DIR
      value: /var/lib/finops-agent/demo
    - name: FINOPS_INBOX
      value: /var/lib/finops-agent/inbox
    {{- end }}
    - name: HOME
      value: /tmp
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if and $v.existingSecret.name $v.existingSecret.asEnv }}
  envFrom:
    - secretRef:
        name: {{ $v.existingSecret.name }}
  {{- end }}
  {{- with $v.livenessProbe }}
  livenessProbe: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.readinessProbe }}
  readinessProbe: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources: {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext: {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    {{- if not $demo }}
    - name: finops-agent-config
      mountPath: /etc/finops-agent
      readOnly: true
    {{- end }}
    - name: finops-agent-state
      mountPath: /var/lib/finops-agent
    - name: finops-agent-tmp
      mountPath: /tmp
    {{- if and $v.existingSecret.name $v.existingSecret.mountPath }}
    - name: finops-agent-secret
      mountPath: {{ $v.existingSecret.mountPath }}
      readOnly: true
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The agent's volumes (config, state, /tmp, secret files). Context as for finops-agent.container; the
state volume is passed in as `stateVolume` by the workload, an emptyDir for a sidecar. */}}
{{- define "finops-agent.volumes" -}}
{{- $sub := index .root.Values "finops-agent" -}}
{{- $v := ternary $sub .root.Values (kindIs "map" $sub) -}}
{{- if not (include "finops-agent.isDemo" $v) }}
- name: finops-agent-config
  configMap:
    name: {{ include "finops-agent.fullname" .root }}
{{- end }}
- name: finops-agent-state
  {{- toYaml .stateVolume | nindent 2 }}
- name: finops-agent-tmp
  emptyDir: {}
{{- if and $v.existingSecret.name $v.existingSecret.mountPath }}
- name: finops-agent-secret
  secret:
    secretName: {{ $v.existingSecret.name }}
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
