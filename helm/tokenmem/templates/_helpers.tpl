{{/* Chart name, at most 63 characters. */}}
{{- define "tokenmem.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: the release name alone when it already holds the chart's name. */}}
{{- define "tokenmem.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "tokenmem.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tokenmem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of the agent pods; the Service and ServiceMonitor select with it. */}}
{{- define "tokenmem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenmem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "tokenmem.serviceAccountName" -}}
{{- printf "%s-agent" (include "tokenmem.fullname" .) -}}
{{- end -}}

{{- define "tokenmem.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The agent's config file (docs/configuration.md). */}}
{{- define "tokenmem.agentConfig" -}}
{{- $a := .Values.agent -}}
{{- $nvmeCapacity := "0" -}}
{{- if $a.tiers.nvme.enabled }}{{ $nvmeCapacity = toString $a.tiers.nvme.capacity }}{{ end -}}
{{- $pools := list -}}
{{- range $a.pools -}}
{{- $pools = append $pools (dict "name" (required "agent.pools[].name is required" .name) "block_size" (toString .blockSize) "capacity" .capacity "eviction" (default "lru" .eviction) "ttl_seconds" (int (default 0 .ttlSeconds))) -}}
{{- end -}}
{{- $cfg := dict
  "log_level" $a.logLevel
  "control" (dict "socket" (printf "%s/agent.sock" $a.socketDir) "socket_mode" (toString $a.socketMode))
  "http" (dict "listen" (printf "0.0.0.0:%d" (int $a.port)))
  "tiers" (dict
    "dram" (dict "capacity" (toString $a.tiers.dram.capacity) "numa_nodes" $a.tiers.dram.numaNodes)
    "cxl" (dict "capacity" (toString $a.tiers.cxl.capacity) "numa_nodes" $a.tiers.cxl.numaNodes)
    "nvme" (dict "directory" $a.tiers.nvme.directory "capacity" $nvmeCapacity "segment_size" (toString $a.tiers.nvme.segmentSize) "queue_depth" (int $a.tiers.nvme.queueDepth) "create_directory" true))
  "pools" $pools -}}
{{- toYaml (mergeOverwrite $cfg $a.extraConfig) -}}
{{- end -}}
