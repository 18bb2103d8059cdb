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

{{/* The headless Service: peer DNS and scrape target. */}}
{{- define "tokenmem.peersServiceName" -}}
{{- printf "%s-peers" (include "tokenmem.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
"true" when the agents form a cluster, else "". The cluster needs the remote
listener (peers reach each other through it), so remote.enabled=false turns
it off too.
*/}}
{{- define "tokenmem.clusterEnabled" -}}
{{- if and .Values.remote.enabled .Values.cluster.enabled -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the cluster's shared secret: the user's, or the chart's. */}}
{{- define "tokenmem.clusterSecretName" -}}
{{- if .Values.cluster.secret.existingSecret -}}
{{- .Values.cluster.secret.existingSecret -}}
{{- else -}}
{{- printf "%s-cluster" (include "tokenmem.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Where the agent container mounts that Secret. */}}
{{- define "tokenmem.clusterSecretDir" -}}/etc/tokenmem/cluster{{- end -}}

{{/* Where the control API's TCP token and TLS Secrets are mounted in the agent. */}}
{{- define "tokenmem.controlTokenDir" -}}/etc/tokenmem/control-token{{- end -}}
{{- define "tokenmem.controlTlsDir" -}}/etc/tokenmem/control-tls{{- end -}}

{{/*
The data socket: the only socket pods get (the device plugin mounts its
directory into them). Its directory must not be the control socket's.
*/}}
{{- define "tokenmem.dataSocketDir" -}}
{{- $a := .Values.agent -}}
{{- if eq (clean $a.dataSocketDir) (clean $a.socketDir) -}}
{{- fail "agent.dataSocketDir must differ from agent.socketDir: pods get the data socket's directory mounted, and the control socket must not be in it" -}}
{{- end -}}
{{- clean $a.dataSocketDir -}}
{{- end -}}

{{/* The agent's config file (docs/configuration.md). */}}
{{- define "tokenmem.agentConfig" -}}
{{- $a := .Values.agent -}}
{{- $nvmeCapacity := "0" -}}
{{- if $a.tiers.nvme.enabled }}{{ $nvmeCapacity = toString $a.tiers.nvme.capacity }}{{ end -}}
{{- $pools := list -}}
{{- range $a.pools -}}
{{- $scope := default "local" .scope -}}
{{- if not (has $scope (list "local" "cluster")) -}}
{{- fail (printf "agent.pools[%s].scope: %q is neither local nor cluster" .name $scope) -}}
{{- end -}}
{{- $pools = append $pools (dict "name" (required "agent.pools[].name is required" .name) "block_size" (toString .blockSize) "capacity" .capacity "eviction" (default "lru" .eviction) "ttl_seconds" (int (default 0 .ttlSeconds)) "scope" $scope) -}}
{{- end -}}
{{- $cfg := dict
  "log_level" $a.logLevel
  "control" (dict "socket" (printf "%s/agent.sock" $a.socketDir) "socket_mode" (toString $a.socketMode) "data_socket" (printf "%s/agent-data.sock" (include "tokenmem.dataSocketDir" .)) "data_socket_mode" (toString $a.dataSocketMode) "admin_uids" $a.adminUids "admin_gids" $a.adminGids)
  "http" (dict "listen" (printf "0.0.0.0:%d" (int $a.port)) "probe_listen" (printf "0.0.0.0:%d" (int $a.probePort)))
  "tiers" (dict
    "dram" (dict "capacity" (toString $a.tiers.dram.capacity) "numa_nodes" $a.tiers.dram.numaNodes)
    "cxl" (dict "capacity" (toString $a.tiers.cxl.capacity) "numa_nodes" $a.tiers.cxl.numaNodes)
    "nvme" (dict "directory" $a.tiers.nvme.directory "capacity" $nvmeCapacity "segment_size" (toString $a.tiers.nvme.segmentSize) "queue_depth" (int $a.tiers.nvme.queueDepth) "create_directory" true))
  "pools" $pools -}}
{{- $t := $a.controlTcp -}}
{{- if $t.enabled -}}
{{- $ctl := $cfg.control -}}
{{- $_ := set $ctl "tcp_listen" (printf "0.0.0.0:%d" (int $t.port)) -}}
{{- $_ := set $ctl "admin_token_file" (printf "%s/%s" (include "tokenmem.controlTokenDir" .) (required "agent.controlTcp.tokenSecret.key is required" $t.tokenSecret.key)) -}}
{{- if $t.tls.secretName -}}
{{- $_ := set $ctl "tls_cert_file" (printf "%s/tls.crt" (include "tokenmem.controlTlsDir" .)) -}}
{{- $_ := set $ctl "tls_key_file" (printf "%s/tls.key" (include "tokenmem.controlTlsDir" .)) -}}
{{- if $t.tls.requireClientCert -}}
{{- $_ := set $ctl "tls_client_ca_file" (printf "%s/ca.crt" (include "tokenmem.controlTlsDir" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $r := .Values.remote -}}
{{- if $r.enabled -}}
{{- $_ := set $cfg "remote" (dict "listen" (printf "0.0.0.0:%d" (int $r.port)) "max_connections" (int $r.maxConnections) "workers" (int $r.workers)) -}}
{{- end -}}
{{- if include "tokenmem.clusterEnabled" . -}}
{{- $c := .Values.cluster -}}
{{- if le (int $c.heartbeatTimeoutMs) (int $c.heartbeatIntervalMs) -}}
{{- fail "cluster.heartbeatTimeoutMs must be greater than cluster.heartbeatIntervalMs" -}}
{{- end -}}
{{- $_ := set $cfg "cluster" (dict
  "dns_name" (printf "%s.%s.svc.%s:%d" (include "tokenmem.peersServiceName" .) .Release.Namespace (default "cluster.local" $c.clusterDomain) (int $r.port))
  "secret_file" (printf "%s/%s" (include "tokenmem.clusterSecretDir" .) (required "cluster.secret.key is required" $c.secret.key))
  "heartbeat_interval_ms" (int $c.heartbeatIntervalMs)
  "heartbeat_timeout_ms" (int $c.heartbeatTimeoutMs)
  "forward_queue_blocks" (int $c.forwardQueueBlocks)) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $cfg $a.extraConfig) -}}
{{- end -}}
