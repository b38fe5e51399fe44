"""An expert-parallel MoE language model trained through lshmoe.

  train.py --world 4 --steps 300 --out runs/rho0.2 [--compress off] ...

Byte-level transformer (a few blocks, each with an MoE FFN: top-2 gating over
E experts sharded across the W ranks). The tokens move to their experts and
back through lshmoe.dispatch/combine, forward and backward; the dense
weights are data-parallel (gradients all-reduced over gloo). Without RANK in
the environment it launches W ranks of itself on this machine (torchrun's
variables). Rank 0 writes OUT/log.json (losses, wall time, bytes) and prints
a line per evaluation. Data: corpus.py's train.txt / heldout.txt in --data
(built there when missing).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

try:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
except ImportError:
    print("train: no torch under", sys.executable, "- skipped")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import lshmoe  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", type=int, default=4, help="ranks (processes)")
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--batch", type=int, default=8, help="sequences per rank and step")
    p.add_argument("--seq", type=int, default=64, help="bytes per sequence")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--experts", type=int, default=8, help="in all, a multiple of --world")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--aux", type=float, default=0.01, help="load-balancing loss weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compress", choices=["on", "off"], default="on")
    p.add_argument("--rho", type=float, default=0.2, help="LSHMOE_RATIO")
    p.add_argument("--alpha", type=float, default=1.0, help="LSHMOE_COMPENSATE")
    p.add_argument("--backward", choices=["exact", "raw", "pairs"], default="exact")
    p.add_argument("--eval-every", type=int, default=40)
    p.add_argument("--eval-batches", type=int, default=8, help="per rank")
    p.add_argument("--data", default=os.path.join(HERE, "data"))
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=3600)
    return p.parse_args(argv)


class MoE(torch.nn.Module):
    """Top-2 MoE FFN; this rank holds experts [rank * El, (rank + 1) * El)."""

    def __init__(self, d, experts, world, rank):
        super().__init__()
        self.experts, self.world, self.rank = experts, world, rank
        self.local = experts // world
        self.router = torch.nn.Linear(d, experts, bias=False)
        self.ffn = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(),
                                torch.nn.Linear(4 * d, d)) for _ in range(self.local))

    def forward(self, x, comm, backward_comm):
        n, d = x.shape
        logits = self.router(x)
        probs = logits.softmax(-1)
        top_p, top_e = probs.topk(2, dim=-1)
        gates = top_p / top_p.sum(-1, keepdim=True)
        # Load balancing (Switch): fraction of routed rows times mean probability.
        frac = torch.bincount(top_e.flatten(), minlength=self.experts).float() / (2 * n)
        aux = self.experts * (frac * probs.mean(0)).sum()
        # Rows grouped by destination part (rank * El + local expert = expert).
        expert_of = top_e.flatten()
        order = torch.argsort(expert_of, stable=True)
        token_of = order // 2
        send = torch.bincount(expert_of, minlength=self.experts)
        counts = [torch.zeros_like(send) for _ in range(self.world)]
        dist.all_gather(counts, send)
        lo, hi = self.rank * self.local, (self.rank + 1) * self.local
        recv = torch.stack(counts)[:, lo:hi].flatten()  # [source rank][local expert]
        x_e, handle = lshmoe.dispatch(x[token_of], send.tolist(), recv.tolist(), comm,
                                      experts_per_rank=self.local, backward_comm=backward_comm)
        # x_e holds parts (source p, local expert l) back to back.
        starts = torch.cat([torch.zeros(1, dtype=torch.long), recv.cumsum(0)])
        pieces, index = [], []
        for l in range(self.local):
            rows = torch.cat([torch.arange(starts[p * self.local + l], starts[p * self.local + l + 1])
                              for p in range(self.world)])
            index.append(rows)
            pieces.append(self.ffn[l](x_e[rows]))
        index = torch.cat(index)
        y_e = torch.cat(pieces)[torch.argsort(index)]
        y_sorted = lshmoe.combine(y_e, handle)
        y_pairs = torch.empty_like(y_sorted).index_copy(0, order, y_sorted).view(n, 2, d)
        return (gates.unsqueeze(-1) * y_pairs).sum(1), aux


class Block(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(a.d_model)
        self.attn = torch.nn.MultiheadAttention(a.d_model, a.heads, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(a.d_model)
        self.moe = MoE(a.d_model, a.experts, a.world, a.rank)

    def forward(self, x, mask, comm, backward_comm):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        b, t, d = x.shape
        y, aux = self.moe(self.ln2(x).reshape(b * t, d), comm, backward_comm)
        return x + y.view(b, t, d), aux


class Model(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = torch.nn.Embedding(256, a.d_model)
        torch.nn.init.normal_(self.embed.weight, std=0.02)  # tied: logits start near zero
        self.pos = torch.nn.Parameter(torch.zeros(a.seq, a.d_model))
        self.blocks = torch.nn.ModuleList(Block(a) for _ in range(a.layers))
        self.ln = torch.nn.LayerNorm(a.d_model)
        self.register_buffer("mask", torch.triu(torch.full((a.seq, a.seq), float("-inf")), 1))

    def forward(self, tokens, comm, backward_comm=None):
        x = self.embed(tokens) + self.pos
        aux = 0.0
        for block in self.blocks:
            x, a = block(x, self.mask, comm, backward_comm)
            aux = aux + a
        return self.ln(x) @ self.embed.weight.t(), aux


def batches(data, a, rng):
    starts = torch.randint(0, len(data) - a.seq - 1, (a.batch,), generator=rng)
    chunk = torch.stack([data[s:s + a.seq + 1] for s in starts.tolist()]).long()
    return chunk[:, :-1], chunk[:, 1:]


def evaluate(model, heldout, a, comm):
    rng = torch.Generator().manual_seed(10_000 + a.rank)  # the same batches every time
    total = 0.0
    with torch.no_grad():
        for _ in range(a.eval_batches):
            x, y = batches(heldout, a, rng)
            logits, _ = model(x, comm)
            total += float(F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)))
    t = torch.tensor([total / a.eval_batches])
    dist.all_reduce(t)
    return float(t) / a.world


def run_rank(a):
    torch.set_num_threads(1)
    a.rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=a.rank, world_size=a.world)
    port = int(os.environ["MASTER_PORT"])
    settings = {"LSHMOE_ENABLE": "1" if a.compress == "on" else "0", "LSHMOE_RATIO": a.rho,
                "LSHMOE_COMPENSATE": a.alpha}
    comm = lshmoe.Communicator(settings, port=port + 1)
    raw = lshmoe.Communicator({"LSHMOE_ENABLE": "0"}, port=port + 2)  # held-out, uncompressed
    raw_backward = lshmoe.Communicator({"LSHMOE_ENABLE": "0"}, port=port + 3)
    backward_comm = {"exact": None, "raw": raw_backward, "pairs": comm}[a.backward]
    train = torch.frombuffer(bytearray(open(os.path.join(a.data, "train.txt"), "rb").read()),
                             dtype=torch.uint8)
    heldout = torch.frombuffer(bytearray(open(os.path.join(a.data, "heldout.txt"), "rb").read()),
                               dtype=torch.uint8)
    torch.manual_seed(a.seed)  # dense weights alike on every rank...
    model = Model(a)
    torch.manual_seed(a.seed * 1000 + 1 + a.rank)  # ...experts each their own
    for block in model.blocks:
        for ffn in block.moe.ffn:
            for m in ffn:
                if isinstance(m, torch.nn.Linear):
                    m.reset_parameters()
    dense = [p for n, p in model.named_parameters() if ".ffn." not in n]
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    rng = torch.Generator().manual_seed(a.seed * 7919 + a.rank)
    log = {"args": {k: v for k, v in vars(a).items() if k not in ("rank",)}, "train": [],
           "heldout": []}
    start = time.time()
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / 20) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches(train, a, rng)
        logits, aux = model(x, comm, backward_comm)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=False)
        (loss + a.aux * aux).backward()
        flat = torch.cat([p.grad.flatten() for p in dense])  # one all-reduce for all
        dist.all_reduce(flat)
        flat /= a.world
        at = 0
        for p in dense:
            p.grad.copy_(flat[at:at + p.numel()].view_as(p))
            at += p.numel()
        opt.step()
        t = loss.detach().clone()
        dist.all_reduce(t)
        log["train"].append([step, float(t) / a.world])
        if step % a.eval_every == 0 or step == a.steps:
            entry = {"step": step, "wall_s": time.time() - start,
                     "loss": evaluate(model, heldout, a, comm),
                     "loss_uncompressed": evaluate(model, heldout, a, raw)}
            log["heldout"].append(entry)
            if a.rank == 0:
                print(f"step {step:5d}  train {log['train'][-1][1]:.4f}  heldout "
                      f"{entry['loss']:.4f} (uncompressed {entry['loss_uncompressed']:.4f})  "
                      f"{entry['wall_s']:.0f} s", flush=True)
    # Training's bytes: every all-to-all of the steps (and of the held-out
    # passes with the run's own communicator), the raw backward's included.
    stats = [c.stats() for c in (comm, raw_backward)]
    totals = torch.tensor([sum(s["logical_bytes"] for s in stats),
                           sum(s["wire_bytes"] for s in stats)], dtype=torch.float64)
    dist.all_reduce(totals)
    log["wall_s"] = time.time() - start
    log["logical_bytes"], log["wire_bytes"] = float(totals[0]), float(totals[1])
    log["wire_ratio"] = log["wire_bytes"] / max(1.0, log["logical_bytes"])
    final = log["heldout"][-1]
    if not all(math.isfinite(v) for v in (final["loss"], final["loss_uncompressed"])):
        print(f"train: rank {a.rank}: the held-out loss is not finite", file=sys.stderr)
        return 1
    if a.rank == 0:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "log.json"), "w") as f:
            json.dump(log, f, indent=1)
        print(f"done: heldout {log['heldout'][-1]['loss']:.4f}, wire ratio "
              f"{log['wire_ratio']:.3f} (dispatch, combine and the backward's), "
              f"{log['wall_s']:.0f} s", flush=True)
    dist.destroy_process_group()
    return 0


def launch(a, argv):
    if a.experts % a.world:
        print(f"train: --experts {a.experts} is not a multiple of --world {a.world}",
              file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(a.data, "train.txt")):
        rc = subprocess.call([sys.executable, os.path.join(HERE, "corpus.py"), a.data])
        if rc:
            return rc
    from lshmoe.launch import run_local
    codes = run_local([sys.executable, os.path.abspath(__file__)] + argv, a.world, a.timeout,
                      env={"OMP_NUM_THREADS": "1",
                           "LSHMOE_CPU_THREADS": os.environ.get("LSHMOE_CPU_THREADS", "1")})
    if any(codes):
        print(f"train: rank exit codes {codes}", file=sys.stderr)
        return 1
    return 0


def main():
    argv = sys.argv[1:]
    a = parse_args(argv)
    return run_rank(a) if "RANK" in os.environ else launch(a, argv)


if __name__ == "__main__":
    sys.exit(main())
