"""The KServe v2 model server, end to end: real uvicorn on 127.0.0.1, real worker processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from radstream.errors import ConfigInvalid, ModelFileInvalid
from radstream.kserve import (
    HEADER_LENGTH,
    decode_infer_response,
    encode_infer_request,
)
from radstream.model import OnnxModel, read_model_info
from radstream.serving import ServeConfig, running_server
from radstream.serving.app import ServingApp
from support.waiting import wait_until

tc_http = pytest.importorskip("tritonclient.http")

pytestmark = pytest.mark.slow

NAME = "radstream-densenet121"
RNG = np.random.default_rng(11)


def _images(n: int) -> np.ndarray:
    return RNG.uniform(-1024, 1024, size=(n, 1, 224, 224)).astype(np.float32)


def _metrics(url: str, token: str | None = None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if "reason" in sample.labels:
                key += ":" + sample.labels["reason"]
            values[key] = sample.value
    return values


def _post_infer(
    url: str, images: np.ndarray, *, binary: bool = True, headers: dict[str, str] | None = None
) -> httpx.Response:
    body, wire = encode_infer_request({"input": images}, outputs=["logits"], binary=binary)
    return httpx.post(
        f"{url}/v2/models/{NAME}/infer",
        content=body,
        headers={**wire, **(headers or {})},
        timeout=60,
    )


def _logits(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER_LENGTH)
    return decode_infer_response(response.content, None if length is None else int(length))[
        "logits"
    ]


def _instances() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("radstream-instance")]


@pytest.fixture(scope="module")
def reference(standin_model: Path) -> OnnxModel:
    return OnnxModel.load(standin_model, intra_op_threads=1)


@pytest.fixture(scope="module")
def server(standin_model: Path) -> Iterator[str]:
    config = ServeConfig(model_path=standin_model, port=0, max_queue_delay_ms=20.0)
    with running_server(config) as url:
        yield url
    assert not _instances(), "the server left instance processes behind"


# --- protocol conformance with tritonclient ------------------------------------------------


def test_tritonclient_health_and_metadata(server: str) -> None:
    client = tc_http.InferenceServerClient(url=server.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(NAME)
        assert client.is_model_ready(NAME, model_version="1")
        meta = client.get_model_metadata(NAME)
        assert client.get_model_metadata(NAME, model_version="1") == meta
    finally:
        client.close()
    assert meta["name"] == NAME
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 224, 224]}]
    assert meta["outputs"][0]["datatype"] == "FP32"
    assert meta["outputs"][0]["shape"] == [-1, 18]
    params = meta["parameters"]
    assert len(json.loads(params["labels"])) == 18
    assert params["input_range"] == "-1024,1024"
    assert params["input_size"] == "224"
    assert params["channels"] == "1"
    assert len(params["sha256"]) == 64


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_matches_in_process(
    server: str, reference: OnnxModel, binary: bool
) -> None:
    x = _images(3)
    item = tc_http.InferInput("input", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    wanted = tc_http.InferRequestedOutput("logits", binary_data=binary)
    client = tc_http.InferenceServerClient(url=server.removeprefix("http://"))
    try:
        result = client.infer(NAME, [item], outputs=[wanted], request_id="req-7")
    finally:
        client.close()
    out = result.as_numpy("logits")
    assert out.shape == (3, 18)
    assert out.dtype == np.float32
    assert result.get_response()["id"] == "req-7"
    assert ("parameters" in result.get_output("logits")) is binary
    np.testing.assert_allclose(out, reference.predict_logits(x), atol=1e-5, rtol=0)


def test_versioned_infer_and_oversized_request_is_refused(
    server: str, reference: OnnxModel
) -> None:
    x = _images(8)  # max_batch_size=8: the largest request allowed
    body, headers = encode_infer_request({"input": x}, outputs=None)
    response = httpx.post(
        f"{server}/v2/models/{NAME}/versions/1/infer", content=body, headers=headers, timeout=60
    )
    np.testing.assert_allclose(_logits(response), reference.predict_logits(x), atol=1e-5, rtol=0)
    # One more image than max_batch_size: refused, never run alone (an instance would keep
    # the memory of that batch for good).
    body, headers = encode_infer_request({"input": _images(9)}, outputs=None)
    oversized = httpx.post(
        f"{server}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=60
    )
    assert oversized.status_code == 400
    assert "--max-batch-size=8" in oversized.json()["error"]


def test_errors_are_json_with_the_right_status(server: str) -> None:
    x = _images(1)
    assert httpx.get(f"{server}/v2/models/nope", timeout=10).status_code == 404
    missing = httpx.post(f"{server}/v2/models/nope/infer", content=b"{}", timeout=10)
    assert missing.status_code == 404
    assert "unknown model" in missing.json()["error"]
    assert httpx.get(f"{server}/v2/models/{NAME}/versions/2", timeout=10).status_code == 404

    bad = httpx.post(f"{server}/v2/models/{NAME}/infer", content=b"not json", timeout=10)
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]

    body, headers = encode_infer_request({"input": x[:, :, :100]}, outputs=None)
    wrong_shape = httpx.post(
        f"{server}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=10
    )
    assert wrong_shape.status_code == 400
    assert "expected [N, 1, 224, 224]" in wrong_shape.json()["error"]

    body, headers = encode_infer_request({"input": x.astype(np.float16)}, outputs=None)
    fp16 = httpx.post(f"{server}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=10)
    assert fp16.status_code == 400
    assert "must be FP32" in fp16.json()["error"]

    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    assert _post_infer(server, nan).status_code == 400

    body, headers = encode_infer_request({"input": x}, outputs=["probabilities"])
    unknown = httpx.post(
        f"{server}/v2/models/{NAME}/infer", content=body, headers=headers, timeout=10
    )
    assert unknown.status_code == 400
    assert "no output 'probabilities'" in unknown.json()["error"]
    assert _metrics(server)["nv_inference_request_failure_total:BAD_REQUEST"] >= 5


def test_concurrent_requests_are_batched(server: str, reference: OnnxModel) -> None:
    before = _metrics(server)
    x = _images(4)
    expected = reference.predict_logits(x)

    def worker(i: int) -> list[np.ndarray]:
        return [_logits(_post_infer(server, x[(i + k) % 4 : (i + k) % 4 + 1])) for k in range(2)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, range(16)))
    for i, pair in enumerate(results):
        for k, out in enumerate(pair):
            j = (i + k) % 4
            np.testing.assert_allclose(out[0], expected[j], atol=1e-5, rtol=0)

    after = _metrics(server)
    images = after["nv_inference_count_total"] - before["nv_inference_count_total"]
    batches = after["nv_inference_exec_count_total"] - before["nv_inference_exec_count_total"]
    assert images == 32
    assert images / batches > 1, f"{images} images in {batches} batches: nothing was batched"
    assert (
        after["nv_inference_request_success_total"] - before["nv_inference_request_success_total"]
        == 32
    )
    assert (
        after["nv_inference_queue_duration_us_total"]
        > before["nv_inference_queue_duration_us_total"]
    )
    assert after["radstream_model_instances"] == 1
    assert after["nv_inference_pending_request_count"] == 0


# --- overload, auth, crash, autoscale ------------------------------------------------------


def test_overload_is_refused_with_503_and_retry_after(standin_model: Path) -> None:
    config = ServeConfig(
        model_path=standin_model, port=0, max_queue=2, max_batch_size=1, max_queue_delay_ms=0
    )
    x = _images(1)
    with running_server(config) as url:
        barrier = threading.Barrier(30)

        def one(_: int) -> httpx.Response:
            barrier.wait()
            return _post_infer(url, x)

        with ThreadPoolExecutor(30) as pool:
            responses = list(pool.map(one, range(30)))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}, codes
        refused = [r for r in responses if r.status_code == 503]
        assert refused, "a burst of 30 over a queue of 2 must be refused in part"
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert all("max_queue=2" in r.json()["error"] for r in refused)
        # At least the queue's worth is served; a third when the instance took one from
        # the queue before the burst was over (not when the burst wins the race, as under
        # a loaded machine).
        assert codes.count(200) >= 2
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        assert _post_infer(url, x).status_code == 200
        stats = _metrics(url)
        assert stats["nv_inference_request_failure_total:REJECTED"] == len(refused)
        assert stats["nv_inference_pending_request_count"] == 0


def test_bearer_token_guards_everything_but_health(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, token="s3cret")
    x = _images(1)
    good = {"Authorization": "Bearer s3cret"}
    with running_server(config) as url:
        assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert _post_infer(url, x, headers=headers).status_code == 401
            response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert httpx.get(f"{url}/v2/models/{NAME}", headers=headers).status_code == 401
        assert _post_infer(url, x, headers=good).status_code == 200
        assert httpx.get(f"{url}/metrics", headers=good, timeout=10).status_code == 200
        assert httpx.get(f"{url}/v2/models/{NAME}", headers=good, timeout=10).status_code == 200
        client = tc_http.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            assert client.is_model_ready(NAME, headers=good)
        finally:
            client.close()


def test_dead_instance_fails_its_batch_with_503_and_is_replaced(
    standin_model: Path, reference: OnnxModel
) -> None:
    config = ServeConfig(model_path=standin_model, port=0, max_batch_size=16)
    x = _images(12)
    others = {p.pid for p in _instances()}  # the module's shared server
    with running_server(config) as url:
        (victim,) = [p.pid for p in _instances() if p.pid not in others]
        assert victim is not None
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_post_infer, url, x)
            time.sleep(0.25)  # the 12-image batch takes ~0.7 s
            os.kill(victim, signal.SIGKILL)
            response = pending.result(timeout=30)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "died" in response.json()["error"]
        wait_until(
            lambda: httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200,
            "a replacement instance",
            timeout_s=30,
        )
        np.testing.assert_allclose(
            _logits(_post_infer(url, x[:2])), reference.predict_logits(x[:2]), atol=1e-5, rtol=0
        )
        stats = _metrics(url)
        assert stats["radstream_model_instance_deaths_total"] == 1
        assert stats["radstream_model_instances"] == 1
        assert victim not in [p.pid for p in _instances()]
    assert {p.pid for p in _instances()} == others


def test_autoscale_adds_under_load_and_removes_when_idle(standin_model: Path) -> None:
    config = ServeConfig(
        model_path=standin_model,
        port=0,
        autoscale=(1, 2),
        scale_up_delay_s=0.3,
        scale_down_delay_s=1.0,
        max_batch_size=2,
        max_queue_delay_ms=1,
    )
    x = _images(1)
    others = {p.pid for p in _instances()}  # the module's shared server
    with running_server(config) as url:
        assert _metrics(url)["radstream_model_instances"] == 1
        stop = threading.Event()
        codes: list[int] = []

        def load() -> None:
            while not stop.is_set():
                codes.append(_post_infer(url, x).status_code)

        threads = [threading.Thread(target=load) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            wait_until(
                lambda: _metrics(url)["radstream_model_instances"] == 2, "scale-up", timeout_s=20
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert set(codes) == {200}
        wait_until(
            lambda: _metrics(url)["radstream_model_instances"] == 1, "scale-down", timeout_s=20
        )
        stats = _metrics(url)
        assert stats["radstream_model_scale_ups_total"] == 1
        assert stats["radstream_model_scale_downs_total"] == 1
        wait_until(
            lambda: len([p for p in _instances() if p.pid not in others]) == 1,
            "the removed instance's process to exit",
            timeout_s=10,
        )
    assert {p.pid for p in _instances()} == others


# --- configuration ---------------------------------------------------------------------


def test_config_is_validated(standin_model: Path) -> None:
    base = ServeConfig(model_path=standin_model)
    bad: list[dict[str, Any]] = [
        {"max_batch_size": 0},
        {"max_queue": 0},
        {"instances": 0},
        {"autoscale": (2, 1)},
        {"autoscale": (0, 1)},
        {"port": 70000},
        {"token": " "},
        {"name": "a/b"},
        {"max_queue_delay_ms": -1.0},
        {"max_batch_size": 65},
        {"max_connections": 1},
        {"header_timeout_s": 0.0},
        {"body_timeout_s": float("inf")},
        {"keep_alive_s": -1.0},
    ]
    for change in bad:
        with pytest.raises(ConfigInvalid):
            replace(base, **change)
    assert replace(base, autoscale=(2, 4), instances=1).initial_instances == 2
    assert replace(base, max_connections=5).connection_limit == 5
    assert 2 <= base.connection_limit <= 1000


def test_unusable_model_file_fails_before_serving(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(ModelFileInvalid):
        ServingApp(ServeConfig(model_path=broken))


def test_instance_that_cannot_load_the_model_is_a_fatal_error(
    standin_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    real_info = read_model_info(standin_model)
    # The parent accepts the file (as if it were replaced after the check); the worker
    # cannot load it, which is permanent: start-up fails with the worker's typed error.
    monkeypatch.setattr("radstream.serving.app.read_model_info", lambda _path: real_info)
    others = {p.pid for p in _instances()}
    with (
        pytest.raises(ModelFileInvalid, match="not a valid ONNX model"),
        running_server(ServeConfig(model_path=broken, port=0), ready_timeout_s=30),
    ):
        pass
    assert {p.pid for p in _instances()} == others


SERVE_SCRIPT = """
import sys
from pathlib import Path

from radstream.serving import ServeConfig, serve

if __name__ == "__main__":
    config = ServeConfig(model_path=Path(sys.argv[1]), port=0, instances=2)
    serve(config, announce=lambda url: print(url, flush=True))
    print("stopped", flush=True)
"""


def _workers(pid: int) -> list[int]:
    """Instance processes of ``pid`` (spawned children, not the resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(standin_model: Path, tmp_path: Path, signum: int) -> None:
    import subprocess
    import sys

    script = tmp_path / "serve_main.py"
    script.write_text(SERVE_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script), str(standin_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), url
            wait_until(
                lambda: (
                    httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
                    and _metrics(url)["radstream_model_instances"] == 2
                ),
                "two ready instances",
                timeout_s=60,
            )
            workers = _workers(process.pid)
            assert len(workers) == 2
            assert _logits(_post_infer(url, _images(1))).shape == (1, 18)
            process.send_signal(signum)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err, err
    wait_until(lambda: all(_gone(pid) for pid in workers), "the workers to exit", timeout_s=10)


def test_batches_never_split_a_request(standin_model: Path) -> None:
    import asyncio

    from radstream.serving.metrics import Stats
    from radstream.serving.scheduler import Pending, Scheduler

    config = ServeConfig(model_path=standin_model, max_batch_size=8)
    scheduler = Scheduler(config, Stats(), lambda _error: None)
    loop = asyncio.new_event_loop()
    try:

        def queue(*counts: int) -> None:
            for n in counts:
                images = np.zeros((n, 1, 224, 224), np.float32)
                scheduler.pending.append(Pending(images, loop.create_future(), 0.0))

        def take() -> list[int]:
            return [item.count for item in scheduler.take_batch()]

        queue(3, 3, 3)
        assert scheduler.batch_is_full()
        assert take() == [3, 3]
        assert take() == [3]
        queue(2, 2)
        assert not scheduler.batch_is_full()  # room for more: the batcher may wait
        queue(4)
        assert scheduler.batch_is_full()
        assert take() == [2, 2, 4]
        queue(10, 1)
        assert scheduler.batch_is_full()
        assert take() == [10]  # oversized: alone
        assert take() == [1]
        queue(1, 1)
        scheduler.pending[0].future.cancel()  # a client that went away
        assert take() == [1]
        assert take() == []
    finally:
        loop.close()
