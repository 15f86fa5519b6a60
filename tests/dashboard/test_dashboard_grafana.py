"""deploy/grafana/: well-formed, templated Grafana dashboards whose every metric is one that a
live scrape exports (and that show every metric exported): the model server's
(radstream-model-server.json, a live ``radstream model serve``) and the engine's
(radstream-engine.json, a live ``radstream serve --metrics-port``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from radstream.kserve import encode_infer_request
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.serving import ServeConfig, running_server
from radstream.settings import Settings
from support.engine_metrics import mixed_studies, scrape, serving_engine
from support.waiting import wait_until

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat"}
MODEL = "radstream-densenet121"
# Labels Prometheus adds to every series it scrapes; the server itself does not export them.
TARGET_LABELS = {"job", "instance"}


@dataclass(frozen=True)
class Board:
    """One dashboard file and the template variables every one of its queries must use."""

    file: str
    uid: str
    variables: tuple[str, ...]


SERVER = Board(
    "radstream-model-server.json", "radstream-model-server", ("job", "instance", "model")
)
ENGINE = Board("radstream-engine.json", "radstream-engine", ("job", "instance"))
BOARDS = [SERVER, ENGINE]


def load(board: Board = SERVER) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA / board.file).read_text(encoding="utf-8"))
    return loaded


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text: the panels' targets and the template variables' queries."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL text: a name before a selector, or any server-style name."""
    selected = set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", expr))
    named = set(re.findall(r"\b(?:nv|radstream)_[a-z0-9_]+\b", expr))
    in_label_values = set(re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", expr))
    return (selected | named | in_label_values) - {"label_values"}


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (…)`` clauses."""
    return {
        label.strip()
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.uid)
def test_the_dashboard_is_a_templated_grafana_dashboard(board: Board) -> None:
    dashboard = load(board)
    assert dashboard["uid"] == board.uid and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", *board.variables}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in board.variables:
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES and panel["title"] and panel["description"]
        assert panel["datasource"] == DATASOURCE
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            # Every query is filtered by the template variables.
            for variable in (f"${name}" for name in board.variables):
                assert variable in target["expr"], (panel["title"], target["expr"])
            assert target["expr"].count("(") == target["expr"].count(")")


def test_the_metric_name_extraction_sees_every_kind_of_reference() -> None:
    expr = 'sum by (model) (rate(nv_x_total{job=~"$job"}[5m])) / radstream_y'
    assert metric_names(expr) == {"nv_x_total", "radstream_y"}
    assert metric_names("label_values(foo_bar, job)") == {"foo_bar"}
    assert grouping_labels("sum by (model, reason) (x) / sum by (model) (y)") == {
        "model",
        "reason",
    }


@pytest.mark.slow  # a real model server, with its instance processes
def test_every_metric_it_queries_is_one_a_live_server_exports(
    standin_model: Path, tmp_path: Path
) -> None:
    config = ServeConfig(model_path=standin_model, port=0, max_queue_delay_ms=5.0)
    with running_server(config) as url:
        images = np.zeros((1, 1, 224, 224), dtype=np.float32)
        body, headers = encode_infer_request({"input": images}, outputs=["logits"], binary=True)
        ok = httpx.post(
            f"{url}/v2/models/{MODEL}/infer", content=body, headers=headers, timeout=120
        )
        assert ok.status_code == 200, ok.text
        bad = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=b"{", timeout=30)
        assert bad.status_code == 400
        text = httpx.get(f"{url}/metrics", timeout=30).text
    check_against_scrape(load(SERVER), text, ("nv_", "radstream_"))


def check_against_scrape(dashboard: dict[str, Any], text: str, prefixes: tuple[str, ...]) -> None:
    """Every metric ``dashboard`` queries (and every label it groups by) is in the scrape
    ``text``, and every exported metric named with one of ``prefixes`` has a panel."""
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    queried: set[str] = set()
    for expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        missing = names - set(exported)
        assert not missing, f"{expr!r} queries {missing}, which /metrics does not export"
        for label in grouping_labels(expr) - TARGET_LABELS:
            assert all(label in exported[n] for n in names), (expr, label)
        queried |= names
    # The other way round: every exported metric has a panel.
    served = {n for n in exported if n.startswith(prefixes)}
    assert served <= queried, f"metrics without a panel: {sorted(served - queried)}"


@pytest.mark.slow  # a real `radstream serve`, its worker processes and its /metrics server
def test_every_metric_the_engine_dashboard_queries_is_one_a_live_engine_exports(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    # One success and one failure: the failure counter then has a `code` series.
    studies = mixed_studies(1, ["sidecar_missing_field"])
    with serving_engine(settings, tmp_path) as served, LocalEngine.open(settings) as engine:
        for study in studies:
            upload_generated(engine.store, study)

        def finished() -> bool:
            got = scrape(served.url)
            return got.value("radstream_executions_succeeded_total") == 1 and got.by_label(
                "radstream_executions_failed_total", "code"
            ) == {"SIDECAR_MISSING_FIELD": 1}

        wait_until(finished, "both studies to finish", timeout_s=180, interval_s=0.2)
        text = httpx.get(served.url, timeout=30).text
    check_against_scrape(load(ENGINE), text, ("radstream_",))
