"""A DICOM C-STORE receiver (SCP) that hands each image to the pipeline.

Modalities and PACS push images with DICOM C-STORE, not files with JSON sidecars. The
receiver answers C-ECHO, accepts the projection-radiograph storage SOP classes (CR, DX for
presentation and for processing) and Secondary Capture, in every transfer syntax this
installation decodes, and for each instance puts into the object store, as ``radstream
upload`` does:

1. the DICOM file as sent (``incoming/{study}/{stem}.dcm``, the encoded data set with a
   file meta header, never decoded and re-encoded);
2. then, last, the sidecar that :func:`~radstream.schema.dicom_sidecar.sidecar_from_header`
   makes from its header (``incoming/{study}/{stem}.json``): the trigger of the execution.

``{study}`` comes from the StudyInstanceUID and ``{stem}`` from the SOPInstanceUID (see
that module), so an instance sent twice overwrites its own files and is processed again.

Refusals, as DICOM says them:

* a calling AE title not on the allow-list (when there is one): the association is
  rejected (permanent, "calling AE title not recognised");
* another SOP class: its presentation context is rejected ("abstract syntax not
  supported"), and a C-STORE that still names one answers 0x0122 "SOP class not supported";
* an instance over ``max_instance_bytes`` (``imaging.max_file_bytes``), or a deflated one
  that would inflate past it: 0xA700 "out of resources", and nothing is written;
* a header without the UIDs or dates the sidecar needs: 0xA900 "data set does not match
  SOP class"; one that cannot be parsed: 0xC000 "cannot understand".

What the pipeline itself refuses (not a chest radiograph, an undecodable image) is
accepted here and fails there with its code, like any upload. At most
``max_associations`` associations run at once; pynetdicom refuses the next one
("local limit exceeded"). The whole instance is held in memory while it is received (as
pynetdicom does), so the memory bound is ``max_associations x max PDU-assembled data set``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from radstream.errors import ImageFileTooLarge, ImageTruncated, ImageUndecodable, RadStreamError
from radstream.imaging.deflated import check_inflated_size
from radstream.imaging.dicom_codecs import PREFERRED_PLUGINS, register_plugins
from radstream.layout import Bucket, sidecar_key, upload_key
from radstream.logs import get_logger
from radstream.schema.dicom_sidecar import image_stem_from_header, sidecar_from_header
from radstream.stages.ports import ObjectInfo, ObjectStore

log = get_logger(__name__)

STORAGE_SOP_CLASSES: Final[tuple[str, ...]] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
"""The SOP classes stored: CR, DX (for presentation and for processing), Secondary Capture."""

NATIVE_SYNTAXES: Final[tuple[str, ...]] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

# DIMSE status codes (PS3.4 Annex B and PS3.7 Annex C).
SUCCESS: Final = 0x0000
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
OUT_OF_RESOURCES: Final = 0xA700
DATA_SET_MISMATCH: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000

DEFAULT_PORT: Final = 11112
DEFAULT_AE_TITLE: Final = "RADSTREAM"
IMAGE_SUFFIX: Final = ".dcm"


def decodable_syntaxes() -> list[str]:
    """Transfer syntaxes offered for storage: the native ones, and each compressed one that
    an installed decoder plugin handles (``radstream.imaging.dicom_codecs``)."""
    register_plugins()
    compressed = [s for s in PREFERRED_PLUGINS if get_decoder(UID(s)).is_available]
    return [*NATIVE_SYNTAXES, *compressed]


@dataclass(frozen=True)
class ReceiverConfig:
    """How the receiver listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    ae_title: str = DEFAULT_AE_TITLE
    allow_ae: tuple[str, ...] = ()
    """Calling AE titles accepted; empty: any."""
    max_associations: int = 4
    max_instance_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class StoredInstance:
    """What the receiver wrote for one instance."""

    image: ObjectInfo
    sidecar: ObjectInfo


@dataclass
class InstanceWriter:
    """Writes a received instance and its sidecar into the store, image first.

    One lock serialises the writes of concurrent associations: the local store's
    object-created events go to one SQLite connection.
    """

    store: ObjectStore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, data: bytes) -> StoredInstance:
        """Store one Part-10 file and its sidecar; raise ``RadStreamError`` if the header
        lacks what the sidecar needs, ``InvalidDicomError`` if it is not DICOM."""
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        sidecar = sidecar_from_header(header, received_at=self.clock())
        stem = image_stem_from_header(header)
        document = sidecar.model_dump_json(exclude_none=True).encode()
        with self._lock:
            image = self.store.put(
                Bucket.IMAGES, upload_key(sidecar.study_id, stem + IMAGE_SUFFIX), data
            )
            trigger = self.store.put(Bucket.IMAGES, sidecar_key(sidecar.study_id, stem), document)
        return StoredInstance(image=image, sidecar=trigger)


class Receiver:
    """The C-STORE SCP: ``start()`` listens in background threads, ``stop()`` ends it."""

    def __init__(
        self,
        config: ReceiverConfig,
        writer: InstanceWriter,
        *,
        on_stored: Callable[[StoredInstance], None] | None = None,
    ) -> None:
        self.config = config
        self.writer = writer
        self._on_stored = on_stored
        self._server: ThreadedAssociationServer | None = None
        self.ae = self._application_entity()

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        if self.config.allow_ae:
            ae.require_calling_aet = list(self.config.allow_ae)
        syntaxes = decodable_syntaxes()
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        ae.add_supported_context(Verification)
        return ae

    @property
    def address(self) -> tuple[str, int]:
        """The host and port listened on (the port the system chose when given 0)."""
        if self._server is None:
            return self.config.host, self.config.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen on ``config.host:config.port`` (returns at once)."""
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = [
            (evt.EVT_C_ECHO, _echo),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_REJECTED, _rejected),
        ]
        self._server = self.ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            evt_handlers=list(handlers),
        )

    def stop(self) -> None:
        """Stop listening and end the open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def handle_store(self, event: Event) -> int:
        """``EVT_C_STORE``: write the instance, answer with a DIMSE status."""
        request: Any = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        if sop_class not in STORAGE_SOP_CLASSES:
            log.warning("C-STORE refused: SOP class %s is not stored", sop_class)
            return SOP_CLASS_NOT_SUPPORTED
        size = len(request.DataSet.getvalue())
        if size > self.config.max_instance_bytes:
            log.warning(
                "C-STORE refused: %d bytes, the limit is %d", size, self.config.max_instance_bytes
            )
            return OUT_OF_RESOURCES
        encoded = event.encoded_dataset()
        try:
            # pydicom inflates a deflated data set whole before it reads one element, even
            # for the header: bound what it would inflate to, as the pipeline does.
            check_inflated_size(encoded, self.config.max_instance_bytes)
            stored = self.writer.write(encoded)
        except ImageFileTooLarge:
            log.warning(
                "C-STORE refused: the deflated data set inflates past %d bytes",
                self.config.max_instance_bytes,
            )
            return OUT_OF_RESOURCES
        except (ImageTruncated, ImageUndecodable) as exc:
            log.warning("C-STORE refused: %s", exc.code, extra={"code": exc.code})
            return CANNOT_UNDERSTAND
        except RadStreamError as exc:
            log.warning("C-STORE refused: %s", exc.code, extra={"code": exc.code})
            return DATA_SET_MISMATCH
        except (InvalidDicomError, ValueError, EOFError) as exc:
            log.warning("C-STORE refused: the data set cannot be read (%s)", type(exc).__name__)
            return CANNOT_UNDERSTAND
        except OSError as exc:
            log.error("C-STORE failed: the store refused the write (%s)", type(exc).__name__)
            return OUT_OF_RESOURCES
        log.info("stored %s", stored.sidecar.key)
        if self._on_stored is not None:
            self._on_stored(stored)
        return SUCCESS


def _echo(event: Event) -> int:
    return SUCCESS


def _rejected(event: Event) -> None:
    # The AE title and address only: who knocked, never what they carried.
    requestor = event.assoc.requestor
    log.warning(
        "association rejected: calling AE %s from %s",
        str(requestor.ae_title).strip(),
        requestor.address,
    )
