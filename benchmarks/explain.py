"""Explanation benchmark, for a baked project after `make pipeline`:

- served: /explain of the registered model under `bentoml serve` on loopback (as shipped, the
  prediction log in a scratch directory), one record and a full request
  (`serving.max_explain_records` records), sequential requests over one kept-alive connection
  after a first call (which imports shap); /predict's one record on the same server beside it.
- per family: what explaining costs per record in this process, for each model family fitted on
  the training split with the family's default settings (the search may choose others): one
  record at a time as /explain does it, and per record in a table of up to `--rows` rows
  (`predict --explain`).

Prints tables; asserts nothing (figures and targets: benchmarks/RESULTS.md).

    python benchmarks/explain.py demo/credit-risk-model     # after `make demo`, in its environment
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import importlib
import json
import sys
import tempfile
import time
import typing
from pathlib import Path

from serving import bench_token, measure, open_project, server

READY = "/readyz"


def served(package: str, requests: int) -> None:
    service = importlib.import_module(f"{package}.serving.service")
    schema, settings = service.SCHEMA, service.SETTINGS
    test_rows = schema.read_csv("data/processed/test.csv")[schema.feature_names]
    bodies = {
        ("/predict", 1): test_rows.head(1),
        ("/explain", 1): test_rows.head(1),
        ("/explain", settings.max_explain_records): test_rows.head(
            settings.max_explain_records
        ),
    }
    command = [sys.executable, "-m", "bentoml", "serve",
               "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    print(
        f"served (bentoml serve, {settings.workers} worker(s)), {requests} requests each"
    )
    print(f"{'route':<10} {'records':>7} {'p50 ms':>8} {'p95 ms':>8} {'first ms':>9}")
    with tempfile.TemporaryDirectory() as scratch:
        tokens, token = bench_token(package, Path(scratch))
        env = {
            "PREDICTION_LOG": f"{scratch}/predictions",
            "PREDICTION_SPOOL": f"{scratch}/spool",
            "API_TOKENS_FILE": str(tokens),
        }
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }
        with server(command, READY, Path(scratch) / "serve.log", env) as url:
            host, port = url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            for (route, size), rows in bodies.items():
                body = json.dumps(
                    {"records": json.loads(rows.to_json(orient="records"))}
                )

                def call(route: str = route, body: str = body) -> None:
                    connection.request("POST", route, body, headers)
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status != 200:
                        raise SystemExit(f"{route}: {response.status} {answer[:500]!r}")

                started = time.perf_counter()
                call()  # /explain's first call builds the explainer (imports shap)
                first = (time.perf_counter() - started) * 1000
                p50, p95 = measure(call, requests)
                print(f"{route:<10} {size:>7} {p50:>8.2f} {p95:>8.2f} {first:>9.0f}")


def per_family(package: str, rows: int) -> None:
    config = importlib.import_module(f"{package}.config")
    train_stage = importlib.import_module(f"{package}.pipeline.train")
    explanations = importlib.import_module(f"{package}.explanations")
    inference = importlib.import_module(f"{package}.inference")
    bundle = importlib.import_module(f"{package}.bundle").load_bundle(
        "models/model.joblib"
    )
    train = bundle.schema.read_csv("data/processed/train.csv")
    test = bundle.schema.read_csv("data/processed/test.csv")
    table = test.head(rows)
    records = json.loads(
        test.head(1)[bundle.schema.feature_names].to_json(orient="records")
    )
    seed = config.load_params().split.seed
    features = train[list(bundle.features)]
    print(
        f"\nper family, in process ({bundle.task.name}; default settings; up to {rows} rows)"
    )
    print(
        f"{'family':<24} {'scale':<12} {'1 record ms':>12} {'per row ms':>11} {'rows/s':>9}"
    )
    for family in typing.get_args(config.ModelFamily):
        model = train_stage.build_model(
            bundle.task, family, bundle.schema.subset(bundle.features), seed
        )
        model.fit(features, bundle.encode(train[bundle.target]))
        fitted = dataclasses.replace(
            bundle,
            pipeline=model,
            family=family,
            background=train_stage.preprocessed_mean(model, features),
        )
        explainer = explanations.Explainer(fitted)
        score, _ = inference.records_scorer(
            fitted
        )  # as /explain decides: the fast path

        def one(
            explainer: typing.Any = explainer,
            fitted: typing.Any = fitted,
            score: typing.Any = score,
        ) -> None:
            decisions = fitted.decide(score(records))
            explainer.explain(explainer.records_matrix(records), decisions)

        single, _ = measure(one, 30)
        started = time.perf_counter()
        decisions = fitted.decide(fitted.outputs(table))
        explainer.explain(explainer.table_matrix(table), decisions)
        per_row = (time.perf_counter() - started) * 1000 / len(table)
        print(
            f"{family:<24} {explainer.scale:<12} {single:>12.2f} {per_row:>11.3f}"
            f" {1000 / per_row:>9.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "project", type=Path, help="a baked project after `make pipeline`"
    )
    parser.add_argument("--requests", type=int, default=300, help="per served point")
    parser.add_argument(
        "--rows", type=int, default=500, help="of the test split, per family"
    )
    args = parser.parse_args()
    package = open_project(args.project.resolve())
    served(package, args.requests)
    per_family(package, args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
