"""Patient data in DICOM headers never leaves: not in results, failures, telemetry, logs, output.

Real radiographs get distinctive patient values (name, id, birth date, accession number,
address, physician, institution) and go in both ways a DICOM can: pushed to ``radstream
dicom listen`` by pynetdicom's SCU, and uploaded as a file with a sidecar (that carries a
patient id too). Every command runs as a user runs it (subprocesses, JSON logs at DEBUG);
then every outcome object, every telemetry row (read with pyarrow) and every byte the
commands printed is searched for those values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dicom_samples import dataset, to_bytes
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    Verification,
)

from radstream.lake.parquet_sink import read_lake
from support.waiting import free_port, wait_until

pytestmark = pytest.mark.slow

PATIENT = {
    "PatientName": "QUIXOTIC^ZEBEDEE",
    "PatientID": "PID93817265",
    "PatientBirthDate": "19270314",
    "AccessionNumber": "ACC73920148",
    "PatientAddress": "42 WOMBAT CRESCENT",
    "ReferringPhysicianName": "VOLDEMORT^XAVIER",
    "InstitutionName": "ST HILDEGARD HOSPITAL",
    "OtherPatientIDs": "OPID55501234",
}
NEEDLES = (
    "QUIXOTIC",
    "ZEBEDEE",
    "PID93817265",
    "19270314",
    "1927-03-14",
    "ACC73920148",
    "WOMBAT",
    "VOLDEMORT",
    "HILDEGARD",
    "OPID55501234",
)


COMMAND = (sys.executable, "-m", "radstream.cli", "--log-format", "json", "--log-level", "DEBUG")


def _with_patient(name: str) -> Dataset:
    ds = dataset(name)
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _env(data: Path, model: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(data),
        "RADSTREAM_MODEL__PATH": str(model),
        "RADSTREAM_ENGINE__IMAGE_WAIT_S": "1",
    }


def _radstream(*args: str, env: dict[str, str], cwd: Path) -> tuple[str, str]:
    proc = subprocess.run(
        [*COMMAND, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout, proc.stderr


def _echo(port: int) -> bool:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSTREAM")
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


def _push(port: int, instances: list[Dataset]) -> list[int]:
    ae = AE(ae_title="MODALITY")
    for syntax in (ExplicitVRLittleEndian, JPEG2000Lossless):
        ae.add_requested_context(ComputedRadiographyImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSTREAM")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in instances]
    finally:
        assoc.release()


def _listen(port: int, env: dict[str, str], cwd: Path, instances: list[Dataset]) -> str:
    args = ["dicom", "listen", "--port", str(port), "--allow-ae", "MODALITY"]
    proc = subprocess.Popen(
        [*COMMAND, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _echo(port), "the receiver to answer C-ECHO", timeout_s=120)
        assert _push(port, instances) == [0] * len(instances)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.count("stored ") == len(instances)
    return stdout + stderr


def test_patient_values_appear_nowhere(tmp_path: Path, standin_model: Path) -> None:
    data = tmp_path / "data"
    env = _env(data, standin_model)
    chest, extremity, accession_only = (
        _with_patient("RG1_UNCR.dcm"),
        _with_patient("RG3_UNCR.dcm"),
        _with_patient("RG1_J2KR.dcm"),
    )
    del accession_only.StudyInstanceUID  # its study id then comes from the accession number
    output = _listen(free_port(), env, tmp_path, [chest, extremity, accession_only])

    folder = tmp_path / "upload"
    folder.mkdir()
    uploaded = to_bytes(_with_patient("RG1_UNCR.dcm"))
    (folder / "chest.dcm").write_bytes(uploaded)
    sidecar = {
        "study_id": "upload-1",
        "view": "PA",
        "timestamp": "2024-05-06T07:08:09Z",
        "patient_id": "PID93817265",
        "modality": "CR",
        "body_part": "CHEST",
    }
    (folder / "chest.json").write_text(json.dumps(sidecar))
    for command in (
        ["upload", str(folder), "--no-wait"],
        ["run", "--until-idle", "--workers", "1"],
    ):
        output += "".join(_radstream(*command, env=env, cwd=tmp_path))
    status, status_log = _radstream("status", "--json", env=env, cwd=tmp_path)
    output += status + status_log
    assert json.loads(status) == {
        "pending": 0,
        "running": 0,
        "succeeded": 3,
        "failed": 1,
    }

    results = data / "buckets" / "results"
    outcomes = {p: p.read_text() for p in results.rglob("*.json")}
    kinds = sorted(p.relative_to(results).parts[0] for p in outcomes)
    assert kinds == ["failed", "results", "results", "results"]
    failure = next(json.loads(t) for p, t in outcomes.items() if "failed" in p.parts)
    assert failure["error"]["code"] == "BODY_PART_UNSUPPORTED"
    rows = read_lake(data / "lake" / "telemetry").to_pylist()
    assert rows
    telemetry = json.dumps(rows, default=str)

    # The logs were captured: the receiver's and the workers' JSON lines are in the output.
    logs = [json.loads(line) for line in output.splitlines() if line.startswith('{"ts"')]
    assert {"radstream.dicom.receiver"} <= {line["logger"] for line in logs}
    assert any(line.get("execution_id") for line in logs)
    # The values are really there to leak: in the files that went in.
    assert all(needle.encode() in to_bytes(chest) for needle in NEEDLES if "-" not in needle)
    haystacks = {"outcome objects": "\n".join(outcomes.values()), "telemetry": telemetry}
    haystacks["logs and command output"] = output
    for where, text in haystacks.items():
        upper = text.upper()
        leaked = [needle for needle in NEEDLES if needle in upper]
        assert not leaked, f"{leaked} in {where}"
