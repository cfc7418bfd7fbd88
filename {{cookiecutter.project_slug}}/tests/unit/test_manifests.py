"""deploy/ is what params.yaml renders (as uv.lock is what pyproject.toml locks), and the deploy
section refuses values the cluster or Flagger would take badly, naming the key."""

import re
import shutil
import subprocess
import tempfile
import typing
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import GatewayRef, Params
from {{ cookiecutter.package_name }}.deploy import manifests
from {{ cookiecutter.package_name }}.errors import ConfigError, PipelineError
from tests.conftest import PROJECT_ROOT, edit_params

pytestmark = pytest.mark.unit


def test_the_committed_manifests_are_what_params_render(project_root: Path, params) -> None:
    problems = manifests.differences(params, project_root)
    assert not problems, "deploy/ is stale: run `make manifests` and commit it:\n" + "\n".join(
        problems
    )


def documents(rendered: dict[Path, str], name: str) -> list[dict]:
    return list(yaml.safe_load_all(rendered[manifests.DEPLOY_DIR / name]))


def test_every_limit_and_step_comes_from_params(workspace: Path) -> None:
    params = edit_params(
        workspace,
        deploy__canary={
            "step_weights": [10, 50],
            "interval": "30s",
            "failed_checks": 3,
            "max_error_rate": 0.02,
            "max_latency_p99": 0.25,
            "max_decision_shift": 0.05,
            "decision_window": "2m",
            "min_decisions": 321,
            "loadtester": "http://loadtester.flagger/",
        },
        deploy__target_cpu_utilization=55,
    )
    rendered = manifests.render(params)
    [canary] = documents(rendered, "overlays/production/canary.yaml")
    analysis = canary["spec"]["analysis"]
    assert analysis["stepWeights"] == [10, 50]
    assert (analysis["interval"], analysis["threshold"]) == ("30s", 3)
    limits = {
        metric["name"]: (metric["thresholdRange"]["max"], metric["interval"])
        for metric in analysis["metrics"]
    }
    assert limits == {
        "error-rate": (0.02, "30s"),
        "latency-p99": (0.25, "30s"),
        "decision-shift": (0.05, "2m"),
    }
    templates = {
        document["metadata"]["name"]
        for document in documents(rendered, "overlays/production/metric-templates.yaml")
    }
    assert templates == {metric["templateRef"]["name"] for metric in analysis["metrics"]}
    [hook] = analysis["webhooks"]
    assert (hook["type"], hook["url"]) == ("confirm-traffic-increase", "http://loadtester.flagger/")
    command = hook["metadata"]["cmd"]
    assert "n < 321" in command and "[2m]" in command, command
    namespace = params.deploy.environments.production.namespace
    assert f'namespace="{namespace}"' in command and "{" * 2 not in command, command
    for overlay, environment in params.deploy.environments:
        [hpa] = documents(rendered, f"overlays/{overlay}/autoscaler.yaml")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            environment.min_replicas,
            environment.max_replicas,
        )
        target = hpa["spec"]["metrics"][0]["resource"]["target"]
        assert target["averageUtilization"] == 55


def test_the_pod_outlives_the_slowest_request(workspace: Path) -> None:
    params = edit_params(workspace, serving__timeout=90, serving__max_queue_wait=5)
    [deployment] = documents(manifests.render(params), "base/deployment.yaml")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > manifests.PRESTOP_SECONDS + 90


def test_the_pod_passes_the_restricted_profile_and_reads_secrets_only_from_files(params) -> None:
    """Kubernetes' restricted Pod Security profile, a uid no host user has (>= 10000), and every
    secret a read-only file of a Secret params name: no environment variable carries one."""
    [deployment] = documents(manifests.render(params), "base/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["runAsGroup"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "envFrom" not in container
    assert all("valueFrom" not in variable for variable in container["env"]), container["env"]
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    secrets = {volume["name"]: volume["secret"] for volume in pod["volumes"] if "secret" in volume}
    wanted = {
        "PREDICTION_LOG_FILE": (params.deploy.secrets.prediction_log, "url"),
        "API_TOKENS_FILE": (params.deploy.secrets.api_tokens, "tokens.json"),
        "LOG_KEY_FILE": (params.deploy.secrets.log_key, "log-key"),
    }
    found = {}
    for variable, file in environment.items():
        [volume] = [
            name for name, mount in mounts.items() if file.startswith(mount["mountPath"] + "/")
        ] or [None]
        if volume in secrets:
            assert mounts[volume]["readOnly"] is True
            assert secrets[volume]["defaultMode"] & 0o037 == 0, "group read at most, others none"
            [item] = secrets[volume]["items"]
            assert file == f"{mounts[volume]['mountPath']}/{item['path']}"
            found[variable] = (secrets[volume]["secretName"], item["key"])
    assert found == wanted
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn) applied to labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        inside = labels.get(expression["key"]) in expression["values"]
        if inside != (expression["operator"] == "In"):
            return False
    return True


def test_the_network_policy_and_the_budget_cover_flaggers_primary_pods_too(params) -> None:
    """Flagger relabels the primary's pods `app: <name>-primary`: a selector of `app: <name>`
    alone would leave the pods that serve production open to every caller."""
    rendered = manifests.render(params)
    [policy] = documents(rendered, "base/network-policy.yaml")
    [budget] = documents(rendered, "base/pod-disruption-budget.yaml")
    name = params.deploy.name
    for selector in (policy["spec"]["podSelector"], budget["spec"]["selector"]):
        assert selects(selector, {"app": name})
        assert selects(selector, {"app": f"{name}-primary"})
        assert not selects(selector, {"app": f"{name}-other"})
    [deployment] = documents(rendered, "base/deployment.yaml")
    assert selects(
        policy["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    production = yaml.safe_load(
        rendered[manifests.DEPLOY_DIR / "overlays/production/kustomization.yaml"]
    )
    assert "PodDisruptionBudget" not in str(production.get("patches"))


def test_prometheus_finds_every_pod_with_the_labels_the_canary_checks_group_by(
    workspace: Path, params
) -> None:
    """A stock cluster's Prometheus (the Operator's) ignores the prometheus.io annotations: the
    PodMonitor scrapes the primary's and the canary's pods on the container's `http` port, its
    series labelled `namespace` and `pod`, itself labelled as that Prometheus selects. A plain
    Prometheus (`scrape: annotations`) gets no PodMonitor, whose kind it would not know."""
    rendered = manifests.render(params)
    [monitor] = documents(rendered, "base/pod-monitor.yaml")
    [deployment] = documents(rendered, "base/deployment.yaml")
    base = yaml.safe_load(rendered[manifests.DEPLOY_DIR / "base/kustomization.yaml"])
    assert "pod-monitor.yaml" in base["resources"]
    name = params.deploy.name
    assert selects(monitor["spec"]["selector"], {"app": name})
    assert selects(monitor["spec"]["selector"], {"app": f"{name}-primary"})
    assert params.deploy.metrics.pod_monitor_labels.items() <= monitor["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert endpoint["path"] == "/metrics"
    targets = {
        relabel["targetLabel"]: relabel["sourceLabels"] for relabel in endpoint["relabelings"]
    }
    assert targets == {
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
    }
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"

    plain = manifests.render(edit_params(workspace, deploy__metrics__scrape="annotations"))
    assert manifests.DEPLOY_DIR / "base/pod-monitor.yaml" not in plain
    assert "pod-monitor.yaml" not in plain[manifests.DEPLOY_DIR / "base/kustomization.yaml"]
    [deployment] = documents(plain, "base/deployment.yaml")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == annotations


def test_the_spool_is_the_pods_own_or_a_shared_claim_and_refuses_before_it_fills(
    workspace: Path, params
) -> None:
    """deploy.spool: an emptyDir of its size (lost with the pod), or a ReadWriteMany claim every
    replica mounts (the primary's too: it is the Deployment's pod spec), which outlives them;
    either way the service refuses at SPOOL_FULL_SHARE of the size, before the volume fills."""
    from {{ cookiecutter.package_name }}.config import SPOOL_FULL_SHARE, quantity_value

    def spool_of(rendered: dict[Path, str]) -> tuple[dict, dict[str, str]]:
        [deployment] = documents(rendered, "base/deployment.yaml")
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == manifests.SPOOL_VOLUME]
        [container] = pod["containers"]
        assert {"name": manifests.SPOOL_VOLUME, "mountPath": manifests.SPOOL_DIR} in container[
            "volumeMounts"
        ]
        return volume, {variable["name"]: variable["value"] for variable in container["env"]}

    size = params.deploy.spool.size
    limit = str(int(quantity_value(size) * SPOOL_FULL_SHARE))
    volume, env = spool_of(manifests.render(params))
    assert params.deploy.spool.volume == "empty_dir"
    assert volume["emptyDir"] == {"sizeLimit": size}
    assert env["PREDICTION_SPOOL"] == manifests.SPOOL_DIR
    assert env["PREDICTION_SPOOL_MAX_BYTES"] == limit and int(limit) < quantity_value(size)

    shared = edit_params(
        workspace,
        deploy__spool__volume="persistent_volume_claim",
        deploy__spool__size="5Gi",
        deploy__spool__storage_class="nfs-client",
    )
    rendered = manifests.render(shared)
    volume, env = spool_of(rendered)
    [claim] = documents(rendered, "base/spool-claim.yaml")
    assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "nfs-client"
    assert env["PREDICTION_SPOOL_MAX_BYTES"] == str(int(5 * 2**30 * SPOOL_FULL_SHARE))
    base = yaml.safe_load(rendered[manifests.DEPLOY_DIR / "base/kustomization.yaml"])
    assert "spool-claim.yaml" in base["resources"]


def test_the_spool_alerts_when_it_keeps_records_or_cannot_replay(workspace: Path, params) -> None:
    """With the Prometheus Operator, a PrometheusRule (labelled as its PodMonitors are) alerts
    on the service's spool gauge and replay-failure counter, for every pod of the service."""
    rendered = manifests.render(params)
    [rule] = documents(rendered, "base/prometheus-rule.yaml")
    assert params.deploy.metrics.pod_monitor_labels.items() <= rule["metadata"]["labels"].items()
    [group] = rule["spec"]["groups"]
    alerts = {entry["alert"]: entry for entry in group["rules"]}
    assert set(alerts) == {"PredictionSpoolNotDraining", "PredictionSpoolReplaysFailing"}
    assert "prediction_spool_records{" in alerts["PredictionSpoolNotDraining"]["expr"]
    failing = alerts["PredictionSpoolReplaysFailing"]["expr"]
    assert "prediction_spool_replay_failures_total{" in failing
    for entry in alerts.values():
        selected = re.search(r'pod=~"([^"]+)"', entry["expr"])
        assert selected, entry["expr"]
        for pod in (
            f"{params.deploy.name}-7d4b9c6f5-x2k9p",
            f"{params.deploy.name}-primary-5f6-a1",
        ):
            assert re.fullmatch(selected[1], pod), pod
    if shutil.which("promtool"):
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as file:
            yaml.safe_dump(rule["spec"], file)
            file.flush()
            checked = subprocess.run(["promtool", "check", "rules", file.name], capture_output=True)
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    plain = manifests.render(edit_params(workspace, deploy__metrics__scrape="annotations"))
    assert manifests.DEPLOY_DIR / "base/prometheus-rule.yaml" not in plain


def test_a_private_image_is_pulled_with_the_secrets_params_name(workspace: Path, params) -> None:
    [deployment] = documents(manifests.render(params), "base/deployment.yaml")
    assert "imagePullSecrets" not in deployment["spec"]["template"]["spec"]
    private = edit_params(workspace, deploy__image_pull_secrets=["ghcr-pull", "mirror-pull"])
    [deployment] = documents(manifests.render(private), "base/deployment.yaml")
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "ghcr-pull"},
        {"name": "mirror-pull"},
    ]


def test_the_network_policy_admits_the_gateway_and_prometheus_and_calls_dns_and_the_log(
    workspace: Path,
) -> None:
    def policy_of(params) -> dict:
        [policy] = documents(manifests.render(params), "base/network-policy.yaml")
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        return policy["spec"]

    def namespaces(peers: list[dict]) -> list[str]:
        return [
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in peers
        ]

    params = edit_params(
        workspace,
        deploy__network__gateway_namespace="envoy-gateway-system",
        deploy__network__prometheus_namespace="observability",
        deploy__network__log_database={"cidr": "192.0.2.10/32", "port": 6432},
    )
    spec = policy_of(params)
    [ingress] = spec["ingress"]
    assert namespaces(ingress["from"]) == ["envoy-gateway-system", "observability"]
    assert ingress["ports"] == [{"port": manifests.PORT, "protocol": "TCP"}]
    dns, database = spec["egress"]
    assert namespaces(dns["to"]) == ["kube-system"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert database == {
        "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
        "ports": [{"port": 6432, "protocol": "TCP"}],
    }
    in_cluster = {"namespace": "databases", "port": 5432}
    spec = policy_of(edit_params(workspace, deploy__network__log_database=in_cluster))
    assert namespaces(spec["egress"][1]["to"]) == ["databases"]
    spec = policy_of(edit_params(workspace, deploy__network__log_database=None))
    assert [namespaces(rule["to"]) for rule in spec["egress"]] == [["kube-system"]]


def test_the_decision_check_compares_what_each_side_decides(params) -> None:
    """Both sides' pods, and the task's decisions: the positive class's share (binary), every
    class's share (multiclass), the mean predicted number (regression)."""
    description, query = manifests.metric_queries(params)["decision-shift"]
    canary, primary = (
        query.count(pods) for pods in (manifests.CANARY_PODS, manifests.PRIMARY_PODS)
    )
    assert canary == primary + 2 and primary > 0  # and the canary's decisions, counted twice
    minimum = params.deploy.canary.min_decisions  # below it the check reads 0 (neutral)
    assert f">= bool {minimum})" in query and f"< {minimum}) * 0" in query, query
    if params.data.task == "binary":
        assert query.count(f'label="{params.data.positive_label}"') == 2
    elif params.data.task == "multiclass":
        assert "sum by (label)" in query and "class" in description
    else:
        assert "predicted_value_sum" in query and "predicted_value_count" in query
    assert shutil.which("promtool") is None or promtool_parses(query)


@pytest.mark.parametrize("implementation", ["contour", "envoy_gateway"])
def test_the_gateway_implementation_decides_where_errors_and_latency_are_read(
    workspace: Path, implementation: str
) -> None:
    """Contour: the canary's upstream cluster in the gateway's Envoy statistics; Envoy Gateway,
    which keeps both backends in one cluster: the API requests the canary's pods counted. Only
    the MetricTemplates change."""
    default = manifests.render(edit_params(workspace))
    params = edit_params(workspace, deploy__gateway__implementation=implementation)
    templates = {
        document["metadata"]["name"].removeprefix(f"{params.deploy.name}-"): document["spec"]
        for document in manifests.metric_templates(params)
    }
    for name in ("error-rate", "latency-p99"):
        query = templates[name]["query"]
        if implementation == "contour":
            assert manifests.CANARY_CLUSTER in query and "bentoml" not in query
        else:
            assert manifests.CANARY_PODS in query and manifests.API_ROUTES in query
            assert "envoy_" not in query
        assert shutil.which("promtool") is None or promtool_parses(query)
    chosen = manifests.render(params)
    changed = {path for path in chosen if chosen[path] != default.get(path)}
    assert changed <= {path for path in chosen if "metric-templates" in str(path)}
    assert (changed != set()) == (implementation != "contour")


BUILT_IN_GROUPS = ("v1", "apps/", "policy/", "autoscaling/", "networking.k8s.io/")


def test_the_hold_command_passes_the_prometheus_address_to_curl_as_written(
    workspace: Path, tmp_path: Path
) -> None:
    """The enough-decisions command runs in bash: an address with shell characters reaches
    curl as one word, never run. A stand-in curl records its arguments and fails, as curl
    does when Prometheus does not answer, and the command fails with it (the weight holds)."""
    address = "http://prometheus.example:9090/x'$(touch${IFS}pwned)`touch${IFS}pwned`;:"
    params = edit_params(workspace, deploy__prometheus=address)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    curl = stubs / "curl"
    curl.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGUMENTS"\nexit 7\n')
    curl.chmod(0o755)
    arguments = tmp_path / "arguments"
    done = subprocess.run(
        ["bash", "-c", manifests.enough_decisions_command(params)],
        cwd=tmp_path,
        env={"PATH": f"{stubs}:/usr/bin:/bin", "ARGUMENTS": str(arguments)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0, done
    assert f"{address}/api/v1/query" in arguments.read_text().splitlines(), arguments.read_text()
    assert not (tmp_path / "pwned").exists()


def test_the_docs_say_what_the_cluster_needs_for_everything_rendered(workspace: Path) -> None:
    """docs/deploying.md's "What the cluster needs" names each custom resource's API the
    rendered manifests use (with the PodMonitor too), each Secret the pods mount or pull with by
    its deploy.secrets key, and each Gateway controller deploy.gateway.implementation offers."""
    page = (PROJECT_ROOT / "docs" / "deploying.md").read_text()
    section = page.split("### What the cluster needs", 1)[1].split("\n### ", 1)[0]
    private = edit_params(
        workspace,
        deploy__image_pull_secrets=["ghcr-pull"],
        deploy__metrics__scrape="pod_monitor",
        deploy__spool__volume="persistent_volume_claim",
    )
    documents = [
        document
        for text in manifests.render(private).values()
        for document in yaml.safe_load_all(text)
        if document and "kind" in document and document["kind"] != "Kustomization"
    ]
    custom = {d["apiVersion"] for d in documents} - {
        d["apiVersion"] for d in documents if d["apiVersion"].startswith(BUILT_IN_GROUPS)
    }
    assert custom, "no custom resource rendered"
    for api in sorted(custom):
        assert f"`{api}`" in section, f"the cluster needs {api}: not in the docs"
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    keys = {name: key for key, name in private.deploy.secrets.model_dump().items()}
    assert mounted and mounted <= set(keys)
    for name in mounted:
        assert f"`deploy.secrets.{keys[name]}`" in section, name
    assert pod["imagePullSecrets"] and "`deploy.image_pull_secrets`" in section
    offered = typing.get_args(GatewayRef.model_fields["implementation"].annotation)
    for implementation in offered:
        assert f"`{implementation}`" in section, implementation
    assert any(d["kind"] == "PersistentVolumeClaim" for d in documents)
    assert "ReadWriteMany" in section
    [canary] = [d for d in documents if d["kind"] == "Canary"]
    for hook in canary["spec"]["analysis"]["webhooks"]:  # each runs in Flagger's load tester
        assert hook["url"] == private.deploy.canary.loadtester
        assert "flagger-loadtester" in section and "`deploy.canary.loadtester`" in section
    for key in (
        "deploy.gateway",
        "deploy.prometheus",
        "deploy.metrics",
        "deploy.network",
        "deploy.spool",
    ):
        assert f"`{key}`" in section or f"`{key} " in section, key


def promtool_parses(query: str) -> bool:
    """The query parses as PromQL (Prometheus's own promtool, where it is installed)."""
    filled = query
    for name, value in (("namespace", "ns"), ("target", "app"), ("interval", "1m")):
        filled = filled.replace(manifests.flagger_variable(name), value)
    rules = {
        "groups": [{"name": "canary", "rules": [{"record": "decision_shift", "expr": filled}]}]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        checked = subprocess.run(["promtool", "check", "rules", file.name], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    return True


def test_manifests_writes_then_finds_nothing_to_do(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifests"]) == 0
    assert "wrote deploy/base/deployment.yaml" in capsys.readouterr().out
    stale = workspace / "deploy" / "overlays" / "staging" / "old.yaml"
    stale.write_text(manifests.HEADER + "kind: ConfigMap\n")
    own = workspace / "deploy" / "overlays" / "staging" / "mine.yaml"
    own.write_text("kind: ConfigMap\n")  # not rendered: kept
    assert main(["manifests", "--check"]) == 1
    assert "old.yaml: stale" in capsys.readouterr().err
    assert main(["manifests"]) == 0
    assert not stale.exists() and own.exists()
    assert main(["manifests", "--check"]) == 0


def test_a_hand_edit_is_caught(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["manifests"])
    edited = workspace / "deploy" / "base" / "deployment.yaml"
    edited.write_text(edited.read_text().replace("runAsNonRoot: true", "runAsNonRoot: false"))
    params: Params = edit_params(workspace)
    with pytest.raises(PipelineError, match=r"make manifests[\s\S]*deployment\.yaml: differs"):
        manifests.check(params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deploy__canary__step_weights": [2, 5, 5, 25]}, "deploy.canary.step_weights"),
        ({"deploy__canary__step_weights": [25, 10]}, "must rise strictly"),
        ({"deploy__canary__step_weights": [0, 50]}, "deploy.canary.step_weights"),
        ({"deploy__canary__step_weights": [50, 100]}, "1 to 99"),
        ({"deploy__canary__step_weights": []}, "deploy.canary.step_weights"),
        ({"deploy__canary__interval": "1 minute"}, "deploy.canary.interval"),
        ({"deploy__canary__interval": "0s"}, "deploy.canary.interval"),
        ({"deploy__canary__decision_window": "30s"}, "decision_window (30s) is shorter"),
        ({"deploy__canary__failed_checks": 0}, "deploy.canary.failed_checks"),
        ({"deploy__canary__max_error_rate": -0.1}, "deploy.canary.max_error_rate"),
        ({"deploy__canary__max_latency_p99": 0}, "deploy.canary.max_latency_p99"),
        ({"deploy__canary__max_latency_p99": 45}, "shorter than serving.timeout"),
        ({"deploy__canary__max_decision_shift": 2}, "deploy.canary.max_decision_shift"),
        ({"deploy__canary__min_decisions": 0}, "deploy.canary.min_decisions"),
        ({"deploy__canary__loadtester": "flagger-loadtester"}, "deploy.canary.loadtester"),
        ({"deploy__resources__limits__cpu": "-1"}, "deploy.resources.limits.cpu"),
        ({"deploy__resources__limits__memory": "0Gi"}, "deploy.resources.limits.memory"),
        ({"deploy__resources__requests__memory": "4Gi"}, "requests.memory (4Gi) is above"),
        ({"deploy__environments__staging__min_replicas": 0}, "staging.min_replicas"),
        ({"deploy__environments__production__max_replicas": 1}, "production"),
        ({"deploy__environments__production__namespace": "Prod_NS"}, "production.namespace"),
        ({"deploy__target_cpu_utilization": 150}, "deploy.target_cpu_utilization"),
        ({"deploy__image": "registry.example.com/team/model:latest"}, "deploy.image"),
        ({"deploy__replicas": 3}, "deploy.replicas"),
        ({"deploy__secrets__api_tokens": "Tokens!"}, "deploy.secrets.api_tokens"),
        ({"deploy__network__gateway_namespace": "Gate_Way"}, "deploy.network.gateway_namespace"),
        (
            {"deploy__network__log_database": {"cidr": "10.0.0.0/33", "port": 5432}},
            "deploy.network.log_database.cidr",
        ),
        (
            {"deploy__network__log_database": {"cidr": "10.0.0.0/8", "namespace": "db", "port": 1}},
            "exactly one of cidr",
        ),
        ({"deploy__network__log_database": {"cidr": "10.0.0.0/8", "port": 0}}, "port"),
        ({"deploy__metrics__scrape": "service_monitor"}, "deploy.metrics.scrape"),
        ({"deploy__metrics__pod_monitor_labels": {"bad key!": "x"}}, "pod_monitor_labels"),
        ({"deploy__metrics__interval": "15 seconds"}, "deploy.metrics.interval"),
        ({"deploy__image_pull_secrets": ["GHCR_pull"]}, "deploy.image_pull_secrets.0"),
        ({"deploy__gateway__implementation": "istio"}, "deploy.gateway.implementation"),
        ({"deploy__spool__volume": "host_path"}, "deploy.spool.volume"),
        ({"deploy__spool__size": "0Gi"}, "deploy.spool.size"),
        ({"deploy__spool__storage_class": "NFS Fast"}, "deploy.spool.storage_class"),
    ],
)
def test_bad_deploy_values_name_the_key(workspace: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"params\.yaml") as caught:
        edit_params(workspace, **change)
    assert message in str(caught.value)
