"""Build the AWS Lambda deployment artifacts, reproducibly and under Lambda's size limits.

All five functions run the same ``radstream`` code, but the native dependencies do not
fit in one 250 MB bundle, so the build makes three zips:

* ``code.zip``: the ``radstream`` package plus the light dependencies every handler
  imports (pydantic, pydantic-settings, httpx and their closure). No botocore: the Lambda
  Python runtime ships it.
* ``layer-imaging.zip``: numpy, Pillow, simplejpeg, pydicom and its codec plugins (GDCM,
  CharLS, OpenJPEG, the pylibjpeg RLE decoder) under ``python/``, for ``prepare``. No
  OpenCV: the imaging code decodes and resizes without it, which is what makes room
  for the codecs.
* ``layer-model.zip``: numpy, ONNX Runtime, onnx and what they import, for ``infer``.

Every wheel is pinned to the version installed here, so the functions run what the tests
ran. Zips are byte-identical for the same inputs: entries sorted, fixed timestamps,
permissions and compression. ``manifest.json`` records hashes, sizes and pins.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO

import radstream
from radstream.errors import ConfigInvalid, PackageTooLarge
from radstream.pipeline.definition import IMAGING, MODEL_RUNTIME, PIPELINE, Pipeline

# Lambda's limit on function code plus all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 262_144_000

CODE = "code"
# One layer per optional package group of the stage declarations, under the group's name.
LAYER_IMAGING = IMAGING
LAYER_MODEL = MODEL_RUNTIME
ARTIFACT_FILES: dict[str, str] = {
    CODE: "code.zip",
    LAYER_IMAGING: "layer-imaging.zip",
    LAYER_MODEL: "layer-model.zip",
}
MANIFEST_FILE = "manifest.json"


def stage_layers(
    pipeline: Pipeline = PIPELINE, *, in_process_model: bool = True
) -> dict[str, tuple[str, ...]]:
    """Each stage's layers: the package groups its declaration names
    (:meth:`~radstream.pipeline.definition.StageDef.packages_for`). With a remote model
    endpoint (``in_process_model=False``) no function gets the model layer."""
    return {
        stage.name: stage.packages_for(in_process_model=in_process_model)
        for stage in pipeline.all_stages
    }


STAGE_LAYERS: dict[str, tuple[str, ...]] = stage_layers()
"""The layers of each function when the model runs in the Lambda: the most any stack
ships, so the size check and the manifest use these."""

# What the handlers import, with its declared closure. sniffio is gone (anyio>=4.5 does
# not need it); anyio stays because httpx.Client() imports it. typing-extensions here also
# serves onnx in the model layer, since code.zip is always on the path.
CODE_DEPENDENCIES: tuple[str, ...] = (
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "python-dotenv",
    "httpx",
    "httpcore",
    "anyio",
    "h11",
    "idna",
    "certifi",
)
# onnxruntime declares flatbuffers, packaging and sympy too, but `import onnxruntime, onnx`
# loads none of them; onnx does load ml_dtypes and protobuf (google.protobuf).
# The imaging layer carries every pixel-data plugin `radstream.imaging.dicom_codecs`
# prefers, so prepare on Lambda decodes each DICOM encoding with the decoder the tests
# ran: python-gdcm (JPEG Lossless, 12-bit JPEG, JPEG 2000 lossless), pyjpegls (JPEG-LS),
# pylibjpeg with its OpenJPEG plugin (lossy JPEG 2000, HTJ2K) and its RLE plugin.
DICOM_CODECS: tuple[str, ...] = (
    "python-gdcm",
    "pyjpegls",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
)
LAYER_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    LAYER_IMAGING: ("numpy", "pillow", "pydicom", "simplejpeg", *DICOM_CODECS),
    LAYER_MODEL: ("numpy", "onnxruntime", "onnx", "protobuf", "ml-dtypes"),
}

# 3.12 is the default: its Lambda runtime runs Amazon Linux 2023 (glibc 2.34). The
# python3.11 runtime runs Amazon Linux 2 (glibc 2.26), and today's numpy and ONNX
# Runtime wheels need glibc 2.28: 3.11 is for emulators that run the code on their own
# Python 3.11 (ministack in the tests), not for AWS.
SUPPORTED_PYTHON: tuple[str, ...] = ("3.11", "3.12", "3.13")
DEFAULT_PYTHON = "3.12"
# Newest glibc first: pip prefers earlier platforms, and this order picks the same wheels
# pip installs natively here (manylinux_2_28 builds, protobuf's abi3 extension
# rather than its pure-Python fallback). manylinux2014 must be named: pip does not expand
# manylinux_2_17 to that legacy alias.
PLATFORMS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}

_SOURCE_SUFFIXES = frozenset({".py", ".sql", ".json", ".toml", ".j2"})
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_LEVEL = 6
_UNIX = 3  # ZipInfo.create_system: the permission bits are Unix modes
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")


@dataclass(frozen=True)
class Artifact:
    """One built zip: its name (``code``, ``imaging``, ``model``), file, hash and sizes."""

    name: str
    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int


@dataclass(frozen=True)
class PackageManifest:
    """What ``build_package`` made: the artifacts, the target, the pins, each function's size."""

    artifacts: dict[str, Artifact]
    python_version: str
    architecture: str
    pins: dict[str, str]
    functions: dict[str, int]

    def to_json(self) -> str:
        """The manifest as stable JSON (sorted keys, no paths or times), for manifest.json."""
        doc: dict[str, object] = {
            "python_version": self.python_version,
            "architecture": self.architecture,
            "runtime": f"python{self.python_version}",
            "limit_unzipped_bytes": LAMBDA_UNZIPPED_LIMIT,
            "artifacts": {
                key: {
                    "file": art.path.name,
                    "sha256": art.sha256,
                    "zipped_bytes": art.zipped_bytes,
                    "unzipped_bytes": art.unzipped_bytes,
                }
                for key, art in self.artifacts.items()
            },
            "functions": {
                stage: {
                    "handler": f"radstream.aws.handlers.{stage}",
                    "layers": [ARTIFACT_FILES[layer] for layer in STAGE_LAYERS[stage]],
                    "unzipped_bytes": size,
                    "headroom_bytes": LAMBDA_UNZIPPED_LIMIT - size,
                }
                for stage, size in self.functions.items()
            },
            "pins": self.pins,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class _Entry:
    """One file to zip: from a directory (``member`` None) or a wheel (``member`` set)."""

    arcname: str
    path: Path
    member: str | None
    size: int
    executable: bool


def build_package(
    out_dir: Path,
    *,
    python_version: str = DEFAULT_PYTHON,
    architecture: str = "x86_64",
    wheel_cache: Path | None = None,
    source_dir: Path | None = None,
) -> PackageManifest:
    """Build code.zip, the two layer zips and manifest.json into ``out_dir``.

    Wheels are pinned to the versions installed in this environment and downloaded for
    the target (``python_version``, ``architecture``) into ``wheel_cache`` (default
    ``.radstream/wheels/{python}-{arch}``) unless all are there already. Sizes are checked
    before anything is compressed: ``PackageTooLarge`` if a function's code plus layers
    would exceed Lambda's unzipped limit.
    """
    _check_target(python_version, architecture)
    if source_dir is None:
        source_dir = Path(radstream.__file__).parent
    cache = wheel_cache or Path(".radstream") / "wheels" / f"{python_version}-{architecture}"

    names = {CODE: CODE_DEPENDENCIES, **LAYER_DEPENDENCIES}
    pins = pinned_versions(sorted({n for deps in names.values() for n in deps}))
    wheels = ensure_wheels(pins, cache, python_version=python_version, architecture=architecture)

    entries = {
        CODE: [*_source_entries(source_dir), *_wheels_entries(wheels, CODE_DEPENDENCIES, "")],
        **{
            layer: _wheels_entries(wheels, deps, "python/")
            for layer, deps in LAYER_DEPENDENCIES.items()
        },
    }
    # Sizes are known from the wheels' directories: fail before compressing ~400 MB.
    functions = check_function_sizes({k: sum(e.size for e in v) for k, v in entries.items()})

    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = {
        key: _write_zip(key, items, out_dir / ARTIFACT_FILES[key]) for key, items in entries.items()
    }
    manifest = PackageManifest(
        artifacts=artifacts,
        python_version=python_version,
        architecture=architecture,
        pins=dict(sorted(pins.items())),
        functions=functions,
    )
    _write_atomically(out_dir / MANIFEST_FILE, manifest.to_json().encode())
    return manifest


def build_code_zip(source_dir: Path, out: Path, wheels: Sequence[Path] = ()) -> Artifact:
    """Zip the radstream package in ``source_dir`` (plus the given wheels' files) to ``out``.

    Only the package's runtime files go in: *.py, *.sql, *.json, *.toml, *.j2 and py.typed,
    never __pycache__ or tests. File times do not matter: the same files give the same zip.
    """
    entries = [*_source_entries(source_dir)]
    for wheel in wheels:
        entries.extend(_wheel_entries(wheel, ""))
    return _write_zip(CODE, entries, out)


def load_manifest(package_dir: Path, *, source_dir: Path | None = None) -> PackageManifest | None:
    """The manifest of a package built earlier into ``package_dir``, if it is still current.

    ``None`` (build again) when manifest.json is missing or unreadable, an artifact is
    missing or not the file the manifest hashed, a pin differs from the installed version,
    or code.zip's radstream files differ from ``source_dir`` (default: the installed
    package): deploying must never ship stale code or libraries other than the tested ones.
    """
    try:
        doc = json.loads((package_dir / MANIFEST_FILE).read_text())
        artifacts = {
            key: Artifact(
                name=key,
                path=package_dir / entry["file"],
                sha256=entry["sha256"],
                zipped_bytes=entry["zipped_bytes"],
                unzipped_bytes=entry["unzipped_bytes"],
            )
            for key, entry in doc["artifacts"].items()
        }
        manifest = PackageManifest(
            artifacts=artifacts,
            python_version=doc["python_version"],
            architecture=doc["architecture"],
            pins=dict(doc["pins"]),
            functions={stage: f["unzipped_bytes"] for stage, f in doc["functions"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if set(artifacts) != set(ARTIFACT_FILES) or set(manifest.functions) != set(STAGE_LAYERS):
        return None
    if any(not a.path.is_file() or _sha256(a.path) != a.sha256 for a in artifacts.values()):
        return None
    try:
        if pinned_versions(manifest.pins) != manifest.pins:
            return None
    except ConfigInvalid:
        return None
    source = source_dir or Path(radstream.__file__).parent
    return manifest if _code_matches(artifacts[CODE].path, source) else None


def check_function_sizes(unzipped: Mapping[str, int]) -> dict[str, int]:
    """Each stage's code plus layers, unzipped, from each artifact's unzipped bytes.

    Raises ``PackageTooLarge`` naming every function over ``LAMBDA_UNZIPPED_LIMIT``.
    """
    totals = {
        stage: unzipped[CODE] + sum(unzipped[layer] for layer in layers)
        for stage, layers in STAGE_LAYERS.items()
    }
    over = {stage: size for stage, size in totals.items() if size > LAMBDA_UNZIPPED_LIMIT}
    if over:
        described = ", ".join(
            f"{stage} ({' + '.join((CODE, *STAGE_LAYERS[stage]))}) is {size:,} bytes"
            for stage, size in over.items()
        )
        raise PackageTooLarge(
            f"Lambda function too large unzipped: {described}; "
            f"the limit is {LAMBDA_UNZIPPED_LIMIT:,} bytes",
            functions=over,
            limit=LAMBDA_UNZIPPED_LIMIT,
        )
    return totals


def pinned_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution, so Lambda runs what the tests ran."""
    pins: dict[str, str] = {}
    for name in names:
        try:
            pins[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigInvalid(
                f"{name} is not installed here, so there is no version to pin for Lambda",
                package=name,
            ) from None
    return pins


def ensure_wheels(
    pins: Mapping[str, str], cache: Path, *, python_version: str, architecture: str
) -> dict[str, Path]:
    """The wheel file of each pinned distribution, downloading into ``cache`` what is missing.

    pip runs only when some wheel is not in the cache, and then only for those.
    """
    _check_target(python_version, architecture)
    found = {name: _cached_wheel(cache, name, v, architecture) for name, v in pins.items()}
    missing = sorted(name for name, wheel in found.items() if wheel is None)
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        _download_wheels({n: pins[n] for n in missing}, cache, python_version, architecture)
        found = {name: _cached_wheel(cache, name, v, architecture) for name, v in pins.items()}
    wheels: dict[str, Path] = {}
    for name, wheel in found.items():
        if wheel is None:
            raise ConfigInvalid(
                f"pip downloaded no wheel for {name}=={pins[name]} into {cache}", package=name
            )
        wheels[name] = wheel
    return wheels


def _check_target(python_version: str, architecture: str) -> None:
    if python_version not in SUPPORTED_PYTHON:
        raise ConfigInvalid(
            f"python_version {python_version!r} is not supported; use one of {SUPPORTED_PYTHON}"
        )
    if architecture not in PLATFORMS:
        raise ConfigInvalid(f"architecture {architecture!r} is not x86_64 or arm64")


def _download_wheels(
    pins: Mapping[str, str], cache: Path, python_version: str, architecture: str
) -> None:
    # Binary wheels only, no resolver: the pins are the whole list. abi3 (protobuf) and
    # none (pure wheels) must be named besides cp311 or pip skips them.
    command = [
        sys.executable, "-m", "pip", "download",
        "--only-binary=:all:", "--no-deps", "--disable-pip-version-check",
        "--implementation", "cp",
        "--python-version", python_version,
        "--abi", f"cp{python_version.replace('.', '')}", "--abi", "abi3", "--abi", "none",
        *(arg for platform in PLATFORMS[architecture] for arg in ("--platform", platform)),
        "--dest", str(cache),
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def _cached_wheel(cache: Path, name: str, version: str, architecture: str) -> Path | None:
    """The cached wheel of ``name==version``, preferring platforms as pip does."""
    stem = re.sub(r"[-_.]+", "_", name).lower()
    candidates = sorted(cache.glob(f"{stem}-{version}-*.whl")) if cache.is_dir() else []
    if not candidates:
        return None
    ranks = PLATFORMS[architecture]

    def rank(wheel: Path) -> int:
        return next((i for i, tag in enumerate(ranks) if tag in wheel.name), len(ranks))

    return min(candidates, key=rank)


def _keep(member: str) -> bool:
    """Whether a file from a wheel is worth its bytes on Lambda."""
    parts = member.split("/")
    if "__pycache__" in parts or member.endswith((".pyc", ".pyi")):
        return False
    # RECORD lists files we drop; METADATA stays (importlib.metadata reads it).
    if parts[0].endswith(".dist-info") and parts[-1] == "RECORD":
        return False
    # numpy's test suites are never imported (numpy/testing is, and stays).
    return not (parts[0] == "numpy" and ("tests" in parts[:-1] or parts[-1] == "conftest.py"))


def _wheels_entries(wheels: Mapping[str, Path], names: Iterable[str], prefix: str) -> list[_Entry]:
    return [entry for name in names for entry in _wheel_entries(wheels[name], prefix)]


def _wheel_entries(wheel: Path, prefix: str) -> Iterator[_Entry]:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if parts[0].endswith(".data"):
                # Only purelib/platlib belong on sys.path; scripts and headers do not.
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                name = "/".join(parts[2:])
            if not _keep(name):
                continue
            yield _Entry(
                arcname=prefix + name,
                path=wheel,
                member=info.filename,
                size=info.file_size,
                executable=bool((info.external_attr >> 16) & 0o111),
            )


def _source_entries(source_dir: Path) -> Iterator[_Entry]:
    package = source_dir.name
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if not path.is_file() or {"__pycache__", "tests"} & set(relative.parts[:-1]):
            continue
        if path.suffix in _SOURCE_SUFFIXES or path.name == "py.typed":
            yield _Entry(
                arcname=f"{package}/{relative.as_posix()}",
                path=path,
                member=None,
                size=path.stat().st_size,
                executable=bool(path.stat().st_mode & 0o111),
            )


def _write_zip(name: str, entries: Iterable[_Entry], out: Path) -> Artifact:
    """Write ``entries`` to ``out`` reproducibly: same files in, same bytes out."""
    ordered = sorted(entries, key=lambda e: e.arcname)
    for first, second in pairwise(ordered):
        if first.arcname == second.arcname:
            raise ConfigInvalid(
                f"{first.arcname} comes from both {first.path.name} and {second.path.name}"
            )
    tmp = out.with_name(out.name + ".tmp")
    unzipped = 0
    with ExitStack() as stack:
        zout = stack.enter_context(zipfile.ZipFile(tmp, "w"))
        wheels: dict[Path, zipfile.ZipFile] = {}
        for entry in ordered:
            info = zipfile.ZipInfo(entry.arcname, date_time=_ZIP_DATE)
            info.create_system = _UNIX
            executable = entry.executable or bool(_SHARED_OBJECT.search(entry.arcname))
            info.external_attr = (0o100000 | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            # ZipFile's own compresslevel does not apply to a ZipInfo we pass in.
            info._compresslevel = _ZIP_LEVEL  # type: ignore[attr-defined]
            if entry.member is None:
                source: IO[bytes] = entry.path.open("rb")
            else:
                if entry.path not in wheels:
                    wheels[entry.path] = stack.enter_context(zipfile.ZipFile(entry.path))
                source = wheels[entry.path].open(entry.member)
            with source, zout.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            unzipped += info.file_size
    os.replace(tmp, out)
    return Artifact(
        name=name,
        path=out,
        sha256=_sha256(out),
        zipped_bytes=out.stat().st_size,
        unzipped_bytes=unzipped,
    )


def _code_matches(code_zip: Path, source_dir: Path) -> bool:
    """Whether ``code_zip`` holds exactly the package files of ``source_dir``, byte for byte."""
    prefix = f"{source_dir.name}/"
    with zipfile.ZipFile(code_zip) as zf:
        zipped = {i.filename: (i.file_size, i.CRC) for i in zf.infolist()}
    packaged = {name: v for name, v in zipped.items() if name.startswith(prefix)}
    current = {
        e.arcname: (e.size, zlib.crc32(e.path.read_bytes())) for e in _source_entries(source_dir)
    }
    return packaged == current


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
