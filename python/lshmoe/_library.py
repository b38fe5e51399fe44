"""ctypes declarations of liblshmoe.so's communicator API, and its errors."""

import ctypes
import ctypes.util
import os

_c_size_p = ctypes.POINTER(ctypes.c_size_t)
_c_void_p = ctypes.c_void_p


class LshmoeError(RuntimeError):
    """A call into liblshmoe failed; `status` is its lshmoe_status_t."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _candidates():
    # An explicit path first, then the library of an installed prefix
    # (PREFIX/lib beside PREFIX/lib/python3/dist-packages/lshmoe), then the
    # source tree's build (python/lshmoe beside build/src), then the
    # loader's search path.
    explicit = os.environ.get("LSHMOE_LIBRARY")
    if explicit:
        yield explicit
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.environ.get("LSHMOE_BUILD_DIR", "build")
    for rel in (os.path.join("..", "..", "..", "liblshmoe.so.0"),
                os.path.join("..", "..", build, "src", "liblshmoe.so.0")):
        path = os.path.normpath(os.path.join(here, rel))
        if os.path.exists(path):
            yield path
    found = ctypes.util.find_library("lshmoe")
    yield found or "liblshmoe.so.0"


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("lshmoe: cannot load liblshmoe.so (set LSHMOE_LIBRARY to its path): "
                      + "; ".join(errors))


lib = _load()

_PROTOTYPES = {
    "lshmoe_last_error": (ctypes.c_char_p, []),
    "lshmoe_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "lshmoe_version": (ctypes.c_char_p, []),
    "lshmoe_config_from_env": (ctypes.c_int, [ctypes.POINTER(_c_void_p)]),
    "lshmoe_config_set": (ctypes.c_int, [_c_void_p, ctypes.c_char_p, ctypes.c_char_p]),
    "lshmoe_config_destroy": (None, [_c_void_p]),
    "lshmoe_comm_create": (ctypes.c_int, [_c_void_p, ctypes.POINTER(_c_void_p)]),
    "lshmoe_comm_create_from_nccl": (ctypes.c_int, [_c_void_p, _c_void_p,
                                                    ctypes.POINTER(_c_void_p)]),
    "lshmoe_comm_destroy": (None, [_c_void_p]),
    "lshmoe_comm_rank": (ctypes.c_int, [_c_void_p, ctypes.POINTER(ctypes.c_int)]),
    "lshmoe_comm_size": (ctypes.c_int, [_c_void_p, ctypes.POINTER(ctypes.c_int)]),
    "lshmoe_comm_expert_rows_experts": (
        ctypes.c_int,
        [_c_void_p, _c_size_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
         _c_size_p]),
    "lshmoe_dispatch_experts": (
        ctypes.c_int,
        [_c_void_p, _c_void_p, _c_size_p, _c_void_p, _c_size_p, ctypes.c_int, ctypes.c_size_t,
         ctypes.c_int, ctypes.c_int, ctypes.POINTER(_c_void_p)]),
    "lshmoe_dispatch_experts_async": (
        ctypes.c_int,
        [_c_void_p, _c_void_p, _c_size_p, _c_void_p, _c_size_p, ctypes.c_int, ctypes.c_size_t,
         ctypes.c_int, ctypes.c_int, _c_void_p, ctypes.POINTER(_c_void_p)]),
    "lshmoe_combine": (ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_combine_async": (ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_combine_backward": (ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_combine_backward_async": (
        ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_dispatch_backward": (ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_dispatch_backward_async": (
        ctypes.c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_void_p]),
    "lshmoe_handle_used_rows": (ctypes.c_int, [_c_void_p, _c_size_p]),
    "lshmoe_handle_assignment": (ctypes.c_int, [_c_void_p, ctypes.c_size_t,
                                                ctypes.POINTER(ctypes.c_uint32)]),
    "lshmoe_handle_free": (None, [_c_void_p]),
    "lshmoe_comm_stats": (ctypes.c_int, [_c_void_p, _c_void_p]),
}

for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes


def check(status, what):
    """Raises LshmoeError with the library's message unless status is 0."""
    if status != 0:
        message = (lib.lshmoe_last_error() or b"").decode(errors="replace")
        name = (lib.lshmoe_strerror(status) or b"").decode(errors="replace")
        raise LshmoeError(status, f"{what}: {message or name}")


def sizes(values):
    """A size_t array of the values."""
    values = [int(v) for v in values]
    return (ctypes.c_size_t * max(1, len(values)))(*values)


_nccl = None


def nccl():
    """NCCL's library (loaded on first use), with the calls the binding makes."""
    global _nccl
    if _nccl is None:
        handle = ctypes.CDLL(os.environ.get("LSHMOE_NCCL_LIBRARY", "libnccl.so.2"))
        handle.ncclGetUniqueId.argtypes = [ctypes.c_void_p]
        handle.ncclCommInitRank.argtypes = [ctypes.POINTER(_c_void_p), ctypes.c_int,
                                            NcclUniqueId, ctypes.c_int]
        handle.ncclCommDestroy.argtypes = [_c_void_p]
        handle.ncclGetErrorString.restype = ctypes.c_char_p
        _nccl = handle
    return _nccl


class NcclUniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]  # NCCL_UNIQUE_ID_BYTES
