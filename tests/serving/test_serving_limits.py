"""The model server's limits (issue 18), each against a real server on 127.0.0.1.

Batch size, body size and compression bombs, malformed requests, case-insensitive auth,
header and body deadlines, the connection cap, accept errors under a descriptor shortage,
and the memory of an instance after the worst request the limits allow.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from radstream.errors import ConfigInvalid
from radstream.kserve import encode_infer_request
from radstream.serving import ServeConfig, running_server
from radstream.serving.config import MAX_BATCH_SIZE_LIMIT
from support.waiting import wait_until

pytestmark = pytest.mark.slow

NAME = "radstream-densenet121"
INFER = f"/v2/models/{NAME}/infer"
RNG = np.random.default_rng(18)


def _images(n: int) -> np.ndarray:
    return RNG.uniform(-1024, 1024, size=(n, 1, 224, 224)).astype(np.float32)


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}{INFER}", content=body, headers=headers or {}, timeout=60)


def _post_images(url: str, images: np.ndarray, *, binary: bool = True) -> httpx.Response:
    body, headers = encode_infer_request({"input": images}, outputs=["logits"], binary=binary)
    return _post(url, body, headers)


def _raw_request(port: int, head: bytes, timeout_s: float = 20.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.sendall(head)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the timeout)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    return b"".join(chunks)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def server(standin_model: Path) -> Iterator[str]:
    config = ServeConfig(model_path=standin_model, port=0, max_queue_delay_ms=20.0)
    with running_server(config) as url:
        yield url


# --- batch and body -------------------------------------------------------------------


def test_a_batch_above_max_batch_size_is_refused_with_400(server: str) -> None:
    response = _post_images(server, _images(9))  # max_batch_size is 8
    assert response.status_code == 400
    message = response.json()["error"]
    assert "batch of 9 images" in message
    assert "--max-batch-size=8" in message
    assert _post_images(server, _images(8)).status_code == 200


def test_a_huge_declared_batch_is_refused_before_its_body_is_read(server: str) -> None:
    # The header claims 1,000 images; the body carries none of them. Refused from the
    # declared shape (400), not by a size mismatch after allocating.
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1000, 1, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 1000 * 224 * 224 * 4},
                }
            ]
        }
    ).encode()
    response = _post(server, header, {"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert "batch of 1000 images" in response.json()["error"]


def test_max_batch_size_itself_is_bounded(standin_model: Path) -> None:
    base = ServeConfig(model_path=standin_model)
    with pytest.raises(ConfigInvalid, match="at most"):
        replace(base, max_batch_size=MAX_BATCH_SIZE_LIMIT + 1)
    assert replace(base, max_batch_size=MAX_BATCH_SIZE_LIMIT).max_batch_size == 64


def test_a_gzip_bomb_is_refused_with_413_and_the_server_stays_healthy(server: str) -> None:
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=1)  # 64 MB from about 300 KB
    with ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(
                lambda _: _post(server, bomb, {"Content-Encoding": "gzip"}),
                range(3),
            )
        )
    for response in answers:
        assert response.status_code == 413
        assert "over" in response.json()["error"]
    assert httpx.get(f"{server}/v2/health/ready", timeout=10).status_code == 200
    # A compressed valid request is still served.
    body, headers = encode_infer_request({"input": _images(1)}, outputs=["logits"], binary=False)
    ok = _post(server, gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
    assert ok.status_code == 200, ok.text


def test_a_corrupt_or_truncated_gzip_body_gets_a_400_that_says_so(server: str) -> None:
    body, headers = encode_infer_request({"input": _images(1)}, outputs=["logits"], binary=False)
    packed = gzip.compress(body)
    corrupt = packed[:20] + bytes(b ^ 0xFF for b in packed[20:60]) + packed[60:]
    gz = {**headers, "Content-Encoding": "gzip"}
    response = _post(server, corrupt, gz)
    assert response.status_code == 400
    assert "gzip body is corrupt" in response.json()["error"]
    truncated = _post(server, packed[: len(packed) // 2], gz)
    assert truncated.status_code == 400
    assert "truncated or corrupt" in truncated.json()["error"]
    deflate = _post(server, zlib.compress(body)[:-3], {**headers, "Content-Encoding": "deflate"})
    assert deflate.status_code == 400


# --- malformed requests ----------------------------------------------------------------


def _entry(**fields: object) -> bytes:
    tensor = {"name": "input", "shape": [1, 1, 224, 224], "datatype": "FP32", **fields}
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"inputs":[{"name":"input","shape":[1,1,224,224],"datatype":"FP32","data":[1'
            + b"1" * 4300
            + b"]}]}",
            "unusable number",
        ),
        (_entry(shape=[2**40, 2**40, 2**40, 0], parameters={"binary_data_size": 0}), "shape"),
        (_entry(shape=[2**40, 2**40, 2**40, 0], data=[]), "shape"),
        (_entry(shape=[1, 1, -224, 224], data=[]), "non-negative integers"),
        (_entry(shape=[1, 1, 224.5, 224], data=[]), "non-negative integers"),
        (_entry(shape="1x224", data=[]), "non-negative integers"),
        (_entry(shape=[1] * 40, data=[0]), "dimensions"),
        (_entry(datatype="FP99", data=[0]), "unsupported datatype"),
        (_entry(datatype="INT64", data=[0]), "must be FP32"),
        (_entry(data=[[0.0] * 3, [1.0]]), "'data'"),
    ],
    ids=[
        "4300-digit-int",
        "overflowing-shape-binary",
        "overflowing-shape-json",
        "negative-dim",
        "fractional-dim",
        "string-shape",
        "too-many-dims",
        "unknown-datatype",
        "wrong-datatype",
        "ragged-data",
    ],
)
def test_every_malformed_request_gets_400(server: str, body: bytes, fragment: str) -> None:
    headers = {}
    if b"binary_data_size" in body:
        headers["Inference-Header-Content-Length"] = str(len(body))
    response = _post(server, body, headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


# --- authentication --------------------------------------------------------------------


def test_the_bearer_scheme_is_case_insensitive(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, token="s3cret")
    with running_server(config) as url:
        for scheme in ("Bearer", "bearer", "BEARER"):
            headers = {"Authorization": f"{scheme} s3cret"}
            assert httpx.get(f"{url}/metrics", headers=headers, timeout=10).status_code == 200
        for value in ("bearer wrong", "Basic s3cret", "bearer", "s3cret", "Bearers3cret"):
            response = httpx.get(f"{url}/metrics", headers={"Authorization": value}, timeout=10)
            assert response.status_code == 401, value


@pytest.mark.parametrize("source", ["file", "environment"])
def test_serve_reads_its_token_from_a_file_or_the_environment(
    standin_model: Path, tmp_path: Path, source: str
) -> None:
    """``model serve`` without the token on its command line (where ``ps`` shows it)."""
    import os

    secret = "f1le-t0ken"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    port = _free_port()
    command = [sys.executable, "-m", "radstream.cli", "model", "serve", "--model"]
    command += [str(standin_model), "--port", str(port)]
    if source == "file":
        token_file = tmp_path / "token"
        token_file.write_text(secret + "\n")
        command += ["--token-file", str(token_file)]
    else:
        env["RADSTREAM_MODEL__TOKEN"] = secret
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _status(f"{url}/v2/health/ready") == 200, "the server", timeout_s=60)
            assert secret not in " ".join(command)
            assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
            headers = {"Authorization": f"bearer {secret}"}
            assert httpx.get(f"{url}/metrics", headers=headers, timeout=10).status_code == 200
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=30)
    assert "--token is visible" not in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0


# --- deadlines and connections ---------------------------------------------------------


def test_a_connection_that_never_finishes_its_head_is_closed(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, header_timeout_s=1.0)
    with running_server(config) as url:
        silent = socket.create_connection(("127.0.0.1", _port(url)), timeout=20)
        trickle = _raw_request(_port(url), b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        # Both are closed by the server (recv returns EOF), long before the 20 s timeout.
        assert _read_all(silent) == b""
        assert _read_all(trickle) == b""
        huge_head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000
        # A head still incomplete after 16 KiB is refused at once, not buffered on.
        answer = _read_all(_raw_request(_port(url), huge_head))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200


def test_a_stalled_body_is_answered_408_and_released(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, body_timeout_s=1.0)
    with running_server(config) as url:
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000\r\n\r\n"
        ).encode()
        stalled = _raw_request(_port(url), head + b'{"inputs": [')
        answer = _read_all(stalled)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 1 s" in answer


def test_beyond_the_connection_cap_a_request_gets_503(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, max_connections=2, body_timeout_s=30)
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n{"
    ).encode()
    with running_server(config) as url:
        busy = [_raw_request(_port(url), head) for _ in range(2)]
        try:
            # Once both heads are parsed, two requests are in progress: a third is refused.
            wait_until(
                lambda: _post_images(url, _images(1)).status_code == 503,
                "a request beyond the cap to be refused",
                timeout_s=10,
            )
        finally:
            for sock in busy:
                sock.close()
        wait_until(
            lambda: _post_images(url, _images(1)).status_code == 200,
            "the server to serve again once the slots are free",
            timeout_s=20,
        )


def test_idle_connections_are_evicted_for_real_clients(standin_model: Path) -> None:
    config = ServeConfig(model_path=standin_model, port=0, max_connections=20)
    with running_server(config) as url:
        idle = [socket.create_connection(("127.0.0.1", _port(url))) for _ in range(60)]
        try:
            for _ in range(3):
                assert _post_images(url, _images(1)).status_code == 200
        finally:
            for sock in idle:
                sock.close()


SERVE_SCRIPT = """
import sys
from pathlib import Path

from radstream.logs import configure
from radstream.serving import ServeConfig, serve

if __name__ == "__main__":
    configure("INFO", fmt="text")
    extra = {}
    if sys.argv[2] != "-":
        extra["max_connections"] = int(sys.argv[2])
    config = ServeConfig(
        model_path=Path(sys.argv[1]), port=0, header_timeout_s=float(sys.argv[3]), **extra
    )
    serve(config, announce=lambda url: print(url, flush=True))
"""

FD_LIMIT = 512
IDLE_SOCKETS = 700


def _limited() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_NOFILE and Linux sockets")
@pytest.mark.parametrize(
    ("max_connections", "header_timeout"),
    [("-", "30"), ("1000", "2")],
    ids=["derived-cap-evicts", "cap-above-fd-limit-times-out"],
)
def test_hundreds_of_idle_connections_do_not_lock_clients_out(
    standin_model: Path, tmp_path: Path, max_connections: str, header_timeout: str
) -> None:
    """A server short of descriptors (512) under 700 idle sockets still serves a client.

    With the cap derived from the descriptor limit, idle connections are evicted and
    accept() never fails. With a cap above the limit, accept() fails (EMFILE) until the
    header deadline frees descriptors; that is logged once, without a traceback per try.
    """
    script = tmp_path / "serve_limited.py"
    script.write_text(SERVE_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script), str(standin_model), max_connections, header_timeout],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limited,
    ) as process:
        idle: list[socket.socket] = []
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), url
            wait_until(
                lambda: httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200,
                "the server to be ready",
                timeout_s=60,
            )
            for _ in range(IDLE_SOCKETS):
                idle.append(socket.create_connection(("127.0.0.1", _port(url)), timeout=10))
            response = _post_images(url, _images(1))
            assert response.status_code == 200, response.text
        finally:
            for sock in idle:
                sock.close()
            process.terminate()
            _out, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]
    assert err.count("cannot accept connections") <= 1, err[-3000:]
    if max_connections == "-":
        assert "cannot accept connections" not in err, err[-3000:]


# --- memory of an instance -------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_no_single_request_grows_an_instance_beyond_its_bound(standin_model: Path) -> None:
    """The worst requests the limits allow leave an instance near its baseline memory.

    Before the batch bound, one 64-image request ran as one batch and the instance kept
    about 12 MB per image for good (13.7 GB for 1,000 images).
    """
    import multiprocessing

    before = {p.pid for p in multiprocessing.active_children()}
    config = ServeConfig(model_path=standin_model, port=0, max_queue_delay_ms=50.0)
    with running_server(config) as url:
        (pid,) = [
            p.pid
            for p in multiprocessing.active_children()
            if p.pid not in before and p.name.startswith("radstream-instance")
        ]
        assert pid is not None
        assert _post_images(url, _images(1)).status_code == 200
        baseline = _rss_mb(pid)

        oversized = _post_images(url, _images(64))
        assert oversized.status_code == 400
        bomb = gzip.compress(b"0" * (64 << 20), compresslevel=1)
        assert _post(url, bomb, {"Content-Encoding": "gzip"}).status_code == 413
        # The largest batches allowed: full requests, JSON and binary, several at once.
        with ThreadPoolExecutor(4) as pool:
            codes = list(
                pool.map(
                    lambda k: _post_images(url, _images(8), binary=k % 2 == 0).status_code,
                    range(8),
                )
            )
        assert codes == [200] * 8
        after = _rss_mb(pid)
    assert after < baseline + 300, f"instance grew from {baseline:.0f} MB to {after:.0f} MB"
    assert after < 1536, f"instance at {after:.0f} MB"
