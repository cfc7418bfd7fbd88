"""The entry point dvc.yaml and the Makefile call:
`python -m {{ cookiecutter.package_name }} <command>`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from {{ cookiecutter.package_name }}.config import load_params
from {{ cookiecutter.package_name }}.errors import ConfigError, PipelineError

STAGES = (
    "ingest",
    "curate",
    "validate",
    "explore",
    "split",
    "train",
    "evaluate",
    "fairness",
    "explain",
    "model_card",
    "register",
    "reference",
)


def generate_schema() -> str:
    """Draft schema.yaml from the configured source, for a person to review before committing.
    Everything that validate would refuse, and the params.yaml change for each, is reported in
    one pass; then nothing is written."""
    from pathlib import Path

    from {{ cookiecutter.package_name }}.io import load_table, redact, write_text
    from {{ cookiecutter.package_name }}.pipeline.curate import curate
    from {{ cookiecutter.package_name }}.pipeline.validate import quality_violations
    from {{ cookiecutter.package_name }}.privacy import propose_log
    from {{ cookiecutter.package_name }}.schema import infer_schema

    params = load_params()
    data = params.data
    target = Path(data.schema_file)
    table, report = curate(
        load_table(data.source, data.query), params.curate.missing_tokens, data.drop_columns
    )
    schema, problems = infer_schema(table, data.target, data.task)
    problems += quality_violations(
        table, data, params.validate_, report["duplicate_share"], schema.target_values
    )
    derived_sources = {name: spec.source for name, spec in data.derived_columns.items()}
    for key, names in (
        ("data.sensitive_features", [derived_sources.get(n, n) for n in data.sensitive_features]),
        ("data.not_model_inputs", data.not_model_inputs),
    ):
        problems += [
            f"{key}: '{name}' is not a column of the data"
            for name in names
            if name not in table.columns
        ]
    monitor = params.monitor
    for key, names in (
        ("monitor.thresholds.key_features", monitor.thresholds.key_features),
        ("monitor.simulate.drift", list(monitor.simulate.drift)),
    ):
        problems += [
            f"{key}: '{name}' is not a feature column: remove '{name}' from {key}"
            for name in names
            if name not in schema.feature_names
        ]
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(
            f"{target} not written: {len(problems)} problem(s) to solve in params.yaml first:\n"
            f"{listed}"
        )
    sensitive = [derived_sources.get(name, name) for name in data.sensitive_features]
    schema, reasons = propose_log(schema, table, sensitive, data.not_model_inputs)
    header = (
        f"# Data contract for {redact(data.source)},"
        f" drafted by `make schema` from {len(table)} rows.\n"
        "# Review it: widen ranges and add categories the data did not show but may, then commit.\n"
        "# `log:` is what the prediction log keeps of a column (keep, pseudonymise, drop),\n"
        "# proposed with the reason beside it: decide each (docs/security.md).\n"
    )
    write_text(header + schema.to_yaml(reasons), target)
    columns = len(schema.columns)
    logged = "; ".join(
        f"{action}s {', '.join(c.name for c in schema.columns if c.log == action)}"
        for action in ("pseudonymise", "drop")
        if any(c.log == action for c in schema.columns)
    )
    return (
        f"wrote {target}: {columns} feature columns, target '{schema.target}'. Proposed for the"
        f" prediction log (each column's `log:`): {logged + '; ' if logged else ''}keeps the"
        " rest. Review it."
    )


Command = Callable[[argparse.Namespace], int]  # runs one command; returns the exit code


class UsageError(Exception):
    """A command's arguments that argparse alone cannot refuse; reported as argparse reports."""


def run_stage(args: argparse.Namespace) -> int:
    stage = args.command.replace("-", "_")
    module = importlib.import_module(f"{{ cookiecutter.package_name }}.pipeline.{stage}")
    module.run(load_params())
    return 0


def draft_schema(args: argparse.Namespace) -> int:
    print(generate_schema())
    return 0


def log_key(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.privacy import key_file, rotate_key

    path = key_file(load_params().serving.privacy.key_file)
    existed = path.is_file()
    if existed and args.if_missing:
        return 0
    created = rotate_key(path)
    done = "rotated: new current key" if existed else "created key"
    print(f"{path}: {done} {created} (owner-only; keep it out of git, mount it as a Secret)")
    return 0


def predict(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }} import batch

    done = batch.run(
        load_params(),
        args.input,
        args.output,
        query=args.query,
        output_table=args.output_table,
        overwrite=args.overwrite,
        explain=args.explain,
    )
    print(done.describe())
    return 0


def monitor(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.monitoring import report

    print(report.summary_markdown(report.run(load_params())))
    return 0


def simulate(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.monitoring import simulate as simulator

    done = simulator.run(load_params(), url=args.url, drift=args.drift)
    shifted = ", ".join(done["drift"]) or "none"
    print(
        f"sent {done['requests']} simulated requests to {done['to']}"
        f" ({done['feedback']} with feedback; shifted: {shifted})"
    )
    return 0


def purge(args: argparse.Namespace) -> int:
    """Delete predictions and labels older than monitor.retention_days (or --before) from the
    prediction log and its spool."""
    from datetime import UTC, datetime
    from pathlib import Path

    from {{ cookiecutter.package_name }}.serving import prediction_log as log

    params = load_params()
    if args.before:
        try:
            cutoff = datetime.fromisoformat(args.before)
        except ValueError:
            raise UsageError(f"--before {args.before!r} is not an ISO date (2024-01-31)") from None
        cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    else:
        cutoff = log.retention_cutoff(params.monitor.retention_days)
    sink = log.open_sink(params.serving.prediction_log, base_dir=Path.cwd())
    spool = log.open_spool(params.serving.prediction_spool, base_dir=Path.cwd())
    print(log.purge(sink, spool, cutoff).describe())
    return 0


def monitor_ui(args: argparse.Namespace) -> int:
    """Replaces this process with `evidently ui` on the monitoring workspace."""
    workspace = load_params().monitor.workspace
    ui_args = ["evidently", "ui", "--workspace", workspace, "--host", "127.0.0.1"]
    os.execvp("evidently", [*ui_args, "--port", str(args.port)])


def image(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.serving import image as images

    if args.check:
        images.check_source(allow_dirty=args.allow_dirty)
        return 0
    repository = args.image or load_params().deploy.image  # the image deploy/ deploys
    for tag in images.build(repository, allow_dirty=args.allow_dirty).tags:
        print(f"built {tag}")
    return 0


def manifests(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.deploy import manifests as kubernetes

    params = load_params()
    if args.check:
        kubernetes.check(params)
        print("deploy/ is what params.yaml renders")
        return 0
    changed = kubernetes.write(params)
    for path in changed:
        print(f"wrote {path}" if path.exists() else f"removed {path}")
    if not changed:
        print("deploy/ was already what params.yaml renders")
    return 0


def challenge(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }} import challenge as champion

    try:
        champion.run(load_params(), image_model_sha256=args.image_model_sha256)
    finally:  # the comparison, passed or refused, for the terminal and the job log
        if champion.REPORT.is_file():
            print(champion.REPORT.read_text(), end="")
    return 0


def record_deployment(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }} import deployments

    done = deployments.record(
        args.environment,
        commit=args.commit,
        image_digest=args.image_digest,
        model_version=args.model_version,
        push_to=args.push,
    )
    print(f"recorded {done.tag} on {done.commit}")
    return 0


def render_deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from {{ cookiecutter.package_name }}.deploy import rollout

    params = load_params()
    manifests = rollout.render(args.environment, args.digest, skip_analysis=args.skip_analysis)
    if args.output:
        Path(args.output).write_text(manifests)
        print(
            f"rendered deploy/overlays/{args.environment} with {params.deploy.image}@{args.digest}"
            f" into {args.output}"
        )
    else:
        print(manifests, end="")
    return 0


def deploy_facts(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.deploy import rollout

    for name, value in rollout.environment_facts(load_params(), args.environment).items():
        print(f"{name}={value}")
    return 0


def smoke(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.deploy import smoke as checks

    print(checks.run(args.url, wait=args.wait))
    return 0


def rollback(args: argparse.Namespace) -> int:
    """Print the rollback's target; then apply it, or with --dry-run print what would be."""
    from pathlib import Path

    from {{ cookiecutter.package_name }}.deploy import rollout

    planned = rollout.rollback(args.digest)
    print(planned.describe(), file=sys.stderr)
    if args.output:  # and, for scripts, what was chosen as name=value lines on stdout
        Path(args.output).write_text(planned.manifests)
        print(f"wrote the manifests to {args.output}", file=sys.stderr)
        deployment = planned.deployment
        print(f"digest={planned.digest}\ncommit={deployment.commit}\ntag={deployment.tag}")
    if args.dry_run:
        if not args.output:
            print(planned.manifests, end="")
        print("dry run: nothing applied", file=sys.stderr)
        return 0
    print(rollout.apply(planned.manifests), end="")
    deployment = planned.deployment
    print(
        "applied to the current kube context. When the Canary reports Succeeded, record it:"
        " python -m {{ cookiecutter.package_name }} record-deployment"
        f" --commit {deployment.commit} --image-digest {planned.digest} --push origin",
        file=sys.stderr,
    )
    return 0


def token(args: argparse.Namespace) -> int:
    """Create (printed once, on stdout alone), revoke or list API tokens; --local: `make
    serve`'s own."""
    from {{ cookiecutter.package_name }}.serving import auth

    path = auth.tokens_file(load_params().serving.auth.tokens_file)
    if args.list:
        for entry in auth.list_tokens(path):
            print(f"{entry['name']}\t{','.join(entry['scopes'])}\t{entry['created']}")
    elif args.revoke:
        auth.revoke_token(path, args.revoke)
        print(f"revoked '{args.revoke}' in {path}", file=sys.stderr)
    elif args.local:
        _, created = auth.local_token(path)
        done = "created the token 'local' (every scope)" if created else "the local token"
        print(
            f"{done}: clients send it from {auth.LOCAL_TOKEN_FILE}"
            f" (Authorization: Bearer $(cat {auth.LOCAL_TOKEN_FILE}))",
            file=sys.stderr,
        )
    else:
        if not args.name:
            raise UsageError("give --name NAME (or --revoke NAME, --list, --local)")
        secret = auth.create_token(path, args.name, args.scopes)
        print(secret)
        print(
            f"created '{args.name}' ({args.scopes}) in {path}. The token above is shown once:"
            f" give it to the caller (clients read it from {auth.TOKEN_ENV_VAR})",
            file=sys.stderr,
        )
    return 0


def registered(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package_name }}.serving.store import registered_model_missing

    missing = registered_model_missing()
    if missing:
        print(f"{missing}: registering again", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every command, each with the function that runs it (its `run` default)."""
    cli = argparse.ArgumentParser(prog="{{ cookiecutter.package_name }}", description=__doc__)
    commands = cli.add_subparsers(dest="command", required=True, title="commands")

    def command(name: str, run: Command, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=description)
        sub.set_defaults(run=run)
        return sub

    for stage in STAGES:
        command(stage.replace("_", "-"), run_stage, f"run the {stage} stage")
    command("schema", draft_schema, "draft schema.yaml from the data source (review it after)")
    keying = command(
        "log-key",
        log_key,
        "create or rotate the prediction log's pseudonymisation key (serving.privacy.key_file)",
    )
    keying.add_argument(
        "--if-missing", action="store_true", help="only create one where there is none"
    )
    scoring = command(
        "predict", predict, "score a table with the registered model (batch scoring; rejects)"
    )
    scoring.add_argument("--input", required=True, help="a CSV/Parquet file, URL or database URL")
    scoring.add_argument("--query", help="the SQL query, for a database input")
    scoring.add_argument("--output", required=True, help="a .csv or .parquet file, or database URL")
    scoring.add_argument("--output-table", help="the table, for a database output")
    scoring.add_argument("--overwrite", action="store_true", help="replace an existing output")
    scoring.add_argument(
        "--explain", action="store_true", help="add each decision's input contributions (SHAP)"
    )
    command("monitor", monitor, "compare the current window with the reference (gate)")
    simulating = command("simulate", simulate, "send simulated traffic (see monitoring)")
    simulating.add_argument("--url", help="a running service, e.g. http://127.0.0.1:3000")
    simulating.add_argument("--drift", action="store_true", help="shift monitor.simulate.drift")
    purging = command(
        "purge", purge, "delete log records older than monitor.retention_days (log and spool)"
    )
    purging.add_argument(
        "--before", help="an ISO date or time (UTC unless it says): delete what is older instead"
    )
    ui = command("monitor-ui", monitor_ui, "browse the monitoring workspace (evidently ui)")
    ui.add_argument("--port", type=int, default=8000)
    imaging = command("image", image, "containerize the newest bento (make image)")
    imaging.add_argument(
        "--image", help="the image repository (the Makefile's IMAGE; default params deploy.image)"
    )
    imaging.add_argument(
        "--allow-dirty", action="store_true", help="build from uncommitted changes, labelled dirty"
    )
    imaging.add_argument("--check", action="store_true", help="only check the work tree")
    rendering = command(
        "manifests", manifests, "render the Kubernetes manifests in deploy/ from params.yaml"
    )
    rendering.add_argument(
        "--check", action="store_true", help="only check that deploy/ is current (exit 1 if not)"
    )
    challenging = command(
        "challenge",
        challenge,
        "the candidate model against production's on the same data; refuses a worse one",
    )
    challenging.add_argument(
        "--image-model-sha256",
        default=os.environ.get("IMAGE_MODEL_SHA256"),
        help="the lineage.model-sha256 label of the image to deploy: refused unless it is the"
        " candidate's (default: IMAGE_MODEL_SHA256; unset: no image checked)",
    )
    recording = command(
        "record-deployment",
        record_deployment,
        "tag the deployed commit deployed/<environment>/<UTC time> (after a rollout)",
    )
    recording.add_argument("--environment", default="production")
    recording.add_argument("--commit", default="HEAD", help="the deployed commit (HEAD)")
    recording.add_argument("--image-digest", help="sha256:... or image@sha256:...")
    recording.add_argument("--model-version", help="default: reports/registry.json at the commit")
    recording.add_argument("--push", metavar="REMOTE", help="push the tag to this remote or URL")
    environments = ("staging", "production")
    pinning = command(
        "render-deploy",
        render_deploy,
        "render deploy/overlays/<environment> with the image pinned by digest (kubectl kustomize)",
    )
    pinning.add_argument("environment", choices=environments)
    pinning.add_argument("--digest", required=True, help="sha256:<64 hex digits>")
    pinning.add_argument(
        "--skip-analysis", action="store_true", help="production: Flagger promotes at once"
    )
    pinning.add_argument("--output", help="write the manifests here (default: print them)")
    facts = command(
        "deploy-facts",
        deploy_facts,
        "an environment's name, namespace, host and canary timeout, as name=value lines",
    )
    facts.add_argument("environment", choices=environments)
    checking = command(
        "smoke",
        smoke,
        "check a deployed service: ready, a test-split prediction as offline, malformed is 4xx",
    )
    checking.add_argument("url", help="e.g. https://staging.example.com")
    checking.add_argument("--wait", type=float, default=120.0, help="seconds to wait for /readyz")
    rolling = command(
        "rollback",
        rollback,
        "re-deploy a recorded production image (newest, or --digest) without canary analysis",
    )
    rolling.add_argument("--digest", help="the newest recorded deployment of this image")
    rolling.add_argument(
        "--dry-run", action="store_true", help="print the manifests; apply nothing"
    )
    rolling.add_argument(
        "--output", help="write the manifests to this file; print digest=, commit=, tag= lines"
    )
    tokens = command("token", token, "create an API token (printed once), or revoke or list them")
    tokens.add_argument("--name", help="who will call with it (recorded with each request)")
    tokens.add_argument(
        "--scopes",
        default="predict,explain,feedback",
        help="comma-separated, of predict, explain, feedback, simulate",
    )
    tokens.add_argument("--revoke", metavar="NAME", help="remove the token of this name")
    tokens.add_argument("--list", action="store_true", help="names, scopes, creation times")
    tokens.add_argument(
        "--local", action="store_true", help="make serve's token (secrets/local-token)"
    )
    command(
        "registered",
        registered,
        "exit 1 unless the model store holds the model the pipeline registered",
    )
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    cli = build_parser()
    args = cli.parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as error:
        cli.error(str(error))
    except PipelineError as error:
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
