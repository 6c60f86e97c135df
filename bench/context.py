"""What every phase shares: the run's options, its temp directory, the data, the results, the console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from bench.data import Shape
from bench.measure import Results

DIALECTS = ("international", "german")
DATASET = "parking-international"


@dataclass
class Context:
    work: Path
    rows: int
    repeat: int
    quick: bool
    console: Console
    heavy_repeat: int = 0  # repeats of the slowest steps (0: same as repeat)
    http_seconds: float = 6.0
    concurrency: int = 8
    catalogue_sizes: tuple[int, int] = (1_000, 10_000)
    search_sizes: tuple[int, int] = (10_000, 100_000)
    frictionless_rows: int = 50_000
    prefer_wrk: bool = True
    server_memory_limit_mb: int = 1024
    results: Results = field(default_factory=Results)
    csv: dict[str, Path] = field(default_factory=dict)
    defs: Path | None = None
    store_dir: Path | None = None  # data dir holding the published international version
    parts: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def heavy(self) -> int:
        return self.heavy_repeat or self.repeat

    @property
    def shape(self) -> Shape:
        return Shape.of(self.rows)

    def step(self, text: str) -> None:
        self.console.log(text)
