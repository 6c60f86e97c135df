"""Ready-to-copy examples of reading one dataset version through the API: curl, Python, DuckDB, R."""

from __future__ import annotations

import json


def _py(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Python string literal


def examples(api_url: str, name: str, version: int, has_geometry: bool) -> list[dict[str, str]]:
    """``[{"label", "code"}]`` against ``api_url`` (the API's base URL, no trailing slash)."""
    base = f"{api_url}/datasets/{name}"
    records = f"{base}/records?version={version}&limit=10"
    parquet = f"{base}/exports/parquet?version={version}"
    csv = f"{base}/exports/csv?version={version}"
    found = [
        {"label": "curl", "code": f"curl -sS '{records}'\ncurl -sSL -o {name}-v{version}.parquet '{parquet}'"},
        {"label": "Python (httpx)", "code": (
            "import httpx\n\n"
            f"page = httpx.get({_py(f'{base}/records')}, params={{\"version\": {version}, \"limit\": 10}}).json()\n"
            "for row in page[\"results\"]:\n    print(row)")},
        {"label": "Python (pandas)", "code": (
            "import pandas as pd\n\n"
            f"df = pd.read_parquet({_py(parquet)})\n"
            f"# or: pd.read_csv({_py(csv)})\nprint(df.head())")},
        {"label": "DuckDB", "code": (
            "INSTALL httpfs; LOAD httpfs;\n"
            f"SELECT * FROM read_parquet('{parquet}') LIMIT 10;")},
        {"label": "R", "code": (
            f"df <- read.csv({_py(csv)})\nhead(df)")},
    ]
    if has_geometry:
        found[-1]["code"] += f"\n# geometry: sf::st_read({_py(f'{base}/exports/geojson?version={version}')})"
    return found
