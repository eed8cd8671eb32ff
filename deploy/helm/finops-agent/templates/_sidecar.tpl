{{/*
The agent as a sidecar: a second container of your own workload (e.g. an LLM gateway that writes usage logs
to a shared emptyDir the agent watches). Add the finops-agent chart as a dependency of your chart, set its
values under `finops-agent:` (with `mode: sidecar`: it then renders the agent's ConfigMap and the monitoring
objects, no workload of its own), and in your pod template:

    metadata:
      labels:
        {{- include "finops-agent.sidecarPodLabels" . | nindent 8 }}   # (what podMonitor selects)
      annotations:
        checksum/finops-agent-config: {{ include "finops-agent.sidecarChecksum" . }}
    spec:
      containers:
        - name: gateway
          ...
        {{- include "finops-agent.sidecar" . | nindent 8 }}
      volumes:
        - name: usage-logs
          emptyDir: {}
        {{- include "finops-agent.sidecarVolumes" . | nindent 8 }}

and mount the shared volume into the agent with `finops-agent.extraVolumeMounts`. A rendered example:
deploy/helm/examples/sidecar. The agent's state lives in an emptyDir (lost with the pod): use a Kafka or
blob state in `config` to keep it across pods. The pod's securityContext is yours; the container's is the
agent's (non-root, read-only root, no capabilities).
*/}}
{{- define "finops-agent.sidecar" -}}
{{ include "finops-agent.container" . }}
{{- end -}}

{{- define "finops-agent.sidecarVolumes" -}}
{{ include "finops-agent.volumes" (dict "root" . "stateVolume" (dict "emptyDir" (dict))) | trim }}
{{- end -}}

{{- define "finops-agent.sidecarChecksum" -}}
{{- $sub := index .Values "finops-agent" -}}
{{- include "finops-agent.configChecksum" (ternary $sub .Values (kindIs "map" $sub)) -}}
{{- end -}}

{{- define "finops-agent.sidecarPodLabels" -}}
finops-agent/sidecar: {{ .Release.Name | quote }}
{{- end -}}
