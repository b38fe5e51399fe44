"""PyTorch through the shim, on the GPU machine (perf/gpu_check.sh).

Run three times, 2 ranks on one GPU (each its own NCCL_HOSTID): without the
shim (--tag raw), with LD_PRELOAD=liblshmoe_preload.so and no LSHMOE_HIDDEN
(--tag shim: loaded, nothing compressed), and with LSHMOE_HIDDEN=256
(--tag lshmoe: the token all-to-alls compressed on the GPU). Each run does
all_to_all_single with equal and unequal splits of clustered bf16 rows and
a small expert-parallel MoE layer forward and backward, and writes its
results to OUT/shim_torch_RANK_TAG.pt. --compare: "shim" must equal "raw"
exactly; "lshmoe" must be within BOUNDS of "raw" (a bare all-to-all is a
dispatch: its rows are slot means; the MoE output is compensated; the
backward passes through raw, so its gradients differ only through the
forward's activations).

usage: python3 shim_torch_check.py --out DIR --tag raw|shim|lshmoe
       python3 shim_torch_check.py --out DIR --compare
"""
import argparse
import os
import sys

import torch
import torch.distributed as dist

HIDDEN = 256
CLUSTERS = 16
# Relative difference allowed against the raw run, per result (--tag lshmoe).
BOUNDS = {"equal": 0.15, "unequal": 0.15, "moe_out": 0.05, "moe_grad_x": 0.15,
          "moe_grad_w": 0.15}


def clustered(rows, gen):
    """Rows near CLUSTERS centres (shared by every rank): what MoE tokens look like."""
    centres = torch.randn(CLUSTERS, HIDDEN, generator=torch.Generator().manual_seed(7))
    pick = torch.randint(0, CLUSTERS, (rows,), generator=gen)
    return centres[pick] + 0.05 * torch.randn(rows, HIDDEN, generator=gen)


class AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, send_splits, recv_splits):
        ctx.splits = (send_splits, recv_splits)
        out = x.new_empty((sum(recv_splits), x.shape[1]))
        dist.all_to_all_single(out, x.contiguous(), recv_splits, send_splits)
        return out

    @staticmethod
    def backward(ctx, grad):
        send_splits, recv_splits = ctx.splits
        out = grad.new_empty((sum(send_splits), grad.shape[1]))
        dist.all_to_all_single(out, grad.contiguous(), send_splits, recv_splits)
        return out, None, None


def run(args):
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(0)
    dist.init_process_group("nccl")
    gen = torch.Generator(device="cpu").manual_seed(1234 + rank)
    results = {}
    # Equal and unequal splits.
    for name, splits in (("equal", [64] * world), ("unequal", [40 + 8 * ((rank + p) % 3) for p in range(world)])):
        recv = [40 + 8 * ((p + rank) % 3) for p in range(world)] if name == "unequal" else splits
        x = clustered(sum(splits), gen).to(torch.bfloat16).cuda()
        y = torch.empty(sum(recv), HIDDEN, dtype=torch.bfloat16, device="cuda")
        dist.all_to_all_single(y, x, recv, splits)
        results[name] = y.float().cpu()
    # A small MoE layer: route, dispatch, one expert per rank, combine; backward.
    torch.manual_seed(99)
    w = torch.randn(HIDDEN, HIDDEN, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    tokens = clustered(256, gen).to(torch.bfloat16).cuda().requires_grad_()
    dest = torch.arange(256, device="cuda") % world
    order = torch.argsort(dest, stable=True)
    send = [int((dest == p).sum()) for p in range(world)]
    counts = torch.tensor(send, device="cuda")
    recv_counts = torch.empty_like(counts)
    dist.all_to_all_single(recv_counts, counts)
    recv = recv_counts.tolist()
    xe = AllToAll.apply(tokens[order], send, recv)
    ye = torch.tanh(xe @ w)
    y = AllToAll.apply(ye, recv, send)
    loss = (y.float() ** 2).mean()
    loss.backward()
    results["moe_out"] = y.detach().float().cpu()
    results["moe_grad_x"] = tokens.grad.float().cpu()
    results["moe_grad_w"] = w.grad.float().cpu()
    torch.save(results, os.path.join(args.out, f"shim_torch_{rank}_{args.tag}.pt"))
    dist.destroy_process_group()
    print(f"shim_torch_check rank {rank} {args.tag}: done")


def compare(args):
    bad = 0
    for rank in (0, 1):
        b = torch.load(os.path.join(args.out, f"shim_torch_{rank}_raw.pt"))
        for tag in ("shim", "lshmoe"):
            a = torch.load(os.path.join(args.out, f"shim_torch_{rank}_{tag}.pt"))
            for key in sorted(b):
                err = float((a[key] - b[key]).norm() / max(float(b[key].norm()), 1e-30))
                bound = 0.0 if tag == "shim" else BOUNDS[key]
                # Compressed: also different from raw, or nothing was compressed.
                ok = err <= bound and (tag == "shim" or key.startswith("moe_grad") or err > 0.0)
                bad += not ok
                print(f"shim_torch_check rank {rank} {tag} {key}: relative difference {err:.3g} "
                      f"(bound {bound:g}) {'ok' if ok else 'FAILS'}")
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tag", default="raw")
    p.add_argument("--compare", action="store_true")
    args = p.parse_args()
    if args.compare:
        sys.exit(compare(args))
    run(args)


if __name__ == "__main__":
    main()
