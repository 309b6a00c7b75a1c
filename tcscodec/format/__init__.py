"""The ``.tcs`` container format (``spec/tcs-format.md``): pure Python + numpy.

This layer knows bytes, headers, records and checksums; it knows nothing of
masks, encoders or decoders.
"""

from .codecs import CODECS, RecordCodec, get_codec, register_codec
from .container import ContainerReader, ContainerWriter, TcsDamageWarning, TcsRecoveryWarning
from .header import DTYPE_CODES, MAGIC, VERSION, TcsHeader
from .records import decode_payload, encode_payload

__all__ = [
    "CODECS",
    "RecordCodec",
    "get_codec",
    "register_codec",
    "DTYPE_CODES",
    "MAGIC",
    "VERSION",
    "TcsHeader",
    "ContainerReader",
    "ContainerWriter",
    "TcsRecoveryWarning",
    "TcsDamageWarning",
    "encode_payload",
    "decode_payload",
]
