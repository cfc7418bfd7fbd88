"""The generated project's Kubernetes manifests (deploy/): a fresh bake ships them current, both
overlays render with kustomize, and every document passes a strict schema check: the built-in
kinds with `kubernetes-validate --strict` (Kubernetes' own schemas), the custom resources
(Flagger's Canary and MetricTemplate, Gateway API's HTTPRoute) with `check-jsonschema` against
the schemas in $K8S_SCHEMAS (default ../shared/k8s-schemas beside the template; see its
README). A document of a kind with no schema fails, as does any warning. Each overlay passes
checkov (the version the project's CI pins) with 0 failed checks. Bad `deploy:` values are refused
by `make manifests`, naming the key, and leave deploy/ as it was.

Without kubectl or the schema directory these tests skip, saying why; with
REQUIRE_K8S_SCHEMAS=1 (.ci/run) they fail instead. Nothing here reaches a cluster: no API
server, no controllers, no image pulls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEMPLATE, BakeProject, Project

OVERLAYS = ("staging", "production")
# API groups whose kinds Kubernetes serves itself ("" is the core group, `v1`).
BUILT_IN_GROUPS = {"", "apps", "policy", "autoscaling", "networking.k8s.io"}
# The kinds each overlay must hold (production: Flagger makes the Services and the HTTPRoute).
EXPECTED_KINDS = {
    "staging": {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "HTTPRoute",
    },
    "production": {
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "Canary",
        "MetricTemplate",
    },
}
REQUIRED = os.environ.get("REQUIRE_K8S_SCHEMAS") == "1"


def needed(reason: str) -> None:
    """Fail with `reason` when the validation is required here, else skip with it."""
    if REQUIRED:
        pytest.fail(f"{reason} (REQUIRE_K8S_SCHEMAS=1)", pytrace=False)
    pytest.skip(reason)


def schema_directory() -> Path:
    directory = Path(
        os.environ.get("K8S_SCHEMAS", TEMPLATE.parent / "shared" / "k8s-schemas")
    )
    if not directory.is_dir():
        needed(
            f"no custom-resource schemas at {directory}: set K8S_SCHEMAS to a directory of"
            " <group>/<kind>_<version>.json files"
        )
    return directory


def tool(name: str) -> str:
    """A program from the test runner's environment (the template's .venv) or PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    found = shutil.which(name, path=search)
    if not found:
        needed(f"{name} is not installed")
    return str(found)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def kustomize(project: Path, overlay: str) -> list[dict[str, Any]]:
    result = run(
        tool("kubectl"), "kustomize", f"deploy/overlays/{overlay}", cwd=project
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay}:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def group_and_version(document: dict[str, Any]) -> tuple[str, str]:
    group, _, version = document["apiVersion"].rpartition("/")
    return group, version


def validate_built_in(
    documents: list[dict[str, Any]], scratch: Path
) -> tuple[bool, str]:
    """kubernetes-validate --strict: (passed without any warning, its output)."""
    path = scratch / "built-in.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    result = run(tool("kubernetes-validate"), "--strict", str(path), cwd=scratch)
    output = result.stdout + result.stderr
    return result.returncode == 0 and "WARN" not in output, output


def validate_custom(
    document: dict[str, Any], schemas: Path, scratch: Path
) -> tuple[bool, str]:
    """check-jsonschema against <group>/<kind>_<version>.json: (passed, its output)."""
    group, version = group_and_version(document)
    schema = schemas / group / f"{document['kind'].lower()}_{version}.json"
    if not schema.is_file():
        return (
            False,
            f"no schema for {document['apiVersion']} {document['kind']}: {schema}",
        )
    path = scratch / f"{document['kind']}-{document['metadata']['name']}.json"
    path.write_text(json.dumps(document))
    checked = scratch / f"schema-{schema.name}"
    checked.write_text(json.dumps(ecmascript_patterns(json.loads(schema.read_text()))))
    result = run(
        tool("check-jsonschema"), "--schemafile", str(checked), str(path), cwd=scratch
    )
    return result.returncode == 0, result.stdout + result.stderr


def ecmascript_patterns(schema: Any) -> Any:
    """The schema with each Go (RE2) pattern that opens with the case-insensitive flag, which
    ECMAScript regexes (JSON Schema's, check-jsonschema's) lack, spelled with letter classes:
    the Prometheus Operator's `^(?i)(abort|warn)?$` becomes `^([aA][bB]...|...)?$`."""
    if isinstance(schema, dict):
        fixed = {key: ecmascript_patterns(value) for key, value in schema.items()}
        pattern = fixed.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:
            if re.search(r"[\\\[]", pattern):
                raise ValueError(f"a (?i) pattern with escapes or classes: {pattern}")
            fixed["pattern"] = re.sub(
                r"[A-Za-z]",
                lambda match: f"[{match[0].lower()}{match[0].upper()}]",
                pattern.replace("(?i)", ""),
            )
        return fixed
    if isinstance(schema, list):
        return [ecmascript_patterns(item) for item in schema]
    return schema


def problems_of(
    documents: list[dict[str, Any]], schemas: Path, scratch: Path
) -> list[str]:
    built_in = [d for d in documents if group_and_version(d)[0] in BUILT_IN_GROUPS]
    found = []
    if built_in:
        passed, output = validate_built_in(built_in, scratch)
        if not passed:
            found.append(f"kubernetes-validate --strict:\n{output}")
    for document in documents:
        if group_and_version(document)[0] not in BUILT_IN_GROUPS:
            passed, output = validate_custom(document, schemas, scratch)
            if not passed:
                found.append(
                    f"{document['kind']} {document['metadata']['name']}:\n{output}"
                )
    return found


@pytest.fixture(scope="module")
def project(bake_project: BakeProject) -> Project:
    """A fresh default bake, set up (`make manifests` runs the project's CLI)."""
    return bake_project(setup=True)


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): path.read_text()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.e2e
def test_make_manifests_on_a_fresh_bake_changes_nothing(project: Project) -> None:
    shipped = snapshot(project.path / "deploy")
    assert shipped, "the bake ships no deploy/"
    result = project.run("make", "manifests")
    assert "already what params.yaml renders" in result.stdout
    assert snapshot(project.path / "deploy") == shipped


@pytest.fixture(scope="module")
def rendered(project: Project) -> Iterator[dict[str, list[dict[str, Any]]]]:
    yield {overlay: kustomize(project.path, overlay) for overlay in OVERLAYS}


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_validates_strictly(
    overlay: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    documents = rendered[overlay]
    assert {document["kind"] for document in documents} == EXPECTED_KINDS[overlay]
    problems = problems_of(documents, schema_directory(), tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
def test_the_overlays_pin_the_release_image_by_digest_in_their_namespace(
    project: Project, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    params = yaml.safe_load((project.path / "params.yaml").read_text())["deploy"]
    assert params["image"] == "ghcr.io/your-github-user/credit-risk-model"
    release = (project.path / ".github" / "workflows" / "release.yml").read_text()
    assert params["image"] in release, (
        "params.yaml's deploy.image is not what release.yml pushes"
    )
    for overlay, documents in rendered.items():
        namespace = params["environments"][overlay]["namespace"]
        assert {document["metadata"]["namespace"] for document in documents} == {
            namespace
        }
        [deployment] = [d for d in documents if d["kind"] == "Deployment"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{params['image']}@sha256:{'0' * 64}"


@pytest.mark.e2e
def test_the_other_gateway_implementation_renders_and_validates_strictly(
    project: Project, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """deploy.gateway.implementation: envoy_gateway (the default, contour, is above): `make
    manifests` rewrites only the MetricTemplates, and production still validates."""
    other = project.copy(tmp_path / project.path.name)
    params = other.path / "params.yaml"
    text = params.read_text()
    assert text.count("implementation: contour") == 1, (
        "params.yaml names no implementation"
    )
    params.write_text(
        text.replace("implementation: contour", "implementation: envoy_gateway")
    )
    before = snapshot(other.path / "deploy")
    other.run("make", "manifests")
    after = snapshot(other.path / "deploy")
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed == {"overlays/production/metric-templates.yaml"}, changed
    documents = kustomize(other.path, "production")
    queries = [d["spec"]["query"] for d in documents if d["kind"] == "MetricTemplate"]
    assert sum("bentoml_service_request" in query for query in queries) == 2, queries
    problems = problems_of(documents, schema_directory(), tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
def test_the_validators_refuse_an_unknown_field(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A control: what the checks above pass, they would not pass with a misspelt field."""
    schemas = schema_directory()
    for document in rendered["production"]:
        if document["kind"] in ("Deployment", "Canary"):
            broken = json.loads(json.dumps(document))
            broken["spec"]["replica"] = 2
            assert problems_of([broken], schemas, tmp_path), document["kind"]
    unknown = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
    }
    assert problems_of([unknown], schemas, tmp_path) == [
        f"Widget w:\nno schema for example.com/v1 Widget: {schemas}/example.com/widget_v1.json"
    ]


def checkov_version(project: Path) -> str:
    """The checkov the project's CI runs on its manifests (ci.yml's pin)."""
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    [step] = [
        step
        for job in ci["jobs"].values()
        for step in job["steps"]
        if "checkov" in step.get("run", "")
    ]
    # The CI scans every overlay, each on its own.
    assert f"for overlay in {' '.join(OVERLAYS)};" in step["run"]
    assert 'checkov --file "$RUNNER_TEMP/$overlay.yaml"' in step["run"]
    return str(step["env"]["CHECKOV_VERSION"])


def checkov_failures(
    documents: list[dict[str, Any]], version: str, scratch: Path
) -> tuple[list[str], dict[str, Any]]:
    """checkov on the documents (one overlay: its graph checks link resources across
    namespaces): (each failed check as `ID resource`, its summary)."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    result = run(
        tool("uv"),
        "tool",
        "run",
        "--from",
        f"checkov=={version}",
        "checkov",
        "--file",
        str(path),
        "--framework",
        "kubernetes",
        "--quiet",
        "--skip-download",
        "--output",
        "json",
        cwd=scratch,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        needed(f"checkov {version} did not run (uv tool run):\n{result.stderr[-2000:]}")
    failed = [
        f"{check['check_id']} {check['resource']}"
        for check in report["results"]["failed_checks"]
    ]
    return failed, report["summary"]


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing_to_fail_in_each_overlay(
    overlay: str,
    project: Project,
    rendered: dict[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """Kubernetes' restricted profile, secrets as files, a NetworkPolicy: what the project's CI
    checks with checkov. A check is suppressed only by an annotation giving its reason."""
    failed, summary = checkov_failures(
        rendered[overlay], checkov_version(project.path), tmp_path
    )
    assert not failed, "\n".join(failed)
    assert summary["failed"] == 0 and summary["passed"] > 50, summary
    annotations = [
        (name, value)
        for document in rendered[overlay]
        for name, value in document["metadata"].get("annotations", {}).items()
        if name.startswith("checkov.io/skip")
    ]
    assert all(
        "=" in value and value.split("=", 1)[1].strip() for _, value in annotations
    )


@pytest.mark.e2e
def test_checkov_fails_a_pod_with_a_low_uid_a_secret_variable_and_no_network_policy(
    project: Project, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A control: the check above passes because the pod is right, not because checkov looks
    elsewhere. The staging overlay as it was before: uid 1034, the log's URL as an environment
    variable from a Secret, no NetworkPolicy."""
    broken = [
        json.loads(json.dumps(document))
        for document in rendered["staging"]
        if document["kind"] != "NetworkPolicy"
    ]
    [deployment] = [d for d in broken if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 1034
    pod["containers"][0]["env"].append(
        {
            "name": "PREDICTION_LOG",
            "valueFrom": {"secretKeyRef": {"name": "prediction-log", "key": "url"}},
        }
    )
    failed, _ = checkov_failures(broken, checkov_version(project.path), tmp_path)
    assert {failure.split()[0] for failure in failed} == {
        "CKV_K8S_35",
        "CKV_K8S_40",
        "CKV2_K8S_6",
    }, failed


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            "step_weights: [2, 5, 10, 25, 75]",
            "step_weights: [2, 25, 10]",
            "deploy.canary.step_weights",
        ),
        (
            'limits: {cpu: "1", memory: 2Gi}',
            'limits: {cpu: "-1", memory: 2Gi}',
            "deploy.resources.limits.cpu",
        ),
    ],
)
def test_make_manifests_refuses_a_bad_deploy_value_naming_the_key(
    project: Project, old: str, new: str, key: str
) -> None:
    params = project.path / "params.yaml"
    original = params.read_text()
    assert old in original
    shipped = snapshot(project.path / "deploy")
    params.write_text(original.replace(old, new))
    try:
        result = project.run("make", "manifests", check=False)
    finally:
        params.write_text(original)
    assert result.returncode != 0
    assert key in result.stdout
    assert snapshot(project.path / "deploy") == shipped
