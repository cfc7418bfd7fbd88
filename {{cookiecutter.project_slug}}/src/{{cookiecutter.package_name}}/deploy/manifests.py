"""The Kubernetes manifests of the service, rendered from params.yaml (`deploy:`, and the
serving settings they must agree with) into deploy/ by `make manifests`: a kustomize base and one
overlay per environment, each rendered by `kubectl kustomize deploy/overlays/<name>`.

- base: the Deployment (the release image by digest; a pod that passes Kubernetes' restricted
  Pod Security profile: a high non-root uid, no privilege escalation, no capabilities, the
  runtime's seccomp profile, a read-only root filesystem; secrets mounted as files, never as
  environment variables; probes, requests and limits), its Service, a PodDisruptionBudget and a
  NetworkPolicy (ingress from the Gateway's and Prometheus's namespaces only, egress to DNS and
  the log's database only); a PodMonitor when `deploy.metrics.scrape` is `pod_monitor`.
- staging: the base, a HorizontalPodAutoscaler and a Gateway API HTTPRoute.
- production: the base handed to Flagger. Its Canary sends a new version a growing share of the
  traffic (`deploy.canary.step_weights`) and rolls it back when its MetricTemplates' checks fail;
  Flagger makes the production Services and HTTPRoute itself, so the overlay removes the base's
  Service (re-applied, it would point the traffic back at the canary's pods). Flagger relabels
  the primary's pods `app: <name>-primary`: the PodDisruptionBudget and the NetworkPolicy select
  both labels (`pod_selector`), so they cover the primary and the canary alike.

Python data written with PyYAML in a fixed order: the same params give the same bytes, so a unit
test holds the committed files to what params.yaml renders (as uv.lock is held to pyproject).
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any, Final

import yaml

from {{ cookiecutter.package_name }}.config import (
    SPOOL_FULL_SHARE,
    DeployConfig,
    DeployEnvironment,
    Params,
    quantity_value,
)
from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.schema import load_schema

DEPLOY_DIR = Path("deploy")
HEADER: Final = (
    "# Rendered by `make manifests` from params.yaml (deploy:): edit params.yaml, not this file.\n"
)
# Deployed by digest: the deploy step replaces this placeholder in the overlay's `images:` entry
# (`kustomize edit set image <image>@sha256:<digest>` in the overlay's directory).
PLACEHOLDER_DIGEST: Final = "sha256:" + "0" * 64
PORT: Final = 3000  # bentoml serve's port in the image
# The pod's uid and gid. `bentoml containerize`'s user `bentoml` is uid 1034 (BentoML's
# BENTO_UID_GID); a uid under 10000 may be a host user's (checkov CKV_K8S_40), so the pod runs as
# this one instead: the image's files are world-readable and everything it writes is on the
# volumes below (the template's release test runs the image so: `--user 10001:10001 --read-only`).
RUN_AS_UID: Final = 10001
# Writable directories on a read-only root filesystem, emptyDirs: BentoML's home (its Prometheus
# multiprocess files, temporary files; the image's own home holds the bento, so another path)
# and /tmp. The prediction log's spool (records wait there while the log's database fails) is
# deploy.spool's volume: an emptyDir (it survives container restarts, not the pod) or a claim
# the replicas share.
WRITABLE_DIRS: Final = {
    "bentoml-home": ("/var/lib/bentoml", "256Mi"),
    "tmp": ("/tmp", "256Mi"),
}
SPOOL_VOLUME, SPOOL_DIR = "prediction-spool", "/var/spool/predictions"
# Secrets as files (checkov CKV_K8S_35: an environment variable leaks into crash dumps, child
# processes and `kubectl describe`): by deploy.secrets' key, the volume, the environment variable
# that names the file (not its content) for the service, and the Secret's key (the file's name).
SECRETS_DIR: Final = "/etc/secrets"
SECRET_FILES: Final = {
    "prediction_log": ("prediction-log", "PREDICTION_LOG_FILE", "url"),
    "api_tokens": ("api-tokens", "API_TOKENS_FILE", "tokens.json"),
    "log_key": ("log-key", "LOG_KEY_FILE", "log-key"),
}


class Octal(int):
    """A file mode, written in octal (0440) as people read modes; YAML 1.1 (PyYAML, kustomize's
    parser) reads it back as the same number."""


SECRET_MODE: Final = Octal(0o440)  # owner root, group the pod's fsGroup: the pod's user reads
PRESTOP_SECONDS: Final = 5  # the load balancers drop the pod before it is told to stop
FLUSH_SECONDS: Final = 10  # after the last request: the prediction log's writes and spool


def secret_path(volume: str, key: str) -> str:
    """Where the pod reads one Secret's key."""
    return f"{SECRETS_DIR}/{volume}/{key}"


def grace_seconds(params: Params) -> int:
    """Long enough for the load balancers to let go, the slowest request allowed
    (serving.timeout) to finish, and the prediction log to flush."""
    return PRESTOP_SECONDS + math.ceil(params.serving.timeout) + FLUSH_SECONDS


def selector(name: str) -> dict[str, str]:
    """The pod label Flagger keys on: it renames it `<name>-primary` on the primary's pods."""
    return {"app": name}


def pod_selector(name: str) -> dict[str, Any]:
    """The service's pods whoever runs them: the Deployment's (`app: <name>`: staging's, and
    production's canary) and Flagger's primary (`app: <name>-primary`)."""
    primary = f"{name}-primary"
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": [name, primary]}]}


def metadata(name: str, deploy: DeployConfig) -> dict[str, Any]:
    return {"name": name, "labels": selector(deploy.name)}


def quantities(resources: Any) -> dict[str, str]:
    return {"cpu": resources.cpu, "memory": resources.memory}


def deployment(params: Params) -> dict[str, Any]:
    deploy = params.deploy
    http_get = {"port": "http", "path": "/livez"}
    container = {
        "name": "model-server",
        "image": deploy.image,  # the overlays pin it by digest
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "BENTOML_HOME", "value": WRITABLE_DIRS["bentoml-home"][0]},
            {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
            {"name": "PREDICTION_SPOOL", "value": SPOOL_DIR},
            {"name": "PREDICTION_SPOOL_MAX_BYTES", "value": str(spool_max_bytes(deploy))},
            *(
                {"name": variable, "value": secret_path(volume, key)}
                for volume, variable, key in SECRET_FILES.values()
            ),
        ],
        "resources": {
            "requests": quantities(deploy.resources.requests),
            "limits": quantities(deploy.resources.limits),
        },
        # Up to 5 minutes to load the model before liveness counts.
        "startupProbe": {"httpGet": http_get, "periodSeconds": 5, "failureThreshold": 60},
        "livenessProbe": {
            "httpGet": http_get,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"port": "http", "path": "/readyz"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            *({"name": volume, "mountPath": path} for volume, (path, _) in WRITABLE_DIRS.items()),
            {"name": SPOOL_VOLUME, "mountPath": SPOOL_DIR},
            *(
                {"name": volume, "mountPath": f"{SECRETS_DIR}/{volume}", "readOnly": True}
                for volume, _, _ in SECRET_FILES.values()
            ),
        ],
    }
    pod = {
        "metadata": {
            "labels": selector(deploy.name),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # the image's entrypoint reads PORT-like variables
            "terminationGracePeriodSeconds": grace_seconds(params),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_UID,
                "runAsGroup": RUN_AS_UID,
                "fsGroup": RUN_AS_UID,  # the group of the volumes' files, the secrets' included
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            **(
                {"imagePullSecrets": [{"name": name} for name in deploy.image_pull_secrets]}
                if deploy.image_pull_secrets
                else {}
            ),
            "volumes": [
                *(
                    {"name": volume, "emptyDir": {"sizeLimit": size}}
                    for volume, (_, size) in WRITABLE_DIRS.items()
                ),
                spool_volume(deploy),
                *(
                    {
                        "name": volume,
                        "secret": {
                            "secretName": getattr(deploy.secrets, field),
                            "items": [{"key": key, "path": key}],  # a missing key stops the pod
                            "defaultMode": SECRET_MODE,
                        },
                    }
                    for field, (volume, _, key) in SECRET_FILES.items()
                ),
            ],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(deploy.name, deploy),
        "spec": {  # no replicas: the HorizontalPodAutoscaler owns the count
            "selector": {"matchLabels": selector(deploy.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": pod,
        },
    }


def service(deploy: DeployConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(deploy.name, deploy),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(deploy.name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(deploy: DeployConfig) -> dict[str, Any]:
    """One pod at a time may be evicted (a node drain), whatever the replica count."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(deploy.name, deploy),
        "spec": {"maxUnavailable": 1, "selector": pod_selector(deploy.name)},
    }


DNS_PORT: Final = 53


def network_policy(deploy: DeployConfig) -> dict[str, Any]:
    """Only the Gateway's proxies (the API) and Prometheus (/metrics) may call the pods; the pods
    may call DNS and the log's database only. The kubelet's probes are not subject to it."""
    network = deploy.network

    def namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    egress: list[dict[str, Any]] = [
        {
            "to": [namespace("kube-system")],
            "ports": [{"port": DNS_PORT, "protocol": protocol} for protocol in ("UDP", "TCP")],
        }
    ]
    database = network.log_database
    if database is not None:
        destination = (
            {"ipBlock": {"cidr": database.cidr}}
            if database.cidr is not None
            else namespace(str(database.namespace))
        )
        egress.append({"to": [destination], "ports": [{"port": database.port, "protocol": "TCP"}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(deploy.name, deploy),
        "spec": {
            "podSelector": pod_selector(deploy.name),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        namespace(network.gateway_namespace),
                        namespace(network.prometheus_namespace),
                    ],
                    "ports": [{"port": PORT, "protocol": "TCP"}],
                }
            ],
            "egress": egress,
        },
    }


def spool_max_bytes(deploy: DeployConfig) -> int:
    """The spool's byte limit (PREDICTION_SPOOL_MAX_BYTES): SPOOL_FULL_SHARE of its volume."""
    return int(quantity_value(deploy.spool.size) * SPOOL_FULL_SHARE)


def spool_claim_name(deploy: DeployConfig) -> str:
    return f"{deploy.name}-{SPOOL_VOLUME}"


def spool_volume(deploy: DeployConfig) -> dict[str, Any]:
    if deploy.spool.volume == "persistent_volume_claim":
        return {
            "name": SPOOL_VOLUME,
            "persistentVolumeClaim": {"claimName": spool_claim_name(deploy)},
        }
    return {"name": SPOOL_VOLUME, "emptyDir": {"sizeLimit": deploy.spool.size}}


def spool_claim(deploy: DeployConfig) -> dict[str, Any]:
    """The volume every replica's spool shares (the primary's and the canary's too), which
    outlives them: whichever replica replays next takes over what a gone one left."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": deploy.spool.size}},
    }
    if deploy.spool.storage_class:
        spec["storageClassName"] = deploy.spool.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(spool_claim_name(deploy), deploy),
        "spec": spec,
    }


def prometheus_rule(deploy: DeployConfig) -> dict[str, Any]:
    """The Prometheus Operator's alerts on the spool: records that stay in it (the log's
    database has not taken them back), and replays that keep failing."""
    pods = f'pod=~"{deploy.name}(-primary)?{POD_ID}"'  # the canary's and the primary's
    spooled = "prediction_spool_records{" + pods + "}"
    failures = "prediction_spool_replay_failures_total{" + pods + "}"
    pod = flagger_variable("$labels.pod")  # Prometheus's alert templates share the syntax
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": deploy.name,
            "labels": {**selector(deploy.name), **deploy.metrics.pod_monitor_labels},
        },
        "spec": {
            "groups": [
                {
                    "name": f"{deploy.name}-prediction-log",
                    "rules": [
                        {
                            "alert": "PredictionSpoolNotDraining",
                            "expr": f"max by (namespace, pod) ({spooled}) > 0",
                            "for": "10m",
                            "labels": {"severity": "warning"},
                            "annotations": {
                                "summary": "Answered predictions wait in a pod's spool",
                                "description": (
                                    f"{pod} has kept records in its spool for 10"
                                    " minutes: the prediction log's database does not take"
                                    f" them. At {SPOOL_FULL_SHARE * 100:g} % of"
                                    " deploy.spool.size it answers 503."
                                ),
                            },
                        },
                        {
                            "alert": "PredictionSpoolReplaysFailing",
                            "expr": f"sum by (namespace, pod) (increase({failures}[5m])) > 0",
                            "for": "15m",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": "A pod cannot replay its spool into the log",
                                "description": (
                                    f"{pod} has failed to replay its spool into the"
                                    " prediction log's database for 15 minutes."
                                ),
                            },
                        },
                    ],
                }
            ]
        },
    }


def pod_monitor(deploy: DeployConfig) -> dict[str, Any]:
    """The Prometheus Operator's scrape of every pod of the service (primary and canary), whose
    series carry `namespace` and `pod`, the labels the canary's checks group by."""
    metrics = deploy.metrics
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": deploy.name,
            "labels": {**selector(deploy.name), **metrics.pod_monitor_labels},
        },
        "spec": {
            "selector": pod_selector(deploy.name),
            "podMetricsEndpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": metrics.interval,
                    "relabelings": [
                        {
                            "sourceLabels": [f"__meta_kubernetes_{source}"],
                            "targetLabel": target,
                            "action": "replace",
                        }
                        for source, target in (("namespace", "namespace"), ("pod_name", "pod"))
                    ],
                }
            ],
        },
    }


def autoscaler(deploy: DeployConfig, environment: DeployEnvironment) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(deploy.name, deploy),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy.name},
            "minReplicas": environment.min_replicas,
            "maxReplicas": environment.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": deploy.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def gateway_ref(deploy: DeployConfig) -> dict[str, str]:
    return {"name": deploy.gateway.name, "namespace": deploy.gateway.namespace}


def http_route(deploy: DeployConfig, environment: DeployEnvironment) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(deploy.name, deploy),
        "spec": {
            "parentRefs": [gateway_ref(deploy)],
            "hostnames": [environment.host],
            "rules": [{"backendRefs": [{"name": deploy.name, "port": PORT}]}],
        },
    }


# Flagger's MetricTemplate queries. Flagger fills in its variables (written here without their
# double braces in the source, which the project template would take for its own): `namespace`,
# `target` (the Deployment) and `interval` (the metric's).
# - Errors and latency as the gateway saw them, where its statistics tell the canary apart: what
#   clients got, failures the pod never counted included (a crashed or hung pod, a reset
#   connection). Contour's Envoy names the canary's upstream cluster
#   <namespace>_<target>-canary_<port> (as in Flagger's Gateway API tutorial). Envoy Gateway puts
#   a route rule's backends in one cluster (envoyproxy/gateway#6742), so there they are what the
#   canary's pods counted (BentoML's bentoml_service_request_* of the API routes): a failure no
#   pod answered is not in them.
# - Decisions as the service counts them (`predictions_total`), pods told apart by name as
#   Flagger's own checks do: the canary's are <target>-<hash>-<id>, the primary's
#   <target>-primary-<hash>-<id>; the `pod` and `namespace` labels come from the scrape (the
#   prometheus.io annotations' usual job, or a PodMonitor).
def flagger_variable(name: str) -> str:
    return "{" * 2 + f" {name} " + "}" * 2


NAMESPACE, TARGET, INTERVAL = map(flagger_variable, ("namespace", "target", "interval"))
POD_ID: Final = "-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
CANARY_PODS: Final = f'namespace="{NAMESPACE}", pod=~"{TARGET}{POD_ID}"'
PRIMARY_PODS: Final = f'namespace="{NAMESPACE}", pod=~"{TARGET}-primary{POD_ID}"'
CANARY_CLUSTER: Final = f'envoy_cluster_name=~"{NAMESPACE}_{TARGET}-canary_[0-9a-zA-Z-]+"'
API_ROUTES: Final = 'endpoint=~"/predict|/explain|/feedback"'


def rate(metric: str, *labels: str) -> str:
    """`rate(metric{labels}[interval])`."""
    return "rate(" + metric + "{" + ", ".join(labels) + "}[" + INTERVAL + "])"


def traffic_queries(implementation: str) -> dict[str, tuple[str, str]]:
    """The error-rate and latency-p99 checks, as `implementation`'s gateway lets them be
    measured: what each measures, its query."""
    if implementation == "contour":
        failed = rate("envoy_cluster_upstream_rq", CANARY_CLUSTER, 'envoy_response_code=~"5.."')
        answered = rate("envoy_cluster_upstream_rq", CANARY_CLUSTER)
        milliseconds = rate("envoy_cluster_upstream_rq_time_bucket", CANARY_CLUSTER)
        return {
            "error-rate": (
                "the canary's share of requests answered 5xx, at the gateway",
                f"(sum({failed}) or vector(0))\n/\nsum({answered})\n",
            ),
            "latency-p99": (
                "the canary's 99th percentile latency at the gateway, in seconds",
                f"histogram_quantile(0.99, sum by (le) ({milliseconds}))\n/ 1000\n",
            ),
        }
    failed = rate(
        "bentoml_service_request_total", CANARY_PODS, API_ROUTES, 'http_response_code=~"5.."'
    )
    answered = rate("bentoml_service_request_total", CANARY_PODS, API_ROUTES)
    seconds = rate("bentoml_service_request_duration_seconds_bucket", CANARY_PODS, API_ROUTES)
    return {
        "error-rate": (
            "the canary's share of API requests its pods answered 5xx",
            f"(sum({failed}) or vector(0))\n/\nsum({answered})\n",
        ),
        "latency-p99": (
            "the canary's 99th percentile latency of API requests in its pods, in seconds",
            f"histogram_quantile(0.99, sum by (le) ({seconds}))\n",
        ),
    }


def canary_decisions(pods: str = CANARY_PODS, window: str = INTERVAL) -> str:
    """The decisions the canary's pods made in `window` (every task counts predictions_total)."""
    return "sum(increase(predictions_total{" + pods + "}[" + window + "]))"


def judged_on_enough_decisions(shift: str, min_decisions: int) -> str:
    """The decision check's query, neutral on too small a sample: the shift once the canary
    made at least `min_decisions` decisions in the check's window, 0 (a pass) below that, and
    no value when its pods never counted one (as the other checks, finding no traffic).
    The enough-decisions webhook (`enough_decisions_hook`) keeps the canary's weight while
    the check is neutral, so no step is passed on a sample this small."""
    decided = canary_decisions()
    return (
        f"(\n{shift}) * on() ({decided} >= bool {min_decisions})\n"
        f"or on() ({decided} < {min_decisions}) * 0\n"
    )


def metric_queries(params: Params, implementation: str | None = None) -> dict[str, tuple[str, str]]:
    """Each check of the canary, by its MetricTemplate's name: what it measures, its query; for
    deploy.gateway.implementation unless another is named."""
    task = params.task(load_schema(params.data.schema_file).target_values)
    description, shift = task.decision_shift(rate, CANARY_PODS, PRIMARY_PODS)
    minimum = params.deploy.canary.min_decisions
    return {
        **traffic_queries(implementation or params.deploy.gateway.implementation),
        "decision-shift": (
            f"{description}; 0 on fewer than {minimum} canary decisions",
            judged_on_enough_decisions(shift, minimum),
        ),
    }


ENOUGH_DECISIONS_HOOK: Final = "enough-decisions"


def enough_decisions_command(params: Params) -> str:
    """The bash command the enough-decisions webhook has Flagger's load tester run: it fails
    (holding the canary's weight) while the canary has made some decisions in the decision
    check's window, but fewer than deploy.canary.min_decisions; none at all (the first tick,
    at 0 %) or enough pass. A failed query fails it too. Flagger fills no variable in a
    webhook, so the production namespace, the target and the window are written out."""
    deploy, analysis = params.deploy, params.deploy.canary
    pods = CANARY_PODS.replace(NAMESPACE, deploy.environments.production.namespace).replace(
        TARGET, deploy.name
    )
    query = canary_decisions(pods, analysis.decision_window)
    minimum, window = analysis.min_decisions, analysis.decision_window
    hold = (
        f'printf "the canary made %d decisions in {window}, fewer than'
        f' deploy.canary.min_decisions ({minimum}): its weight holds\\n", n; exit 1'
    )
    # awk's braces joined in, not written into an f-string (nor doubled: this file is a template)
    awk = "BEGIN " + "{" + f" if (n > 0 && n < {minimum}) " + "{" + f" {hold} " + "} }"
    return (
        "set -o pipefail; "
        f"n=$(curl -sfG {shlex.quote(deploy.prometheus + '/api/v1/query')}"
        f" --data-urlencode 'query={query}'"
        """ | jq -r '.data.result[0].value[1] // "0"') && """
        f"""awk -v n="$n" '{awk}'"""
    )


def enough_decisions_hook(params: Params) -> dict[str, Any]:
    """A confirm-traffic-increase webhook: Flagger calls it before each traffic increase and
    the promotion, and holds the weight, without counting a failed check, while it fails."""
    return {
        "name": ENOUGH_DECISIONS_HOOK,
        "type": "confirm-traffic-increase",
        "url": params.deploy.canary.loadtester,
        "timeout": "15s",
        "metadata": {"type": "bash", "cmd": enough_decisions_command(params)},
    }


def metric_templates(params: Params) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {
                **metadata(f"{params.deploy.name}-{name}", params.deploy),
                "annotations": {"description": description},
            },
            "spec": {
                "provider": {"type": "prometheus", "address": params.deploy.prometheus},
                "query": query,
            },
        }
        for name, (description, query) in metric_queries(params).items()
    ]


def canary(params: Params) -> dict[str, Any]:
    deploy, analysis = params.deploy, params.deploy.canary
    limits = {
        "error-rate": (analysis.max_error_rate, analysis.interval),
        "latency-p99": (analysis.max_latency_p99, analysis.interval),
        "decision-shift": (analysis.max_decision_shift, analysis.decision_window),
    }
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": metadata(deploy.name, deploy),
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy.name},
            "autoscalerRef": {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "name": deploy.name,
            },
            "service": {
                "port": PORT,
                "targetPort": "http",
                "portName": "http",
                "hosts": [deploy.environments.production.host],
                "gatewayRefs": [gateway_ref(deploy)],
            },
            "analysis": {
                "interval": analysis.interval,
                "threshold": analysis.failed_checks,
                "stepWeights": list(analysis.step_weights),
                "metrics": [
                    {
                        "name": name,
                        "templateRef": {"name": f"{deploy.name}-{name}"},
                        "thresholdRange": {"max": limit},
                        "interval": interval,
                    }
                    for name, (limit, interval) in limits.items()
                ],
                "webhooks": [enough_decisions_hook(params)],
            },
        },
    }


def strategic_patch(kind: str, name: str, body: dict[str, Any]) -> dict[str, str]:
    """A kustomize `patches:` entry merging `body` into one resource."""
    patch = {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": {"name": name}, **body}
    return {"patch": dump([patch])}


API_VERSIONS: Final = {"Service": "v1"}


def kustomization(
    resources: list[str],
    namespace: str | None = None,
    image: str | None = None,
    patches: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
    }
    if namespace:
        found["namespace"] = namespace
    found["resources"] = resources
    if image:
        found["images"] = [{"name": image, "digest": PLACEHOLDER_DIGEST}]
    if patches:
        found["patches"] = patches
    return found


def render(params: Params) -> dict[Path, str]:
    """Every file of deploy/, by path (under DEPLOY_DIR), as `make manifests` writes it."""
    deploy = params.deploy
    staging, production = deploy.environments.staging, deploy.environments.production
    base: dict[str, list[dict[str, Any]]] = {
        "deployment.yaml": [deployment(params)],
        "service.yaml": [service(deploy)],
        "pod-disruption-budget.yaml": [disruption_budget(deploy)],
        "network-policy.yaml": [network_policy(deploy)],
    }
    if deploy.spool.volume == "persistent_volume_claim":
        base["spool-claim.yaml"] = [spool_claim(deploy)]
    if deploy.metrics.scrape == "pod_monitor":
        base["pod-monitor.yaml"] = [pod_monitor(deploy)]
        base["prometheus-rule.yaml"] = [prometheus_rule(deploy)]
    files: dict[str, list[dict[str, Any]]] = {
        **{f"base/{name}": documents for name, documents in base.items()},
        "base/kustomization.yaml": [kustomization(list(base))],
        "overlays/staging/autoscaler.yaml": [autoscaler(deploy, staging)],
        "overlays/staging/http-route.yaml": [http_route(deploy, staging)],
        "overlays/staging/kustomization.yaml": [
            kustomization(
                ["../../base", "autoscaler.yaml", "http-route.yaml"],
                namespace=staging.namespace,
                image=deploy.image,
            )
        ],
        "overlays/production/autoscaler.yaml": [autoscaler(deploy, production)],
        "overlays/production/canary.yaml": [canary(params)],
        "overlays/production/metric-templates.yaml": metric_templates(params),
        "overlays/production/kustomization.yaml": [
            kustomization(
                ["../../base", "autoscaler.yaml", "canary.yaml", "metric-templates.yaml"],
                namespace=production.namespace,
                image=deploy.image,
                patches=[
                    # Flagger owns the production Services (<name>, -primary, -canary).
                    strategic_patch("Service", deploy.name, {"$patch": "delete"}),
                ],
            )
        ],
    }
    return {DEPLOY_DIR / path: HEADER + dump(documents) for path, documents in files.items()}


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the queries, the patches), so they read as written;
    a value used twice written twice (no YAML anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def _octal(dumper: yaml.SafeDumper, mode: Octal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:int", f"0{mode:o}")


_Dumper.add_representer(str, _string)
_Dumper.add_representer(Octal, _octal)


def dump(documents: list[dict[str, Any]]) -> str:
    """YAML documents in the order their keys were written; long lines never folded (a longer
    project name must not move line breaks)."""
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, width=10_000, default_flow_style=False
    )


def rendered_files(root: Path) -> set[Path]:
    """The files under root/deploy that `make manifests` wrote (they start with its header)."""
    directory = root / DEPLOY_DIR
    if not directory.is_dir():
        return set()
    return {
        path.relative_to(root)
        for path in directory.rglob("*.yaml")
        if path.read_text().startswith(HEADER)
    }


def differences(params: Params, root: Path = Path()) -> list[str]:
    """What is out of date in root/deploy: missing, changed and stale files."""
    wanted = render(params)
    found = []
    for path, text in wanted.items():
        current = root / path
        if not current.is_file():
            found.append(f"{path}: missing")
        elif current.read_text() != text:
            found.append(f"{path}: differs from what params.yaml renders")
    found += [f"{path}: stale" for path in sorted(rendered_files(root) - set(wanted))]
    return found


def write(params: Params, root: Path = Path()) -> list[Path]:
    """Write deploy/ under root; remove rendered files params no longer produce. Returns the
    paths changed."""
    wanted = render(params)
    changed = []
    for path in sorted(rendered_files(root) - set(wanted)):
        (root / path).unlink()
        changed.append(path)
    for path, text in wanted.items():
        target = root / path
        if target.is_file() and target.read_text() == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        changed.append(path)
    return changed


def check(params: Params, root: Path = Path()) -> None:
    """Raise when the committed manifests are not what params.yaml renders."""
    problems = differences(params, root)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise PipelineError(
            f"deploy/ is not what params.yaml renders: run `make manifests` and commit:\n{listed}"
        )
