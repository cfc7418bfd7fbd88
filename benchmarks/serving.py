"""Serving benchmark, side by side on loopback:

- floor: the registered bundle's inference path in this process (no HTTP), what any server adds
  to;
- peer: the app a user would otherwise write, FastAPI + uvicorn serving the same bundle's
  scikit-learn pipeline with the same request validation (the schema's request model) and the
  same bearer-token check (the project's TokenVerifier: the token's SHA-256 against every
  known digest in constant time, then the scope), with 1 and 2 workers (uvicorn's defaults
  otherwise);
- service: the project's BentoML service under `bentoml serve`, as shipped (its params.yaml
  `serving` settings, the prediction log written to a scratch directory); with
  `--database-log URL`, beside it the same service logging into that database (e.g. an empty
  PostgreSQL database: every answer then waits for a committed transaction).

Every request carries a token (scopes predict and explain) made for the run in a scratch tokens
file, as `make token` makes one: authentication is on for the service and the peer alike.

Load comes from `hey` (a separate process; Debian/Ubuntu `apt install hey`, macOS `brew install
hey`): single-record and full-batch (`serving.max_records`) requests at concurrency 1, 8 and 32,
a fixed number of requests per point. The servers run side by side, idle while another is
measured, and the rounds alternate between them; each figure is the median over the rounds.
Then the ratios against the targets, and the in-process latency of a request with each
prediction log sink. Prints tables; asserts nothing.

    python benchmarks/serving.py demo/credit-risk-model     # after `make demo`, in its environment
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import importlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

FASTAPI = (
    "fastapi==0.165.0"  # the peer's framework, on top of the project's environment
)
CONCURRENCY = (1, 8, 32)
SINK_REQUESTS = {"one record": 200, "full batch": 30}
SINKS = ("directory", "sqlite")
READY_SECONDS = 120
# The service caps these in this process when it is imported (serving.inference_threads); the
# peer starts as a user starts it, without them.
THREAD_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

PEER_APP = '''
"""The peer: a minimal FastAPI app serving the bundle's pipeline, validating and checking the
caller's token as the service does."""
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from {package}.bundle import load_bundle
from {package}.serving.auth import TokenVerifier

BUNDLE = load_bundle({bundle!r})
Record = BUNDLE.schema.request_model("Record", optional=BUNDLE.measured_only)
TOKENS = TokenVerifier()
TOKENS.load(Path({tokens!r}))


def caller(authorization: Annotated[str, Header()] = "") -> str:
    """The name of a token of scope predict; 401 or 403 otherwise."""
    scheme, _, token = authorization.partition(" ")
    found = TOKENS.verify(token.encode()) if scheme.lower() == "bearer" else None
    if found is None:
        raise HTTPException(401, "a known bearer token", {{"WWW-Authenticate": "Bearer"}})
    if "predict" not in found.scopes:
        raise HTTPException(403, "a token of scope predict")
    return found.name


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: Annotated[list[Record], Field(min_length=1, max_length={max_records})]


app = FastAPI()


@app.post("/predict")
def predict(request: PredictRequest, name: Annotated[str, Depends(caller)]) -> list[dict]:
    table = pd.DataFrame([record.model_dump() for record in request.records])
    outputs = BUNDLE.outputs(table)
    columns = BUNDLE.task.output_columns(outputs)  # the task's answer beside the label
    return [
        {{
            "label": BUNDLE.label(decision),
            **BUNDLE.task.response_values(
                {{name: float(values[row]) for name, values in columns.items()}}
            ),
        }}
        for row, decision in enumerate(BUNDLE.decide(outputs))
    ]
'''


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(call: Any, count: int) -> tuple[float, float]:
    """Median and 95th percentile of `count` calls, in milliseconds (after two warm-up calls)."""
    for _ in range(2):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), percentile(times, 0.95)


def bench_token(package: str, directory: Path) -> tuple[Path, str]:
    """A tokens file in `directory` holding one token of scopes predict and explain, made as
    `make token` makes one; (the file, the token)."""
    auth = importlib.import_module(f"{package}.serving.auth")
    tokens = directory / "tokens.json"
    return tokens, auth.create_token(tokens, "benchmark", ["predict", "explain"])


def authentication_cost(
    package: str, tokens: Path, token: str, body: bytes
) -> tuple[float, float]:
    """Microseconds (p50) of the token check alone, and of the service's ASGI guard around an
    app that only reads the body, over that app alone (a one-record request)."""
    auth = importlib.import_module(f"{package}.serving.auth")
    guard = importlib.import_module(f"{package}.serving.guard")
    verifier = auth.TokenVerifier()
    verifier.load(tokens)
    check, _ = measure(lambda: verifier.verify(token.encode()), 5000)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        pass

    headers = [(b"authorization", f"Bearer {token}".encode()),
               (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    guarded = guard.Guard(app, verifier, max_body_bytes=2 * len(body))
    loop = asyncio.new_event_loop()
    try:
        bare, _ = measure(
            lambda: loop.run_until_complete(app(scope, receive, send)), 5000
        )
        full, _ = measure(
            lambda: loop.run_until_complete(guarded(scope, receive, send)), 5000
        )
    finally:
        loop.close()
    return check * 1000, (full - bare) * 1000


def open_project(project: Path) -> str:
    """Import the project's package from its source tree, its model store selected; its name."""
    os.chdir(project)
    sys.path.insert(0, str(project / "src"))
    stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    package = stages["ingest"]["cmd"].split()[2]
    importlib.import_module(f"{package}.serving.store").use_project_store(project)
    return package


# ---------------------------------------------------------------------------------------------
# Side by side over HTTP


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(
    url: str, ready: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"{url} exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}{ready}", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(
        f"{url} not ready after {READY_SECONDS} s:\n{log.read_text()[-2000:]}"
    )


@contextlib.contextmanager
def server(
    command: list[str], ready: str, log: Path, env: dict[str, str]
) -> Iterator[str]:
    """A server on a free loopback port (`{port}` in `command`), answering 200 on `ready`;
    stopped with its whole process group."""
    port = free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            env={
                **{k: v for k, v in os.environ.items() if k not in THREAD_CAPS},
                **env,
            },
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url, ready, process, log)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def hey(
    url: str, body: Path, requests: int, concurrency: int, token: str
) -> dict[str, float]:
    """One load run with the token: latency percentiles (ms), throughput (requests/s), non-2xx
    count."""
    result = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T",
         "application/json", "-H", f"Authorization: Bearer {token}", "-D", str(body),
         "-o", "csv", f"{url}/predict"],
        capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    if len(rows) != requests:  # hey leaves out requests that got no answer at all
        raise SystemExit(
            f"hey answered {len(rows)} of {requests} requests:\n{result.stderr}"
        )
    latencies = [float(row["response-time"]) * 1000 for row in rows]
    elapsed = max(float(row["offset"]) + float(row["response-time"]) for row in rows)
    return {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "rps": requests / elapsed,
        "non2xx": sum(not row["status-code"].startswith("2") for row in rows),
    }


def side_by_side(
    project: Path, requests: int, rounds: int, database_log: str | None = None
) -> None:
    if shutil.which("hey") is None:
        raise SystemExit(
            "the serving benchmark needs `hey` on PATH: apt install hey / brew install hey"
        )
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit(
            "the serving benchmark needs `uv` on PATH (it adds FastAPI for the peer)"
        )
    package = open_project(project)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as scratch:
        measure_side_by_side(Path(scratch), package, uv, requests, rounds, database_log)


def measure_side_by_side(
    scratch: Path,
    package: str,
    uv: str,
    requests: int,
    rounds: int,
    database_log: str | None,
) -> None:
    service = importlib.import_module(f"{package}.serving.service")
    inference = importlib.import_module(f"{package}.inference")
    bundle, settings = service.BUNDLE, service.SETTINGS
    schema = bundle.schema
    test_rows = schema.read_csv("data/processed/test.csv")[schema.feature_names]
    # hey splits a run's requests evenly between its clients: whole multiples of the concurrency
    step = max(CONCURRENCY)
    sizes = {
        1: -(-requests // step) * step,
        settings.max_records: -(-requests // 5 // step) * step,
    }
    bodies: dict[int, Path] = {}
    for size in sizes:
        records = json.loads(test_rows.head(size).to_json(orient="records"))
        bodies[size] = scratch / f"body-{size}.json"
        bodies[size].write_text(json.dumps({"records": records}))

    # the floor: the service's own scorer and decision, in this process
    score, path = inference.records_scorer(bundle)
    floor = {}
    for size in sizes:
        rows = json.loads(bodies[size].read_text())["records"]
        floor[size], _ = measure(lambda rows=rows: bundle.decide(score(rows)), 300)
    print(f"bundle {bundle.family}, scoring with the {path}; {os.cpu_count()} cores")
    batching = "on" if settings.max_batch_size > 1 else "off"
    print(
        f"service: {settings.workers} worker(s), {settings.inference_threads} inference thread(s),"
        f" max_batch_size {settings.max_batch_size} (batching {batching})"
    )
    print(f"floor (in-process): p50 {floor[1]:.2f} ms for 1 record, "
          f"{floor[settings.max_records]:.2f} ms for {settings.max_records}")  # fmt: skip

    tokens, token = bench_token(package, scratch)
    print(
        "authentication on: every request carries a bearer token, service and peer check it"
    )
    check, guard = authentication_cost(package, tokens, token, bodies[1].read_bytes())
    print(f"in-process: the token check (TokenVerifier.verify) p50 {check:.1f} µs; the service's"
          f" guard (token, scope, body read) adds {guard:.1f} µs to a request")  # fmt: skip
    (scratch / "peer_app.py").write_text(
        PEER_APP.format(
            package=package,
            bundle=str(
                Path.cwd() / "models" / "model.joblib"
            ),  # open_project went there
            max_records=settings.max_records,
            tokens=str(tokens),
        )
    )

    def peer(workers: int) -> list[str]:
        return [uv, "run", "--frozen", "--with", FASTAPI, "python", "-m", "uvicorn",
                "peer_app:app", "--app-dir", str(scratch), "--host", "127.0.0.1",
                "--port", "{port}", "--workers", str(workers)]  # fmt: skip

    bentoml_serve = [sys.executable, "-m", "bentoml", "serve",
                     "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    servers = {
        "peer, 1 worker": (peer(1), "/docs", {}),
        "peer, 2 workers": (peer(2), "/docs", {}),
        "service": (
            bentoml_serve,
            "/readyz",
            {
                "PREDICTION_LOG": str(scratch / "predictions"),
                "PREDICTION_SPOOL": str(scratch / "spool"),
                "API_TOKENS_FILE": str(tokens),
            },
        ),
    }
    if database_log:
        servers["service, database log"] = (
            bentoml_serve,
            "/readyz",
            {
                "PREDICTION_LOG": database_log,
                "PREDICTION_SPOOL": str(scratch / "db-spool"),
                "API_TOKENS_FILE": str(tokens),
            },
        )
    figures: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                server(command, ready, scratch / f"{name}.log", env)
            )
            for name, (command, ready, env) in servers.items()
        }
        for url in urls.values():  # warm up: first requests load lazily imported code
            hey(url, bodies[1], 20, 4, token)
        for _ in range(rounds):
            for size, count in sizes.items():
                for concurrency in CONCURRENCY:
                    for (
                        name,
                        url,
                    ) in urls.items():  # alternating, so drifts hit all alike
                        figure = hey(url, bodies[size], count, concurrency, token)
                        figures.setdefault((name, size, concurrency), []).append(figure)

    def median(name: str, size: int, concurrency: int, key: str) -> float:
        return statistics.median(f[key] for f in figures[(name, size, concurrency)])

    print(f"{sizes[1]} single-record and {sizes[settings.max_records]} full-batch requests per "
          f"point, median of {rounds} round(s)")  # fmt: skip
    print(f"{'server':<22} {'records':>7} {'conc':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
          f" {'req/s':>8} {'non-2xx':>7}")  # fmt: skip
    for name in servers:
        for size in sizes:
            for concurrency in CONCURRENCY:
                values = [
                    median(name, size, concurrency, key)
                    for key in ("p50", "p95", "p99", "rps")
                ]
                non2xx = sum(f["non2xx"] for f in figures[(name, size, concurrency)])
                print(f"{name:<22} {size:>7} {concurrency:>4} {values[0]:>8.1f} {values[1]:>8.1f}"
                      f" {values[2]:>8.1f} {values[3]:>8.1f} {non2xx:>7.0f}")  # fmt: skip

    peers = [name for name in servers if name.startswith("peer")]
    best_p50 = min(median(name, 1, 1, "p50") for name in peers)
    best_rps = max(median(name, 1, 32, "rps") for name in peers)
    print("ratios")
    for service in (name for name in servers if name.startswith("service")):
        latency_ratio = median(service, 1, 1, "p50") / best_p50
        throughput_ratio = median(service, 1, 32, "rps") / best_rps
        errors = sum(
            f["non2xx"]
            for key, runs in figures.items()
            if key[0] == service
            for f in runs
        )
        print(f"p50, 1 record, concurrency 1, {service}/best peer: {latency_ratio:.2f} "
              f"(target <= 1.2: {'met' if latency_ratio <= 1.2 else 'missed'})")  # fmt: skip
        print(f"throughput, 1 record, concurrency 32, {service}/best peer: {throughput_ratio:.2f} "
              f"(target >= 3: {'met' if throughput_ratio >= 3 else 'missed'})")  # fmt: skip
        verdict = "met" if errors == 0 else "missed"
        print(f"non-2xx answers of the {service}: {errors:.0f} (target 0: {verdict})")
    for size in sizes:
        ratio = median("service", size, 1, "p50") / floor[size]
        print(f"p50, {size} record(s), concurrency 1, service/floor: {ratio:.1f}")


# ---------------------------------------------------------------------------------------------
# The prediction log sinks, in-process


def run_sink(project: Path, sink: str) -> None:
    """One sink in this process (BentoML's metrics allow one app per process)."""
    package = open_project(project)
    with tempfile.TemporaryDirectory() as scratch:
        target = (
            f"{scratch}/log" if sink == "directory" else f"sqlite:///{scratch}/log.db"
        )
        os.environ["PREDICTION_LOG"] = target
        tokens, token = bench_token(package, Path(scratch))
        os.environ["API_TOKENS_FILE"] = str(tokens)
        service = importlib.import_module(f"{package}.serving.service")
        from starlette.testclient import TestClient

        schema, max_records = service.SCHEMA, service.SETTINGS.max_records
        test_rows = schema.read_csv("data/processed/test.csv")[schema.feature_names]
        batches = {
            "one record": test_rows.head(1),
            "full batch": test_rows.head(max_records),
        }
        bundle = service.BUNDLE  # what the service decides with: the registered bundle
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(service.ModelService.to_asgi(), headers=headers) as client:
            for name, rows in batches.items():
                body = json.dumps(
                    {"records": json.loads(rows.to_json(orient="records"))}
                )

                def request(body: str = body) -> None:
                    response = client.post(
                        "/predict",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    response.raise_for_status()

                p50, p95 = measure(request, SINK_REQUESTS[name])
                bare, _ = measure(
                    lambda rows=rows: bundle.outputs(rows), SINK_REQUESTS[name]
                )
                print(
                    f"{name:<12} {sink:<10} {len(rows):>5} {p50:>8.1f} {p95:>8.1f} {bare:>13.1f}"
                )
        logged = importlib.import_module(f"{package}.serving.prediction_log").open_sink(
            target
        )
        expected = sum(
            (SINK_REQUESTS[name] + 2) * len(rows) for name, rows in batches.items()
        )
        print(
            f"{'':<12} {sink:<10} logged {len(logged.read_predictions())} of {expected} predictions"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "project", type=Path, help="a baked project after `make pipeline`"
    )
    parser.add_argument(
        "--requests", type=int, default=500,
        help="single-record requests per point (full batches: a fifth as many)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over all the points"
    )
    parser.add_argument(
        "--sink", choices=SINKS, help=argparse.SUPPRESS
    )  # one sink, in a child
    parser.add_argument(
        "--database-log",
        metavar="URL",
        help="also serve with the prediction log in this database (e.g. an empty PostgreSQL one)",
    )
    parser.add_argument("--side-by-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    project = args.project.resolve()
    if args.sink:
        run_sink(project, args.sink)
        return 0
    if args.side_by_side:
        side_by_side(project, args.requests, args.rounds, args.database_log)
        return 0
    # each part in a process of its own: BentoML's metrics allow one service per process
    sys.stdout.flush()
    database = ["--database-log", args.database_log] if args.database_log else []
    subprocess.run(
        [sys.executable, __file__, str(project), "--side-by-side",
         "--requests", str(args.requests), "--rounds", str(args.rounds), *database],
        check=True,
    )  # fmt: skip
    print("prediction log sinks, in-process (starlette's TestClient, no HTTP)")
    print(
        f"{'request':<12} {'sink':<10} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'model p50 ms':>13}"
    )
    sys.stdout.flush()
    for sink in SINKS:
        subprocess.run(
            [sys.executable, __file__, str(project), "--sink", sink], check=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
