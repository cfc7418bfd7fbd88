"""Flagger's load tester (Flagger's flagger-loadtester image), as it answers a webhook whose
metadata has `type: bash`: it runs `bash -c <cmd>` and answers 200 when the command exits 0,
500 otherwise (pkg/loadtester/server.go). Here the rendered command runs on this machine (with
curl and jq, as in the load tester's image), against the test's Prometheus: its address, the
production namespace and the window written into the command are replaced by the test's."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from {{ cookiecutter.package_name }}.config import Params

from . import flagger


def replaced_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"the webhook's command has {old!r} {count} times, not once: {text}")
    return text.replace(old, new)


def command_for(
    hook: flagger.Webhook, params: Params, prometheus: str, namespace: str, window: str
) -> str:
    """The webhook's bash command as the test's release needs it: its Prometheus at
    `prometheus`, its Canary in `namespace`, the decision window `window` (shortened)."""
    if hook.metadata.get("type") != "bash":
        raise AssertionError(f"webhook {hook.name}: the load tester runs bash here, not {hook}")
    deploy = params.deploy
    command = replaced_once(hook.metadata["cmd"], deploy.prometheus, prometheus)
    production = deploy.environments.production.namespace
    command = replaced_once(command, f'namespace="{production}"', f'namespace="{namespace}"')
    return replaced_once(command, f"[{deploy.canary.decision_window}]", f"[{window}]")


def confirmer(
    params: Params, prometheus: str, namespace: str, window: str
) -> Callable[[flagger.Webhook], bool]:
    """flagger.run's `confirm`: True when the load tester would answer the webhook 200."""

    def confirm(hook: flagger.Webhook) -> bool:
        command = command_for(hook, params, prometheus, namespace, window)
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=15, check=False
        )
        return done.returncode == 0

    return confirm
