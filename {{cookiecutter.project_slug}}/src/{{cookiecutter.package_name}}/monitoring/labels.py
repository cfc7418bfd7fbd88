"""The feedback labels' provenance: who supplied a window's labels, how each labeller's labels
compare with the model's decisions on the same rows and with the history (the test split's
labels), and whether they may be judged with (`monitor.labels`). Labels are what the release gate
(`make challenge`) and monitoring's performance check read, so one caller flooding wrong labels
(OWASP ML08, model skewing) must not steer them silently: the window is refused, naming the
labeller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import LabelsConfig
from {{ cookiecutter.package_name }}.monitoring.frames import LABELLER, PREDICTION
from {{ cookiecutter.package_name }}.task import is_known

UNKNOWN_LABELLER = "unknown"  # feedback recorded before labellers were, or a source without them


@dataclass(frozen=True)
class LabellerLabels:
    """One labeller's labels in the window."""

    labeller: str
    labels: int
    share: float  # of the window's labels
    label_mix: str
    decision_mix: str  # the model's decisions on the same rows
    agreement: float | None  # share of labels that are the decision (classes; None: a number)
    shift: float  # this labeller's labels against the history


@dataclass(frozen=True)
class Provenance:
    """The window's labels by labeller, and why they are not to be judged with (if so)."""

    labels: int
    shift: float  # all the window's labels against the history
    test: str  # what `shift` measures
    labellers: list[LabellerLabels] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def judged(self) -> bool:
        return not self.refusals

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Provenance:
        """Back from `dict` (a run's result.json)."""
        return cls(
            labels=stored["labels"],
            shift=stored["shift"],
            test=stored["test"],
            labellers=[LabellerLabels(**labeller) for labeller in stored["labellers"]],
            refusals=list(stored["refusals"]),
        )

    def dict(self) -> dict[str, Any]:
        return asdict(self)


def labellers(frame: pd.DataFrame) -> pd.Series:
    """Who supplied each row's label ("unknown" where nobody is recorded)."""
    column = frame[LABELLER] if LABELLER in frame else pd.Series(None, index=frame.index)
    return column.astype("string").fillna(UNKNOWN_LABELLER).replace("", UNKNOWN_LABELLER)


def provenance(
    frame: pd.DataFrame, history: pd.Series, bundle: ModelBundle, limits: LabelsConfig
) -> Provenance:
    """The labelled rows of `frame` (monitoring's layout) by labeller, against `history`."""
    task = bundle.task
    rows = frame[is_known(frame[bundle.target])]
    total = len(rows)
    if not total:
        return Provenance(labels=0, shift=0.0, test=task.label_shift_test)
    names = labellers(rows)
    classes = bool(bundle.schema.target_values)
    each = []
    for name, group in rows.groupby(names, sort=False):
        labels, decisions = group[bundle.target], group[PREDICTION]
        agreement = (labels.astype(str) == decisions.astype(str)).mean() if classes else None
        each.append(
            LabellerLabels(
                labeller=str(name),
                labels=len(group),
                share=len(group) / total,
                label_mix=task.label_mix(labels),
                decision_mix=task.label_mix(decisions),
                agreement=None if agreement is None else float(agreement),
                shift=task.label_shift(labels, history),
            )
        )
    each.sort(key=lambda labeller: (-labeller.labels, labeller.labeller))
    shift = task.label_shift(rows[bundle.target], history)
    return Provenance(total, shift, task.label_shift_test, each, _refusals(each, shift, limits))


def _refusals(each: list[LabellerLabels], shift: float, limits: LabelsConfig) -> list[str]:
    """Why the labels are not to be judged with, each naming the labeller(s) and the limit."""
    total = sum(labeller.labels for labeller in each)
    refusals = [
        f"labeller '{labeller.labeller}' supplied {labeller.labels} of the {total} labels"
        f" ({labeller.share:.0%}), more than monitor.labels.max_labeller_share"
        f" {limits.max_labeller_share:.0%}"
        for labeller in each
        if labeller.share > limits.max_labeller_share
    ]
    if shift > limits.max_label_shift:
        departing = [labeller for labeller in each if labeller.shift > limits.max_label_shift]
        named = (
            "from labeller "
            + ", ".join(
                f"'{labeller.labeller}' ({labeller.labels} labels, their own shift"
                f" {labeller.shift:.3f})"
                for labeller in departing
            )
            if departing
            else "no one labeller's own labels depart by more: all of them together do"
        )
        refusals.append(
            f"the labels depart from the test split's by {shift:.3f}, more than"
            f" monitor.labels.max_label_shift {limits.max_label_shift:g}: {named}"
        )
    return refusals


def markdown(seen: Provenance) -> list[str]:
    """The provenance as markdown lines: a table of labellers, then the refusals if any."""
    if not seen.labels:
        return ["No feedback labels in the window."]
    lines = [
        f"Labels' provenance: {seen.labels} labels; against the test split's labels"
        f" {seen.shift:.3f} ({seen.test}).",
        "",
        "| labeller | labels | share | label mix | the model's decisions on them"
        " | agreement | shift |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    for labeller in seen.labellers:
        agreement = "" if labeller.agreement is None else f"{labeller.agreement:.0%}"
        lines.append(
            f"| {labeller.labeller} | {labeller.labels} | {labeller.share:.0%}"
            f" | {labeller.label_mix} | {labeller.decision_mix} | {agreement}"
            f" | {labeller.shift:.3f} |"
        )
    if seen.refusals:
        lines += ["", "**Not judged with these labels**:"]
        lines += [f"- {refusal}" for refusal in seen.refusals]
    return lines
