"""Time per training step of the Cityscapes and GLUE models on random inputs of the real shapes,
extrapolated to time per epoch (the README's estimates).

Cityscapes: dilated ResNet-50 + two ASPP heads, batch 8 of 3x128x256, 2,475 training images
-> 310 steps per epoch.  GLUE: randomly initialised RoBERTa-base (same cost as the pre-trained
one), one task's batch of 32 sequences; an MTL step runs 8 such batches and an epoch is one pass
over MNLI's ~391k training pairs -> ~12.2k steps, so per epoch = 8 x 12.2k x (one task's step).
Sequences are timed at length 128 (the padded maximum) and 64 (closer to GLUE's typical length
after the encoder trims padding).  Run: ``.venv/bin/python benchmarks/dense_nlp_step_time.py``.
"""

from __future__ import annotations

import time

import torch

from mtlens.deeplab import ASPPHead, dilated_resnet


def step_seconds(model: torch.nn.Module, inputs, loss_fn, repeats: int = 2) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 1):  # the first step is a warm-up
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model, inputs).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    encoder = dilated_resnet(50)
    heads = torch.nn.ModuleList([ASPPHead(2048, 7, (128, 256)), ASPPHead(2048, 1, (128, 256))])
    model = torch.nn.ModuleDict({"encoder": encoder, "heads": heads})
    images = torch.randn(8, 3, 128, 256)

    def dense_loss(m, x):
        features = m["encoder"](x)
        return sum(head(features).float().mean() for head in m["heads"])

    seconds = step_seconds(model, images, dense_loss)
    print(f"cityscapes: {seconds:.2f} s/step (batch 8) -> {seconds * 310 / 60:.1f} min/epoch on this CPU")

    import transformers

    roberta = transformers.RobertaModel(transformers.RobertaConfig(), add_pooling_layer=False)
    for length in (128, 64):
        ids = torch.randint(5, 50000, (32, length))

        def nlp_loss(m, x):
            return m(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[:, 0].mean()

        seconds = step_seconds(roberta, ids, nlp_loss, repeats=1)
        print(f"glue (length {length}): {seconds:.2f} s per task-batch of 32 -> "
              f"{seconds * 8 * 12_200 / 3600:.0f} h/epoch (8 tasks, MNLI-sized epoch) on this CPU")


if __name__ == "__main__":
    main()
