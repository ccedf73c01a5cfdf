"""Time per training step of the Cityscapes and GLUE models on random inputs of the real shapes,
extrapolated to time per epoch (the README's estimates).

Cityscapes: dilated ResNet-50 + two ASPP heads, batch 8 of 3x128x256, 2,475 training images
-> 310 steps per epoch.  GLUE: randomly initialised RoBERTa-base (same cost as the pre-trained
one), one task's batch of 32 sequences; an MTL step runs 8 such batches and an epoch is one pass
over MNLI's ~391k training pairs -> ~12.2k steps, so per epoch = 8 x 12.2k x (one task's step).
Sequences are timed at length 128 (the padded maximum) and 64 (closer to GLUE's typical length
after the encoder trims padding).  Run: ``.venv/bin/python benchmarks/dense_nlp_step_time.py
[--device cuda] [--bf16] [--repeats 2]`` (``--bf16``: forward passes under bfloat16 autocast, as
``mixed_precision: bf16`` trains).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from mtlens.models.deeplab import ASPPHead, dilated_resnet


def step_seconds(model: torch.nn.Module, inputs, loss_fn, device: torch.device, bf16: bool, repeats: int) -> float:
    """Best wall time of ``repeats`` Adam steps after one warm-up step (GPU work synchronized)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 1):  # the first step is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = loss_fn(model, inputs)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "this CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}, bf16={args.bf16}")
    encoder = dilated_resnet(50)
    heads = torch.nn.ModuleList([ASPPHead(2048, 7, (128, 256)), ASPPHead(2048, 1, (128, 256))])
    model = torch.nn.ModuleDict({"encoder": encoder, "heads": heads}).to(device)
    images = torch.randn(8, 3, 128, 256, device=device)

    def dense_loss(m, x):
        features = m["encoder"](x)
        return sum(head(features).float().mean() for head in m["heads"])

    seconds = step_seconds(model, images, dense_loss, device, args.bf16, args.repeats)
    print(f"cityscapes: {seconds:.3f} s/step (batch 8) -> {seconds * 310 / 60:.2f} min/epoch on {where}")

    import transformers

    roberta = transformers.RobertaModel(transformers.RobertaConfig(), add_pooling_layer=False).to(device)
    for length in (128, 64):
        ids = torch.randint(5, 50000, (32, length), device=device)

        def nlp_loss(m, x):
            return m(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[:, 0].float().mean()

        seconds = step_seconds(roberta, ids, nlp_loss, device, args.bf16, max(1, args.repeats - 1))
        print(
            f"glue (length {length}): {seconds:.3f} s per task-batch of 32 -> "
            f"{seconds * 8 * 12_200 / 3600:.2f} h/epoch (8 tasks, MNLI-sized epoch) on {where}"
        )


if __name__ == "__main__":
    main()
