"""The ``casebook`` command line. Heavy libraries are imported inside commands so ``--help`` is instant."""

from __future__ import annotations

import json
import os
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipelines.core.cases import CASES, get
from pipelines.core.flow import STEPS
from pipelines.core.settings import Paths, apply_privacy_defaults

app = typer.Typer(help="Casebook: the ML system design case studies as runnable pipelines.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


class Scale(StrEnum):
    tiny = "tiny"
    small = "small"
    large = "large"


class Source(StrEnum):
    simulator = "simulator"
    file = "file"


Step = Enum("Step", {s: s for s in STEPS}, type=str)  # type: ignore[misc]


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _case(name: str) -> str:
    if name != "all" and name not in CASES:
        _fail(f"unknown case study {name!r}; choose one of: {', '.join(CASES)} or 'all'")
    return name


@app.command("list")
def list_cases() -> None:
    """List the case studies and whether each has been run here."""
    from rich.console import Console
    from rich.table import Table

    paths = Paths.from_env()
    table = Table("case", "title", "last metrics")
    for case in CASES.values():
        m = paths.metrics(case.name)
        table.add_row(case.name, case.title, str(m.relative_to(paths.home)) if m.exists() else "-")
    Console().print(table)


@app.command()
def run(
    case: Annotated[str, typer.Argument(help="a case study name, or 'all'")],
    step: Annotated[list[Step] | None, typer.Option("--step", "-s", help="run only this step (repeatable)")] = None,
    scale: Annotated[Scale | None, typer.Option(help="world size; default from params.yaml")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="simulator seed; default from params.yaml")] = None,
    drift: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="drift of the monitored window")] = None,
    source: Annotated[Source | None, typer.Option(help="where the data comes from; default from params.yaml")] = None,
    interactions: Annotated[Path | None, typer.Option(help="file source: CSV/Parquet of user_id, item_id, "
                                                      "timestamp [, rating | event]")] = None,
    items: Annotated[Path | None, typer.Option(help="file source: optional CSV/Parquet of item attributes")] = None,
) -> None:
    """Run a case study's flow set (or one step of it) as a Prefect flow."""
    from rich.console import Console

    from pipelines.core.settings import ConfigError
    from pipelines.core.validation import ValidationFailed

    apply_privacy_defaults()
    console = Console()
    names = list(CASES) if _case(case) == "all" else [case]
    files = {k: v for k, v in {"source": source.value if source else None, "interactions": interactions,
                               "items": items}.items() if v is not None}
    if files and (case == "all" or not get(case).file_source):
        _fail(f"--source/--interactions/--items need a case study that reads files: "
              f"{', '.join(c.name for c in CASES.values() if c.file_source)}")
    for name in names:
        with console.status(f"[bold]{name}[/]: running {', '.join(s.value for s in step) if step else 'all steps'}"):
            try:
                result = get(name).load_flow()(steps=[s.value for s in step] if step else None,
                                               scale=scale.value if scale else None, seed=seed, drift=drift, **files)
            except ValidationFailed as exc:
                _fail(str(exc))
            except (ConfigError, FileNotFoundError, LookupError, ValueError) as exc:
                _fail(f"{name}: {exc}")
        console.print(f"[green]done[/] {name}: {', '.join(result)}")
        if "evaluate" in result:
            _print_report(name)
        if "monitor" in result:
            mon = result["monitor"]
            console.print(f"monitor: drift share {mon['drift_share']:.2f}, alarm {mon['alarm']}, "
                          f"report {mon['html_path']}")


def _print_report(case: str) -> None:
    from rich.console import Console
    from rich.table import Table

    file = Paths.from_env().metrics(case)
    if not file.exists():
        _fail(f"no metrics for {case}: run `casebook run {case}` first ({file} is missing)")
    metrics = json.loads(file.read_text())
    # A case with several systems (e.g. each candidate generator alone) reports them all, one row each.
    rows = metrics.get("systems") or {k: metrics[k] for k in ("baseline", "model", "oracle") if k in metrics}
    keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, int | float) and k != "users"]
    covered = ", ".join(f"{v:,} {k}" for k, v in metrics.get("coverage", {}).items())
    table = Table(title=f"{case} — test window: {covered}")
    table.add_column("system")
    for k in keys:
        table.add_column(k, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[k]:.4f}" for k in keys))
    Console().print(table)


@app.command()
def report(case: Annotated[str, typer.Argument(help="a case study name")]) -> None:
    """Print the last evaluation: model vs baseline vs oracle."""
    _print_report(get(_case(case)).name)


@app.command()
def monitor(
    case: Annotated[str, typer.Argument(help="a case study name")],
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="drift of the new window")] = 0.0,
) -> None:
    """Score a new window of traffic and write an Evidently drift report (retrains on alarm)."""
    run(case, step=[Step("monitor")], scale=None, seed=None, drift=drift)


@app.command()
def serve(
    case: Annotated[str, typer.Argument(help="a case study name")],
    port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean it")] = "127.0.0.1",
) -> None:
    """Serve the champion model of a case over HTTP (BentoML); OpenAPI docs at /docs."""
    from pipelines.core.settings import PROJECT_ROOT

    apply_privacy_defaults()
    get(_case(case))
    paths = Paths.from_env()
    os.environ["BENTOML_HOME"] = str(paths.models)
    os.chdir(PROJECT_ROOT)
    from pipelines.core.serving import service_target

    os.execvp("bentoml", ["bentoml", "serve", service_target(case), "--host", host, "--port", str(port)])


if __name__ == "__main__":
    app()
