"""DICOM networking: a C-STORE receiver that feeds the pipeline (``radstream dicom listen``).

An engine-level adapter: it writes into an engine's object store through the
:class:`~radstream.stages.ports.ObjectStore` port, as an upload does.
"""

from radstream.dicom.receiver import (
    STORAGE_SOP_CLASSES,
    InstanceWriter,
    Receiver,
    ReceiverConfig,
    StoredInstance,
    decodable_syntaxes,
)

__all__ = [
    "STORAGE_SOP_CLASSES",
    "InstanceWriter",
    "Receiver",
    "ReceiverConfig",
    "StoredInstance",
    "decodable_syntaxes",
]
