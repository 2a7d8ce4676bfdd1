"""fastembed: fused factorized embedding lookups, positional encodings and
embedding factorization, on Cython and Numba kernels behind a numpy API.

Import is light: no torch, dask or transformers, and Numba is imported only
when its backend is first used.
"""

from . import backends, reference
from ._blocks import AlbertEmbedding, BertEmbedding
from ._factorize import ErrorReport, Factorization, factorize
from ._layers import Embedding, FactorizedEmbedding
from ._lookup import factorized_lookup, lookup
from ._mrope import mrope_positions
from ._pooled import pooled_lookup
from ._positional import make_positions, positions_from_mask, sinusoidal
from ._quantize import QuantizedRows, quantize_rows
from ._ragged import as_ragged, positions_from_offsets
from ._rope import apply_rope, convert_rope_weight, rope_cos_sin, rope_frequencies, rope_permutation
from ._rope_config import RopeConfig, rope_config
from ._static import StaticEmbedding
from ._threads import get_num_threads, num_threads, set_num_threads
from ._version import __version__
from ._wordpiece import WordPiece

__all__ = [
    "__version__",
    "backends",
    "reference",
    "factorized_lookup",
    "lookup",
    "pooled_lookup",
    "as_ragged",
    "positions_from_offsets",
    "StaticEmbedding",
    "WordPiece",
    "factorize",
    "Factorization",
    "ErrorReport",
    "Embedding",
    "FactorizedEmbedding",
    "AlbertEmbedding",
    "BertEmbedding",
    "QuantizedRows",
    "quantize_rows",
    "sinusoidal",
    "make_positions",
    "positions_from_mask",
    "apply_rope",
    "rope_cos_sin",
    "rope_frequencies",
    "rope_permutation",
    "convert_rope_weight",
    "rope_config",
    "RopeConfig",
    "mrope_positions",
    "get_num_threads",
    "num_threads",
    "set_num_threads",
]
