"""``python -m bench [--quick] [--rows N] [--repeat K] [--output BENCHMARKS.md]``: run every phase, write the report."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import phase_catalogue, phase_catalogue_harvest, phase_http, phase_ingest, phase_pruning, phase_queries
from bench import phase_live
from bench import phase_mqtt
from bench import phase_ckan
from bench import phase_dcat
from bench import phase_reharvest
from bench import phase_ogc
from bench import phase_push
from bench import phase_backends
from bench.context import Context
from bench.loadgen import ensure_wrk
from bench import measure
from bench.measure import LoadSampler
from bench.report import render, write, write_facts

PHASES: list[tuple[str, str, Callable[[Context], None]]] = [
    ("ingest", "1 ingest", phase_ingest.run),
    ("queries", "2 queries", phase_queries.run),
    ("http", "3-5 HTTP, exports, memory", phase_http.run),
    ("catalogue", "6 catalogue", phase_catalogue.run),
    ("pruning", "7 Parquet statistics", phase_pruning.run),
    ("catalogue-harvest", "8 CKAN/DCAT harvests", phase_catalogue_harvest.run),
    ("ckan", "9 CKAN package_search", phase_ckan.run),
    ("dcat", "12 DCAT-AP.de /catalog.ttl", phase_dcat.run),
    ("live", "10 live values", phase_live.run),
    ("mqtt", "11 MQTT readings", phase_mqtt.run),
    ("reharvest", "13 unchanged re-harvest", phase_reharvest.run),
    ("ogc", "14 OGC API items", phase_ogc.run),
    ("push", "15 push deliveries", phase_push.run),
    ("backends", "16 production backends", phase_backends.run),
]
OPTIONAL = ("live", "http", "catalogue", "pruning", "catalogue-harvest", "ckan", "mqtt", "dcat", "reharvest", "ogc", "push",
            "backends")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 million rows, smaller catalogues, 3 s loads, 2 turns of the slowest steps, "
                        "no second measurement of a crossing ratio.")
    parser.add_argument("--rows", type=int, default=None, help="Rows of the parking history (default 10,000,000).")
    parser.add_argument("--repeat", type=int, default=3, help="Repeats of every measurement (default 3).")
    parser.add_argument("--heavy-repeat", type=int, default=None,
                        help="Repeats of the slowest steps (our ingest and its plain peers, the frictionless sample, "
                             "the CSV export's memory, the largest full site build); default: --repeat, but at most 2 "
                             "above 2 million rows and in quick mode.")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"), help="Report file (Markdown).")
    parser.add_argument("--facts", type=Path, default=None,
                        help="Also write every figure, target and checked configuration as JSON here.")
    parser.add_argument("--http-seconds", type=float, default=None, help="Duration of each load run (default 6, quick 3).")
    parser.add_argument("--concurrency", type=int, default=8, help="Connections of the load generator.")
    parser.add_argument("--catalogue-sizes", default=None,
                        help="Datasets for the site builds, e.g. 1000,10000 (quick: 200,1000).")
    parser.add_argument("--search-sizes", default=None,
                        help="Datasets for the search, e.g. 10000,100000 (quick: 1000,10000).")
    parser.add_argument("--skip", default="", help=f"Comma-separated phases to skip: {', '.join(OPTIONAL)}.")
    parser.add_argument("--no-wrk", action="store_true", help="Use the asyncio load generator even if wrk is there.")
    parser.add_argument("--no-install", action="store_true", help="Do not try to apt-get install wrk.")
    parser.add_argument("--workdir", type=Path, default=None, help="Parent of the temporary directory.")
    parser.add_argument("--strict", action="store_true", help="Exit 1 when a phase crashed (a missed target never fails).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (for debugging).")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(OPTIONAL)
    if unknown:
        parser.error(f"--skip takes {', '.join(OPTIONAL)}; not {', '.join(sorted(unknown))}")
    args.skip = skip
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _sizes(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    values = tuple(int(v) for v in text.split(","))
    return values if len(values) == 2 else (values[0], values[-1])  # type: ignore[return-value]


def main(argv: list[str] | None = None, console: Console | None = None) -> Path:
    args = parse(argv)
    console = console or Console(stderr=True)
    quick = args.quick
    rows = args.rows or (1_000_000 if quick else 10_000_000)
    measure.SETTLE_RETRIES = 0 if quick else 1
    work = Path(tempfile.mkdtemp(prefix="urbandata-bench-", dir=args.workdir))
    started = time.perf_counter()
    phase_seconds: dict[str, float] = {}
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            ctx = Context(
                work=work, rows=rows, repeat=args.repeat, quick=quick, console=progress.console,
                heavy_repeat=args.heavy_repeat or (min(args.repeat, 2) if rows > 2_000_000 or quick else args.repeat),
                http_seconds=args.http_seconds or (3.0 if quick else 6.0), concurrency=args.concurrency,
                catalogue_sizes=_sizes(args.catalogue_sizes, (200, 1_000) if quick else (1_000, 10_000)),
                search_sizes=_sizes(args.search_sizes, (1_000, 10_000) if quick else (10_000, 100_000)),
                frictionless_rows=20_000 if quick else 50_000, prefer_wrk=not args.no_wrk,
            )
            ctx.step(f"working in {work}; {rows:,} rows, {args.repeat} repeat(s)")
            if "http" not in args.skip and ctx.prefer_wrk and not args.no_install:
                ctx.step(ensure_wrk())
            task = progress.add_task("phases", total=len(PHASES) + 1)
            progress.update(task, description="writing the data")
            with LoadSampler(ctx.results.loads.setdefault("data", [])):
                phase_ingest.prepare_data(ctx)
            progress.advance(task)
            for key, label, run in PHASES:
                if key in args.skip:
                    ctx.results.skipped[key] = "--skip " + key
                    if key == "http":
                        ctx.results.skipped["exports"] = ctx.results.skipped["memory"] = "--skip http"
                    progress.advance(task)
                    continue
                progress.update(task, description=label)
                began = time.perf_counter()
                try:
                    with LoadSampler(ctx.results.loads.setdefault(key, [])):
                        run(ctx)
                except Exception as exc:  # noqa: BLE001 - one failed phase must not lose the others' figures
                    ctx.console.print(f"[red]phase {key} failed[/red]: {exc}")
                    ctx.console.print(traceback.format_exc())
                    ctx.results.skipped[key] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    if key == "http":
                        for sub in ("exports", "memory"):
                            ctx.results.skipped.setdefault(sub, ctx.results.skipped[key])
                phase_seconds[key] = time.perf_counter() - began
                progress.advance(task)
            if "loadgen" in ctx.results.texts:
                ctx.versions["loadgen"] = ctx.results.texts["loadgen"]
        text = render(ctx.results, command=command, mode="quick" if quick else "default", rows=rows,
                      repeat=args.repeat, heavy_repeat=ctx.heavy, seconds=time.perf_counter() - started, phase_seconds=phase_seconds,
                      found_versions=ctx.versions)
        write(args.output, text)
        failed = [t for t in ctx.results.targets if t.verdict != "PASS"]
        if args.facts:
            write_facts(args.facts, ctx.results)
        console.print(f"Wrote [bold]{args.output}[/bold]: {len(ctx.results.targets) - len(failed)} of "
                      f"{len(ctx.results.targets)} targets pass, in {(time.perf_counter() - started) / 60:.1f} min.")
        for t in failed:
            console.print(f"  [yellow]{t.verdict}[/yellow] {t.section}: {t.label}: {t.value:.3g} "
                          f"(target {t.op} {t.threshold:g})")
        if args.strict and ctx.results.skipped.keys() - args.skip - ({"exports", "memory"} if "http" in args.skip else set()):
            raise SystemExit(1)
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return args.output


if __name__ == "__main__":
    main()
