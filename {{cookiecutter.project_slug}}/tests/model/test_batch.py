"""Batch scoring (`make predict`) with the registered model: every input row is scored or
rejected with its reasons, the answers are the service's, the log gets the scored rows, and a
failed run leaves no output behind."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import batch
from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import DataSourceError, PipelineError
from {{ cookiecutter.package_name }}.inference import records_scorer
from {{ cookiecutter.package_name }}.serving.prediction_log import open_sink

pytestmark = pytest.mark.model

TOLERANCE = 1e-6  # the fast path's parity bound (tests/model/test_fast_path.py)


@pytest.fixture
def scoring(
    params: Params, pipeline_outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Params:
    """The project's params with the prediction log and spool in a scratch directory; run from
    the project, where the registered model is recorded."""
    monkeypatch.chdir(pipeline_outputs)
    serving = params.serving.model_copy(
        update={
            "prediction_log": str(tmp_path / "log"),
            "prediction_spool": str(tmp_path / "spool" / "spool"),
        }
    )
    return params.model_copy(update={"serving": serving})


def broken_rows(bundle: ModelBundle, table: pd.DataFrame) -> dict[int, str]:
    """Rows of `table` (a copy of the test split) broken in place, one rule each: row -> the
    column its problem must name."""
    schema = bundle.schema
    broken: dict[int, str] = {}
    for column in schema.columns:
        row = len(broken)
        if column.type == "category":
            table.loc[row, column.name] = "__no_such_category__"
        elif column.max is not None:
            table.loc[row, column.name] = column.max + 1
        elif column.type == "integer":
            table.loc[row, column.name] = 2.5
        else:
            continue
        broken[row] = column.name
    required = next(c.name for c in schema.columns if not c.nullable and c.name in bundle.features)
    table.loc[len(broken), required] = None
    broken[len(broken)] = required
    return broken


def test_every_row_is_scored_as_the_service_answers_or_rejected_naming_the_column(
    scoring: Params,
    bundle: ModelBundle,
    pipeline_outputs: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = pd.read_csv(pipeline_outputs / Paths.test_data, dtype=object)  # as a user's file
    broken = broken_rows(bundle, table)
    assert len(broken) >= 2
    table.to_csv(tmp_path / "input.csv", index=False)
    scoring = scoring.model_copy(
        update={
            "batch": scoring.batch.model_copy(
                update={"chunk_rows": 64, "max_reject_share": 0.5, "key_columns": [bundle.target]}
            )
        }
    )
    done = batch.run(scoring, str(tmp_path / "input.csv"), str(tmp_path / "scored.parquet"))
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    rejects = pd.read_csv(tmp_path / "scored.rejects.csv")
    assert (done.rows, done.rejected) == (len(table), len(broken))
    assert len(scored) + len(rejects) == len(table) == done.scored + done.rejected
    # each rejected row by its 1-based number, its key column and the column it broke
    assert rejects["row"].tolist() == [row + 1 for row in sorted(broken)]
    for row, problems in zip(rejects["row"], rejects["problems"], strict=True):
        assert problems.startswith(f"{broken[row - 1]}: "), (row, problems)
    kept = table.drop(index=list(broken))
    assert scored[bundle.target].astype(str).tolist() == kept[bundle.target].astype(str).tolist()
    # the service's answers: its fast path's outputs and decisions for the same records
    records = json.loads(
        bundle.schema.read_csv(pipeline_outputs / Paths.test_data)
        .drop(index=list(broken))[bundle.schema.feature_names]
        .to_json(orient="records")
    )
    served = records_scorer(bundle)[0](records)
    columns = bundle.task.output_columns(served)
    for name, values in columns.items():
        assert np.abs(scored[name].to_numpy() - values).max() <= TOLERANCE, name
    labels = [bundle.label(decision) for decision in bundle.decide(served)]
    if bundle.schema.target_values:  # classes: the same class
        assert scored["label"].astype(str).tolist() == [str(label) for label in labels]
    else:  # a number: the same number, to the fast path's bound
        assert np.abs(scored["label"].to_numpy(dtype=float) - labels).max() <= TOLERANCE
    assert scored["prediction_id"].is_unique
    assert set(scored["model_version"]) == {done.model_version}
    # the prediction log: exactly the scored rows, marked batch, under the same ids; staged
    # on purpose, not replayed after a failure (no warning)
    assert "the scored rows are in the prediction log" in done.describe()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    logged = open_sink(scoring.serving.prediction_log).read_predictions()
    assert sorted(logged["prediction_id"]) == sorted(scored["prediction_id"])
    assert logged["batch"].all() and not logged["simulated"].any()
    by_id = logged.set_index("prediction_id").loc[scored["prediction_id"]]
    assert by_id["label"].tolist() == scored["label"].astype(str).tolist()


def test_explanations_are_the_service_s_for_each_scored_row(
    scoring: Params, bundle: ModelBundle, pipeline_outputs: Path, tmp_path: Path
) -> None:
    """`predict --explain`: each row's base and contributions, in chunks, as /explain gives
    them for the same record (explanations.py; their sum is checked in test_explanations)."""
    from {{ cookiecutter.package_name }}.explanations import Explainer

    scoring = scoring.model_copy(
        update={"batch": scoring.batch.model_copy(update={"chunk_rows": 64})}
    )
    source = pipeline_outputs / Paths.test_data
    done = batch.run(scoring, str(source), str(tmp_path / "scored.csv"), explain=True)
    scored = pd.read_csv(tmp_path / "scored.csv")
    explainer = Explainer(bundle)
    assert explainer.explains() in done.describe()
    contributions = [f"contribution[{name}]" for name in bundle.features]
    assert list(scored.columns[-1 - len(contributions) :]) == ["base", *contributions]
    records = json.loads(
        bundle.schema.read_csv(source)[bundle.schema.feature_names].to_json(orient="records")
    )
    decisions = bundle.decide(records_scorer(bundle)[0](records))
    served = explainer.explain(explainer.records_matrix(records), decisions)
    assert len(scored) == len(records) == done.scored
    assert np.abs(scored["base"].to_numpy() - served.base).max() <= TOLERANCE
    assert np.abs(scored[contributions].to_numpy() - served.contributions).max() <= TOLERANCE


def test_too_many_rejects_fail_the_run_with_no_output_and_no_log(
    scoring: Params, bundle: ModelBundle, pipeline_outputs: Path, tmp_path: Path
) -> None:
    table = pd.read_csv(pipeline_outputs / Paths.test_data, dtype=object).head(20)
    broken = broken_rows(bundle, table)
    table.to_csv(tmp_path / "input.csv", index=False)
    with pytest.raises(PipelineError, match=r"batch\.max_reject_share") as refused:
        batch.run(scoring, str(tmp_path / "input.csv"), str(tmp_path / "scored.csv"))
    assert f"{len(broken)} of 20 rows" in str(refused.value)
    assert len(pd.read_csv(tmp_path / "scored.rejects.csv")) == len(broken)  # kept, to read
    assert [p.name for p in tmp_path.glob("*scored*")] == ["scored.rejects.csv"]
    assert open_sink(scoring.serving.prediction_log).read_predictions().empty


def test_an_existing_output_is_replaced_only_when_asked(
    scoring: Params, pipeline_outputs: Path, tmp_path: Path
) -> None:
    source = str(pipeline_outputs / Paths.test_data)
    output = tmp_path / "scored.csv"
    output.write_text("earlier results\n")
    with pytest.raises(PipelineError, match="exists: pass --overwrite"):
        batch.run(scoring, source, str(output))
    assert output.read_text() == "earlier results\n"
    batch.run(scoring, source, str(output), overwrite=True)
    assert len(pd.read_csv(output)) == len(pd.read_csv(source))


def test_a_missing_column_is_named_and_nothing_is_written(
    scoring: Params, bundle: ModelBundle, pipeline_outputs: Path, tmp_path: Path
) -> None:
    needed = bundle.features[0]
    table = pd.read_csv(pipeline_outputs / Paths.test_data).drop(columns=needed)
    table.to_csv(tmp_path / "input.csv", index=False)
    with pytest.raises(DataSourceError, match=f"no column {needed}"):
        batch.run(scoring, str(tmp_path / "input.csv"), str(tmp_path / "scored.csv"))
    assert not list(tmp_path.glob("*scored*"))


def test_an_interrupted_run_leaves_no_output_and_logs_nothing(
    scoring: Params,
    pipeline_outputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second chunk fails (a crash, a full disk): the first chunk's rows were written to a
    temporary file and staged for the log; neither is left as if it were complete."""
    scoring = scoring.model_copy(
        update={"batch": scoring.batch.model_copy(update={"chunk_rows": 10})}
    )
    calls = []
    score_chunk = batch.score_chunk

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return score_chunk(*args, **kwargs)

    monkeypatch.setattr(batch, "score_chunk", failing_second)
    for output in ("scored.csv", "scored.parquet"):
        calls.clear()
        with pytest.raises(OSError, match="No space"):
            batch.run(scoring, str(pipeline_outputs / Paths.test_data), str(tmp_path / output))
        assert not list(tmp_path.glob("*scored*"))  # no output, no temporary file
    assert open_sink(scoring.serving.prediction_log).read_predictions().empty
    assert not list((tmp_path / "spool").glob(".batch-log-*"))


def test_a_database_query_is_scored_into_a_database_table(
    scoring: Params, pipeline_outputs: Path, tmp_path: Path
) -> None:
    """Source and output in databases (SQLite files here): the query read in chunks, the table
    written in one transaction; an existing table is refused and kept."""
    import sqlalchemy as sa

    source, output = (f"sqlite:///{tmp_path / name}" for name in ("source.db", "scores.db"))
    applicants = pd.read_csv(pipeline_outputs / Paths.test_data)
    with contextlib.closing(sa.create_engine(source).connect()) as connection:
        applicants.to_sql("applicants", connection, index=False)
        connection.commit()
    query = "SELECT * FROM applicants"
    scoring = scoring.model_copy(
        update={"batch": scoring.batch.model_copy(update={"chunk_rows": 50})}
    )
    done = batch.run(scoring, source, output, query=query, output_table="scores")
    with pytest.raises(PipelineError, match="table scores exists"):
        batch.run(scoring, source, output, query=query, output_table="scores")
    with contextlib.closing(sa.create_engine(output).connect()) as connection:
        scored = pd.read_sql_table("scores", connection)
        rejects = pd.read_sql_table("scores_rejects", connection)
    assert len(scored) == done.scored == done.rows == len(applicants) and rejects.empty


def test_a_log_that_is_down_gets_the_records_later_from_the_spool(
    scoring: Params,
    pipeline_outputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The output is whole when the log refuses: the records wait in the service's spool,
    and its replay (as the service does at start) puts every one into the log."""
    from {{ cookiecutter.package_name }}.serving import prediction_log

    class Down(prediction_log.DirectorySink):
        def write_missing(self, table, records):
            raise OSError("connection refused")

    monkeypatch.setattr(batch, "open_sink", lambda target, base_dir: Down(target))
    done = batch.run(scoring, str(pipeline_outputs / Paths.test_data), str(tmp_path / "s.csv"))
    assert len(pd.read_csv(tmp_path / "s.csv")) == done.scored
    assert "the prediction log refused the batch's records (connection refused)" in (
        capsys.readouterr().err
    )
    assert f"the scored rows wait in {tmp_path / 'spool'}" in done.describe()
    spool = prediction_log.open_spool(scoring.serving.prediction_spool)
    sink = open_sink(scoring.serving.prediction_log)
    assert spool.replay(sink) == done.scored
    logged = sink.read_predictions()
    assert sorted(logged["prediction_id"]) == sorted(
        pd.read_csv(tmp_path / "s.csv")["prediction_id"]
    )
