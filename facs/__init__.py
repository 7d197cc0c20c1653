"""facs: facial action unit detection in videos with a two-stream CNN.

Nets are described by Caffe files (prototxt, caffemodel, LMDB Datum, binaryproto)
and executed by PyTorch.
"""

from facs.errors import FacsError

__version__ = "0.1.0"
__all__ = ["FacsError", "__version__"]
