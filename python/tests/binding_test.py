"""Tests of the PyTorch binding with real processes on loopback:

  binding_test.py --world W --case CASE

spawns W ranks of itself (torchrun's variables, a free port) and fails if any
rank fails. Cases:
  disabled    LSHMOE_ENABLE=0: outputs and input gradients equal a local
              computation of the same expert bit for bit (the plain
              all-to-all and its gradient are permutations)
  compressed  fp32: the gradient equals a float64 autograd reference of the
              compressed forward under the same assignment (tolerance 1e-4),
              and central differences through the real forward agree where
              the nudge left the assignment as it was; centroid mode and
              alpha = 0; bf16 and fp16 against the reference at their precision;
              non-contiguous input; library errors as exceptions
  dense       with torch.distributed (gloo) beside lshmoe: after a step, the
              dense (non-expert) gradients all-reduced across ranks are
              identical on every rank
  cuda        CUDA tensors through Communicator.from_nccl (skipped without a
              GPU): identity round trip and its gradient, exact uncompressed
Exits 77 (skipped) without torch.
"""

import argparse
import os
import sys

try:
    import torch
except ImportError:
    print("binding_test: no torch under", sys.executable, "- skipped")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lshmoe  # noqa: E402

H = 32


def rows_between(s, d):
    return [0, 10, 64, 100, 150][(s * 3 + d * 2 + 1) % 5]


def clustered(n, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, H, generator=g, dtype=torch.float64)
    which = torch.randint(0, 8, (n,), generator=g)
    return (centres[which] + 0.03 * torch.randn(n, H, generator=g, dtype=torch.float64)) * scale


def rank_rows(me, world, dtype):
    """This rank's rows, grouped by destination, and both split lists."""
    send = [rows_between(me, d) for d in range(world)]
    recv = [rows_between(s, me) for s in range(world)]
    x = torch.cat([clustered(send[d], 1000 * me + d) for d in range(world)]).to(dtype)
    g = torch.cat([clustered(send[d], 5000 + 1000 * me + d, 0.5) for d in range(world)]).to(dtype)
    return x, g, send, recv


class Expert(torch.nn.Module):
    """Row-wise and elementwise (so a batch of any shape gives the same bits)."""

    def __init__(self):
        super().__init__()
        t = torch.arange(H, dtype=torch.float64)
        self.w = torch.cos(t) * 0.8 + 0.3
        self.b = torch.sin(t) * 0.1

    def forward(self, v):
        # CPU torch has no fp16 tanh: fp16 rows are computed in fp32.
        work = torch.float32 if v.dtype == torch.float16 else v.dtype
        return torch.tanh(v.to(work) * self.w.to(work) + self.b.to(work)).to(v.dtype)


def fail(message):
    raise AssertionError(f"rank {os.environ['RANK']}: {message}")


def reference(x, g, handle, send, expert, alpha):
    """The float64 gradient of sum(g * y), y_i = E(c_k) + alpha (x_i - c_k)."""
    grads, start = [], 0
    for p, n in enumerate(send):
        xp = x[start:start + n].to(torch.float64).detach().requires_grad_(True)
        a = handle.assignment(p)
        k = int(a.max()) + 1 if n else 0
        count = torch.zeros(k, dtype=torch.float64).index_add_(0, a, torch.ones(n,
                                                                 dtype=torch.float64))
        c = torch.zeros(k, H, dtype=torch.float64).index_add_(0, a, xp) / count[:, None]
        y = expert(c)[a] + alpha * (xp - c[a])
        (y * g[start:start + n].to(torch.float64)).sum().backward()
        grads.append(xp.grad)
        start += n
    return torch.cat(grads)


def step(comm, x, g, send, recv, expert, mode="rows"):
    x = x.detach().requires_grad_(True)
    x_e, handle = lshmoe.dispatch(x, send, recv, comm, mode)
    y = lshmoe.combine(expert(x_e), handle)
    (y * g).sum().backward()
    return y.detach(), x.grad, handle


def case_disabled(me, world):
    comm = lshmoe.Communicator({"LSHMOE_ENABLE": "0"})
    expert = Expert()
    x, g, send, recv = rank_rows(me, world, torch.float32)
    y, dx, _ = step(comm, x, g, send, recv, expert)
    xl = x.detach().requires_grad_(True)
    yl = expert(xl)
    (yl * g).sum().backward()
    if not torch.equal(y, yl.detach()):
        fail("disabled: the output differs from the local expert")
    if not torch.equal(dx, xl.grad):
        fail("disabled: the input gradient differs from the plain all-to-all's")


def case_compressed(me, world):
    expert = Expert()
    for mode, alpha in (("rows", 1.0), ("centroids", 1.0), ("rows", 0.0)):
        comm = lshmoe.Communicator({"LSHMOE_COMPENSATE": str(alpha)})
        x, g, send, recv = rank_rows(me, world, torch.float32)
        y, dx, handle = step(comm, x, g, send, recv, expert, mode)
        if comm.stats()["messages_compressed"] == 0 and world > 2:
            fail("nothing was compressed")
        ref = reference(x, g, handle, send, expert, alpha)
        err = float((dx.double() - ref).abs().max() / ref.abs().max())
        if err > 1e-4:
            fail(f"{mode} alpha {alpha}: gradient off the reference by {err:.3g}")
        del handle
        comm.close()

    # backward_comm: the gradients as a pair on another communicator. Through
    # an uncompressed one: straight through the centroid, dx_i = J_E(c_k)^T g_i.
    comm = lshmoe.Communicator()
    raw = lshmoe.Communicator({"LSHMOE_ENABLE": "0"}, port=int(os.environ["MASTER_PORT"]) + 7)
    x, g, send, recv = rank_rows(me, world, torch.float32)
    xr = x.detach().requires_grad_(True)
    x_e, handle = lshmoe.dispatch(xr, send, recv, comm, backward_comm=raw)
    (lshmoe.combine(expert(x_e), handle) * g).sum().backward()
    wants, start = [], 0
    for p, n in enumerate(send):
        a = handle.assignment(p)
        k = int(a.max()) + 1 if n else 0
        count = torch.zeros(k, dtype=torch.float64).index_add_(0, a, torch.ones(n,
                                                                 dtype=torch.float64))
        c = torch.zeros(k, H, dtype=torch.float64).index_add_(0, a, x[start:start + n].double())
        v = (c / count[:, None])[a].requires_grad_(True)
        (expert(v) * g[start:start + n].double()).sum().backward()
        wants.append(v.grad)
        start += n
    want = torch.cat(wants)
    err = float((xr.grad.double() - want).abs().max() / want.abs().max())
    if err > 1e-4:
        fail(f"raw backward: off the straight-through gradient by {err:.3g}")
    del handle, x_e
    raw.close()

    # Central differences through the real forward, assignment frozen.
    comm = lshmoe.Communicator()
    x, g, send, recv = rank_rows(me, world, torch.float32)
    _, dx, handle = step(comm, x, g, send, recv, expert)
    frozen = [handle.assignment(p) for p in range(world)]
    eps, checked = 1e-2, 0
    for probe in range(6):
        row, col = (probe * 37 + me * 5) % x.shape[0], probe * 11 % H
        losses = []
        for sign in (1, -1):
            xn = x.clone()
            xn[row, col] += sign * eps
            yn, _, hn = step(comm, xn, g, send, recv, expert)
            same = all(torch.equal(hn.assignment(p), frozen[p]) for p in range(world))
            losses.append((float((yn.double() * g.double()).sum()), same))
        if not (losses[0][1] and losses[1][1]):
            continue
        fd = (losses[0][0] - losses[1][0]) / (2 * eps)
        if abs(fd - float(dx[row, col])) > 2e-3 + 1e-2 * abs(float(dx[row, col])):
            fail(f"finite difference {fd:.6g} against gradient {float(dx[row, col]):.6g}")
        checked += 1
    if checked < 3:
        fail(f"only {checked} probes kept the assignment")

    # Half precision against the reference, at its precision.
    for dtype, tolerance in ((torch.bfloat16, 3e-2), (torch.float16, 5e-3)):
        x, g, send, recv = rank_rows(me, world, dtype)
        _, dx, handle = step(comm, x, g, send, recv, expert)
        ref = reference(x, g, handle, send, expert, 1.0)
        err = float((dx.double() - ref).abs().max() / ref.abs().max())
        if dx.dtype != dtype or err > tolerance:
            fail(f"{dtype}: gradient dtype {dx.dtype}, off the reference by {err:.3g}")

    # Non-contiguous input is copied: the same result as its contiguous copy.
    x, g, send, recv = rank_rows(me, world, torch.float32)
    y_strided, _, _ = step(comm, x.t().contiguous().t(), g, send, recv, expert)
    y_plain, _, _ = step(comm, x, g, send, recv, expert)
    if not torch.equal(y_strided, y_plain):
        fail("a non-contiguous input gave another result")

    # Library errors are exceptions carrying the library's message.
    x_e, handle = lshmoe.dispatch(x, send, recv, comm)
    lshmoe.combine(x_e, handle)
    try:
        lshmoe.combine(x_e, handle)
        fail("a handle combined twice")
    except lshmoe.LshmoeError as e:
        if "combine" not in str(e) or e.status != 6:
            fail(f"unexpected error {e.status}: {e}")
    try:
        lshmoe.dispatch(x, send[:-1], recv, comm)
        fail("short send_splits were accepted")
    except ValueError:
        pass
    # A handle outliving its closed communicator is an error, not a crash.
    x_e, handle = lshmoe.dispatch(x, send, recv, comm)
    comm.close()
    try:
        lshmoe.combine(x_e, handle)
        fail("a handle of a closed communicator combined")
    except lshmoe.LshmoeError as e:
        if "closed" not in str(e):
            fail(f"unexpected error: {e}")
    del handle


def case_dense(me, world):
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=me, world_size=world)
    comm = lshmoe.Communicator()  # MASTER_PORT + 1: the store holds MASTER_PORT
    torch.manual_seed(0)  # dense weights alike on every rank
    dense = torch.nn.Linear(H, H, dtype=torch.float32)
    torch.manual_seed(100 + me)  # each rank's own expert
    expert = torch.nn.Sequential(torch.nn.Linear(H, H), torch.nn.Tanh())
    x, g, send, recv = rank_rows(me, world, torch.float32)
    h = dense(x)
    x_e, handle = lshmoe.dispatch(h, send, recv, comm)
    y = lshmoe.combine(expert(x_e), handle)
    (y * g).sum().backward()
    grads = [dense.weight.grad, dense.bias.grad]
    for t in grads:
        dist.all_reduce(t)
    for t in grads:
        mine = t.clone()
        dist.broadcast(t, 0)
        if not torch.equal(mine, t):
            fail("the all-reduced dense gradient differs between ranks")
        if not torch.isfinite(t).all() or t.abs().sum() == 0:
            fail("the dense gradient is empty")
    if expert[0].weight.grad is None or expert[0].weight.grad.abs().sum() == 0:
        fail("the expert got no gradient")
    del handle
    dist.destroy_process_group()


def case_cuda(me, world):
    """CUDA tensors through a device communicator (Communicator.from_nccl):
    the identity expert gives the rows back and the input gradient is the
    output's, within bf16 rounding; uncompressed, exactly."""
    if not torch.cuda.is_available():
        print(f"rank {me}: no CUDA device - skipped")
        sys.exit(77)
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=me, world_size=world)
    torch.cuda.set_device(me % torch.cuda.device_count())
    for enable, tolerance in (("0", 0.0), ("1", 0.05)):
        comm = lshmoe.Communicator.from_nccl({"LSHMOE_ENABLE": enable})
        x, g, send, recv = rank_rows(me, world, torch.bfloat16)
        x, g = x.cuda().requires_grad_(True), g.cuda()
        x_e, handle = lshmoe.dispatch(x, send, recv, comm)
        y = lshmoe.combine(x_e * 1.0, handle)
        (y * g).sum().backward()
        torch.cuda.synchronize()
        scale = x.detach().abs().max()
        y_err = float((y.detach() - x.detach()).abs().max() / scale)
        g_err = float((x.grad - g).abs().max() / g.abs().max())
        if y_err > tolerance or g_err > tolerance:
            fail(f"cuda, LSHMOE_ENABLE={enable}: output off by {y_err:.3g}, "
                 f"gradient by {g_err:.3g} (tolerance {tolerance})")
        del handle, x_e, y
        comm.close()
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=int, default=3)
    parser.add_argument("--case", choices=["disabled", "compressed", "dense", "cuda"],
                        required=True)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    if "RANK" in os.environ:
        me, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        {"disabled": case_disabled, "compressed": case_compressed, "dense": case_dense,
         "cuda": case_cuda}[args.case](me, world)
        print(f"rank {me}: {args.case} ok")
        return 0
    from lshmoe.launch import run_local
    codes = run_local([sys.executable, __file__] + sys.argv[1:], args.world, args.timeout)
    if codes and all(c == 77 for c in codes):
        return 77
    if any(codes):
        print(f"binding_test {args.case}: rank exit codes {codes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
