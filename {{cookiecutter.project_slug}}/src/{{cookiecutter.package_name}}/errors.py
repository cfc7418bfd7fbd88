"""The errors a stage raises on bad input: the CLI prints them as one clear message."""


class PipelineError(Exception):
    """A problem the user can fix (bad data, bad params, a failed gate); no traceback needed."""


class ConfigError(PipelineError):
    """params.yaml or schema.yaml holds a value the project cannot use."""


class DataSourceError(PipelineError):
    """The data source cannot be read."""


class DataValidationError(PipelineError):
    """The data breaks the schema or the quality rules; `violations` lists every problem."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {violation}" for violation in violations)
        super().__init__(f"{len(violations)} data violation(s):\n{lines}")


class GateError(PipelineError):
    """A model missed a threshold; `failures` says which and by how much."""

    def __init__(self, gate: str, failures: list[str]) -> None:
        self.failures = failures
        lines = "\n".join(f"  - {failure}" for failure in failures)
        super().__init__(f"{gate} gate failed:\n{lines}")
