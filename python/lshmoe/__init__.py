"""PyTorch binding of lshmoe: the compressed all-to-all of MoE layers as
autograd functions, over liblshmoe.so through ctypes (no build step).

    comm = lshmoe.Communicator()                 # torchrun's environment
    x_e, handle = lshmoe.dispatch(x, send_splits, recv_splits, comm)
    y = lshmoe.combine(expert(x_e), handle)      # y_i = E(c_k) + alpha (x_i - c_k)
    loss(y).backward()                           # the exact gradient, K rows each way

The backward of `combine` sends the gradient's slot means to the experts
(lshmoe_combine_backward); the backward of `dispatch` brings the slots'
input gradients back and adds the residual path alpha (g - M) that the
handle kept (lshmoe_dispatch_backward), so x need not be an input of
`combine`. Both are collective: every rank runs the same autograd graph.
"""

import ctypes
import os
import weakref

import torch

from ._library import LshmoeError, NcclUniqueId, check, lib, nccl, sizes

__all__ = ["Communicator", "Handle", "LshmoeError", "dispatch", "combine", "all_to_all",
           "version"]

_DTYPES = {torch.float32: 1, torch.float16: 2, torch.bfloat16: 3}
_MODES = {"rows": 0, "centroids": 1}


def version():
    return lib.lshmoe_version().decode()


class Communicator:
    """An lshmoe communicator joining every rank of the job.

    From torchrun's (or mpirun's) environment, like lshmoe_comm_create.
    `config` maps LSHMOE_* names to values over the environment's. When
    torch.distributed is already initialised its store holds MASTER_PORT,
    so lshmoe's rendezvous uses MASTER_PORT + 1 (or `port`). `from_pointer`
    wraps an lshmoe_comm_t* made elsewhere (not owned).
    """

    def __init__(self, config=None, port=None, *, _pointer=None, _owned=True):
        self._ptr = ctypes.c_void_p(_pointer)
        self._owned = _owned
        self._handles = weakref.WeakSet()  # freed with the communicator by close()
        if _pointer is not None:
            return
        cfg = ctypes.c_void_p()
        check(lib.lshmoe_config_from_env(ctypes.byref(cfg)), "lshmoe config")
        try:
            for name, value in (config or {}).items():
                check(lib.lshmoe_config_set(cfg, name.encode(), str(value).encode()),
                      f"lshmoe config {name}")
            if port is None and torch.distributed.is_available() and \
                    torch.distributed.is_initialized() and "MASTER_PORT" in os.environ:
                port = int(os.environ["MASTER_PORT"]) + 1
            saved = os.environ.get("MASTER_PORT")
            if port is not None:
                os.environ["MASTER_PORT"] = str(port)
            try:
                check(lib.lshmoe_comm_create(cfg, ctypes.byref(self._ptr)), "lshmoe_comm_create")
            finally:
                if port is not None and saved is not None:
                    os.environ["MASTER_PORT"] = saved
        finally:
            lib.lshmoe_config_destroy(cfg)

    @classmethod
    def from_pointer(cls, pointer):
        return cls(_pointer=int(pointer), _owned=False)

    @classmethod
    def from_nccl(cls, config=None):
        """A device communicator (CUDA tensors) over an NCCL communicator of
        its own on the current CUDA device: NCCL's unique id goes from rank 0
        to the others through torch.distributed, which must be initialised.
        Several ranks on one GPU need distinct NCCL_HOSTID values."""
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise LshmoeError(1, "lshmoe: from_nccl needs torch.distributed initialised")
        rank, world = dist.get_rank(), dist.get_world_size()
        lib_nccl = nccl()
        uid = NcclUniqueId()
        if rank == 0:
            r = lib_nccl.ncclGetUniqueId(ctypes.byref(uid))
            if r != 0:
                raise LshmoeError(8, f"lshmoe: ncclGetUniqueId: "
                                     f"{lib_nccl.ncclGetErrorString(r).decode()}")
        # Whole bytes (the id may hold zeros): read and written with string_at/memmove.
        raw = ctypes.string_at(ctypes.addressof(uid), ctypes.sizeof(uid))
        blob = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
        dist.broadcast(blob, 0)
        ctypes.memmove(ctypes.addressof(uid), bytes(blob.tolist()), ctypes.sizeof(uid))
        nccl_comm = ctypes.c_void_p()
        r = lib_nccl.ncclCommInitRank(ctypes.byref(nccl_comm), world, uid, rank)
        if r != 0:
            raise LshmoeError(8, f"lshmoe: ncclCommInitRank: "
                                 f"{lib_nccl.ncclGetErrorString(r).decode()}")
        cfg = ctypes.c_void_p()
        ptr = ctypes.c_void_p()
        try:
            check(lib.lshmoe_config_from_env(ctypes.byref(cfg)), "lshmoe config")
            for name, value in (config or {}).items():
                check(lib.lshmoe_config_set(cfg, name.encode(), str(value).encode()),
                      f"lshmoe config {name}")
            check(lib.lshmoe_comm_create_from_nccl(nccl_comm, cfg, ctypes.byref(ptr)),
                  "lshmoe_comm_create_from_nccl")
        except LshmoeError:
            lib_nccl.ncclCommDestroy(nccl_comm)
            raise
        finally:
            if cfg.value:
                lib.lshmoe_config_destroy(cfg)
        comm = cls(_pointer=ptr.value)
        comm._nccl_comm = nccl_comm  # destroyed after the communicator
        return comm

    @property
    def pointer(self):
        return self._ptr.value

    @property
    def rank(self):
        v = ctypes.c_int()
        check(lib.lshmoe_comm_rank(self._ptr, ctypes.byref(v)), "lshmoe_comm_rank")
        return v.value

    @property
    def size(self):
        v = ctypes.c_int()
        check(lib.lshmoe_comm_size(self._ptr, ctypes.byref(v)), "lshmoe_comm_size")
        return v.value

    def expert_rows(self, recv_splits, row_elems, dtype, mode="rows", experts_per_rank=1):
        """Rows the dispatch writes per part (fewer for compressed parts in
        centroid mode)."""
        out = sizes([0] * len(recv_splits))
        check(lib.lshmoe_comm_expert_rows_experts(self._ptr, sizes(recv_splits),
                                                  experts_per_rank, row_elems, _dtype(dtype),
                                                  _mode(mode), out),
              "lshmoe_comm_expert_rows")
        return [out[i] for i in range(len(recv_splits))]

    def stats(self):
        """Counters of what this rank sent (lshmoe_stats_t) as a dict."""
        fields = [("messages_compressed", ctypes.c_uint64), ("messages_raw", ctypes.c_uint64),
                  ("logical_bytes", ctypes.c_uint64), ("wire_bytes", ctypes.c_uint64),
                  ("input_energy", ctypes.c_double), ("residual_energy", ctypes.c_double)]
        stats = type("Stats", (ctypes.Structure,), {"_fields_": fields})()
        check(lib.lshmoe_comm_stats(self._ptr, ctypes.byref(stats)), "lshmoe_comm_stats")
        return {name: getattr(stats, name) for name, _ in fields}

    def close(self):
        """Destroys the communicator and the handles it still has (their
        Python objects stay, and raise if used)."""
        if self._ptr.value and self._owned:
            for handle in list(self._handles):
                handle._ptr = None
            lib.lshmoe_comm_destroy(self._ptr)
        self._ptr = ctypes.c_void_p()
        nccl_comm = getattr(self, "_nccl_comm", None)
        if nccl_comm is not None and nccl_comm.value:
            nccl().ncclCommDestroy(nccl_comm)
            self._nccl_comm = None

    def __del__(self):
        # Handles keep their communicator alive, so none outlives it.
        self.close()


class Handle:
    """A dispatch's pair contexts, kept for its combine and its backward."""

    def __init__(self, comm, pointer, meta):
        self.comm = comm  # the communicator outlives its handles
        self._ptr = pointer
        self.meta = meta
        comm._handles.add(self)

    @property
    def pointer(self):
        return self._ptr.value

    def _live(self):
        if not self._ptr or not self._ptr.value:
            raise LshmoeError(6, "lshmoe: the handle's communicator was closed")
        return self._ptr

    def assignment(self, part):
        """The slot each row sent to `part` travelled in (i for raw parts)."""
        self._live()
        n = self.meta["send_splits"][part]
        out = (ctypes.c_uint32 * max(1, n))()
        check(lib.lshmoe_handle_assignment(self._ptr, part, out), "lshmoe_handle_assignment")
        return torch.tensor([out[i] for i in range(n)], dtype=torch.int64)

    def used_rows(self):
        parts = len(self.meta["recv_splits"])
        out = sizes([0] * parts)
        check(lib.lshmoe_handle_used_rows(self._live(), out), "lshmoe_handle_used_rows")
        return [out[i] for i in range(parts)]

    def __del__(self):
        if self._ptr and self._ptr.value:
            lib.lshmoe_handle_free(self._ptr)
            self._ptr = None


def _dtype(dtype):
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise TypeError(f"lshmoe: dtype {dtype} is not one of float32, float16, bfloat16") \
            from None


def _mode(mode):
    try:
        return _MODES[mode]
    except KeyError:
        raise ValueError(f"lshmoe: mode {mode!r} is not 'rows' or 'centroids'") from None


def _rows(t, what):
    """A contiguous 2-D tensor of t (copied when t is not contiguous)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"lshmoe: {what} must be a tensor")
    if t.dim() != 2:
        raise ValueError(f"lshmoe: {what} must be [rows, hidden], got shape {tuple(t.shape)}")
    _dtype(t.dtype)
    return t.contiguous()


def _stream(t):
    return ctypes.c_void_p(torch.cuda.current_stream(t.device).cuda_stream) if t.is_cuda else None


def _call(host_fn, device_fn, what, t, *args):
    if t.is_cuda:
        check(device_fn(*args, _stream(t)), what + "_async")
    else:
        check(host_fn(*args), what)


def _splits(splits, parts, what):
    splits = [int(s) for s in splits]
    if len(splits) != parts or any(s < 0 for s in splits):
        raise ValueError(f"lshmoe: {what} needs {parts} counts of zero or more, got {splits}")
    return splits


def _dispatch_rows(x, send_splits, recv_splits, comm, mode, experts_per_rank):
    """lshmoe_dispatch on tensors: (x_expert, handle), no autograd."""
    x = _rows(x, "dispatch input")
    parts = comm.size * experts_per_rank
    send_splits = _splits(send_splits, parts, "send_splits")
    recv_splits = _splits(recv_splits, parts, "recv_splits")
    if sum(send_splits) != x.shape[0]:
        raise ValueError(f"lshmoe: send_splits sum to {sum(send_splits)}, "
                         f"the input has {x.shape[0]} rows")
    h = x.shape[1]
    rows = comm.expert_rows(recv_splits, h, x.dtype, mode, experts_per_rank)
    x_e = torch.empty((sum(rows), h), dtype=x.dtype, device=x.device)
    ptr = ctypes.c_void_p()
    args = (comm._ptr, ctypes.c_void_p(x.data_ptr()), sizes(send_splits),
            ctypes.c_void_p(x_e.data_ptr()), sizes(recv_splits), experts_per_rank, h,
            _dtype(x.dtype), _mode(mode))
    if x.is_cuda:
        check(lib.lshmoe_dispatch_experts_async(*args, _stream(x), ctypes.byref(ptr)),
              "lshmoe_dispatch_async")
    else:
        check(lib.lshmoe_dispatch_experts(*args, ctypes.byref(ptr)), "lshmoe_dispatch")
    return x_e, Handle(comm, ptr, {"send_splits": send_splits, "recv_splits": recv_splits,
                                   "expert_rows": rows, "hidden": h, "dtype": x.dtype,
                                   "device": x.device, "mode": mode,
                                   "experts_per_rank": experts_per_rank})


def _combine_rows(y_e, handle):
    """lshmoe_combine on tensors, no autograd."""
    meta = handle.meta
    y_e = _rows(y_e.to(meta["dtype"]), "combine input")
    if y_e.shape != (sum(meta["expert_rows"]), meta["hidden"]):
        raise ValueError(f"lshmoe: combine takes the dispatch's expert rows, shape "
                         f"{(sum(meta['expert_rows']), meta['hidden'])}, got {tuple(y_e.shape)}")
    y = torch.empty((sum(meta["send_splits"]), meta["hidden"]), dtype=meta["dtype"],
                    device=y_e.device)
    _call(lib.lshmoe_combine, lib.lshmoe_combine_async, "lshmoe_combine", y, handle.comm._ptr,
          handle._live(), ctypes.c_void_p(y_e.data_ptr()), ctypes.c_void_p(y.data_ptr()))
    return y


class _Dispatch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, send_splits, recv_splits, comm, mode, experts_per_rank, backward_comm):
        if backward_comm is not None and mode != "rows":
            raise ValueError("lshmoe: a backward communicator needs mode 'rows'")
        x_e, handle = _dispatch_rows(x, send_splits, recv_splits, comm, mode, experts_per_rank)
        handle.meta["backward_comm"] = backward_comm
        ctx.handle = handle
        return x_e, handle

    @staticmethod
    def backward(ctx, grad_x_e, _grad_handle):
        h = ctx.handle
        meta = h.meta
        if grad_x_e is None:
            grad_x_e = torch.zeros((sum(meta["expert_rows"]), meta["hidden"]),
                                   dtype=meta["dtype"], device=meta["device"])
        grad_x_e = _rows(grad_x_e.to(meta["dtype"]), "dispatch gradient")
        if meta["backward_comm"] is not None:
            # The gradient pair's combine: expert rows back to their origins.
            grad_x = _combine_rows(grad_x_e, meta.pop("backward_handle"))
            return grad_x, None, None, None, None, None, None
        grad_x = torch.empty((sum(meta["send_splits"]), meta["hidden"]), dtype=meta["dtype"],
                             device=meta["device"])
        _call(lib.lshmoe_dispatch_backward, lib.lshmoe_dispatch_backward_async,
              "lshmoe_dispatch_backward", grad_x, h.comm._ptr, h._live(),
              ctypes.c_void_p(grad_x_e.data_ptr()), ctypes.c_void_p(grad_x.data_ptr()))
        return grad_x, None, None, None, None, None, None


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y_e, handle):
        ctx.handle = handle
        return _combine_rows(y_e, handle)

    @staticmethod
    def backward(ctx, grad_y):
        h = ctx.handle
        meta = h.meta
        grad_y = _rows(grad_y.to(meta["dtype"]), "combine gradient")
        if meta["backward_comm"] is not None:
            # The gradient pair's dispatch: origin rows out to the experts.
            grad_y_e, meta["backward_handle"] = _dispatch_rows(
                grad_y, meta["send_splits"], meta["recv_splits"], meta["backward_comm"], "rows",
                meta["experts_per_rank"])
            return grad_y_e, None
        grad_y_e = torch.empty((sum(meta["expert_rows"]), meta["hidden"]), dtype=meta["dtype"],
                               device=grad_y.device)
        _call(lib.lshmoe_combine_backward, lib.lshmoe_combine_backward_async,
              "lshmoe_combine_backward", grad_y, h.comm._ptr, h._live(),
              ctypes.c_void_p(grad_y.data_ptr()), ctypes.c_void_p(grad_y_e.data_ptr()))
        return grad_y_e, None


def dispatch(x, send_splits, recv_splits, comm, mode="rows", experts_per_rank=1,
             backward_comm=None):
    """Sends the rows of x ([n, hidden], grouped by destination part) to the
    experts: send_splits[p * E + e] rows to expert e of rank p, recv_splits
    likewise for the rows this rank's experts get. Returns (x_expert, handle);
    in 'centroids' mode a compressed part arrives as its slots (see
    Communicator.expert_rows and Handle.used_rows).

    The backward is the exact gradient of the compressed forward. With
    `backward_comm` (rows mode only) the gradients travel instead as one more
    dispatch/combine pair on that communicator: through one with
    LSHMOE_ENABLE=0 they go uncompressed and straight through the centroid
    (the shim's default); through a compressing one they are hashed afresh
    (measured harmful: docs/training.md)."""
    return _Dispatch.apply(x, send_splits, recv_splits, comm, mode, experts_per_rank,
                           backward_comm)


def combine(y_expert, handle):
    """The expert outputs back to their origins: y_i = Y_k + alpha (x_i - c_k)."""
    return _Combine.apply(y_expert, handle)


def all_to_all(x, send_splits, recv_splits, comm, expert, mode="rows", experts_per_rank=1,
               backward_comm=None):
    """dispatch, `expert` on the rows that arrived, combine."""
    x_e, handle = dispatch(x, send_splits, recv_splits, comm, mode, experts_per_rank,
                           backward_comm)
    return combine(expert(x_e), handle)
