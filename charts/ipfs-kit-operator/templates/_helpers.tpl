{{/*
The chart name, or nameOverride.
*/}}
{{- define "ipfs-kit-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: fullnameOverride, else the release name when it contains the chart
name, else <release>-<chart>. At most 63 characters (a DNS label).
*/}}
{{- define "ipfs-kit-operator.fullname" -}}
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

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) are shared by every namespace: their name
carries the release namespace so that two releases of the same name in different namespaces do not
collide.
*/}}
{{- define "ipfs-kit-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ipfs-kit-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ipfs-kit-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "ipfs-kit-operator.labels" -}}
helm.sh/chart: {{ include "ipfs-kit-operator.chart" . }}
{{ include "ipfs-kit-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ipfs-kit-operator
{{- end }}

{{/*
Labels that select the operator pods (immutable in a Deployment: never add to these).
*/}}
{{- define "ipfs-kit-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipfs-kit-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ipfs-kit-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ipfs-kit-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount to run as when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ipfs-kit-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "ipfs-kit-operator.leaseName" -}}
{{- default (include "ipfs-kit-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The Secret holding the dashboard token, and its key.
*/}}
{{- define "ipfs-kit-operator.dashboardTokenSecret" -}}
{{- default (printf "%s-dashboard-token" (include "ipfs-kit-operator.fullname" .)) .Values.dashboard.token.existingSecret }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express; each error names the values to change.
*/}}
{{- define "ipfs-kit-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: two replicas without leader election would both write; set replicaCount=1 or leaderElection.enabled=true" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.dashboard.enabled (eq (int .Values.dashboard.port) (int .Values.controller.metricsPort)) }}
{{- fail (printf "dashboard.port and controller.metricsPort are both %d: the two containers share the pod's network, choose different ports" (int .Values.dashboard.port)) }}
{{- end }}
{{- end }}

{{/*
Log settings of both containers.
*/}}
{{- define "ipfs-kit-operator.logEnv" -}}
- name: RUST_LOG
  value: {{ .Values.log.level | quote }}
- name: IPFS_KIT_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end }}
