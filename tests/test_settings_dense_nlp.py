"""Cityscapes and GLUE: readers on tiny files in the real formats, task construction, label
mappings, corpus metrics against scikit-learn / scipy / brute force, and a training step."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from mtlens import RunStore, parse_config, train_run
from mtlens.data.cityscapes import BASELINE_M, FOCAL_PX, LABEL_ID_TO_CLASS, read_npy, read_official
from mtlens.data.glue import GLUE_TASKS, read_glue_task
from mtlens.data.registry import DatasetFormatError, DatasetMissingError
from mtlens.errors import MtlensError
from mtlens.models import build_model
from mtlens.settings import load_setting
from mtlens.settings.base import Split
from mtlens.tasks import CorpusMetric, Task, classification_task
from mtlens.tasks.dense import depth_task, segmentation_task
from mtlens.tasks.metrics import binary_f1, confusion_matrix, matthews, miou, pearson, pixel_accuracy, spearman
from mtlens.training.config import resolve_config
from mtlens.training.evaluate import evaluate_task

H, W = 16, 32


# -- corpus metrics ---------------------------------------------------------------------------
def _finalize(metric: CorpusMetric, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return metric.finalize(metric.statistics(outputs, targets).double())


def test_confusion_metrics_match_sklearn_and_brute_force():
    gen = torch.Generator().manual_seed(0)
    for n_classes in (2, 3):
        logits = torch.randn(200, n_classes, generator=gen)
        targets = torch.randint(0, n_classes, (200,), generator=gen)
        predicted = logits.argmax(1)
        assert _finalize(matthews(n_classes), logits, targets) == pytest.approx(
            matthews_corrcoef(targets.numpy(), predicted.numpy()), abs=1e-12
        )
    assert _finalize(binary_f1(), logits[:, :2], targets.clamp(max=1)) == pytest.approx(
        f1_score(targets.clamp(max=1).numpy(), logits[:, :2].argmax(1).numpy()), abs=1e-12
    )
    # mIoU / pixel accuracy on (N, C, H, W) logits with ignored pixels vs a per-class loop
    logits = torch.randn(3, 4, 5, 6, generator=gen)
    targets = torch.randint(-1, 3, (3, 5, 6), generator=gen)  # class 3 never a target, -1 ignored
    predicted, keep = logits.argmax(1), targets >= 0
    ious = []
    for c in range(4):
        inter = ((predicted == c) & (targets == c) & keep).sum().item()
        union = (((predicted == c) & keep) | (targets == c)).sum().item()
        if union:
            ious.append(inter / union)
    assert _finalize(miou(4), logits, targets) == pytest.approx(np.mean(ious), abs=1e-12)
    assert _finalize(pixel_accuracy(4), logits, targets) == pytest.approx(
        (predicted == targets)[keep].float().mean().item(), abs=1e-7
    )
    assert confusion_matrix(predicted, targets, 4).sum() == keep.sum()


def test_correlations_match_scipy_and_evaluator_accumulates_over_batches():
    gen = torch.Generator().manual_seed(1)
    outputs, targets = torch.randn(50, 1, generator=gen), torch.rand(50, generator=gen) * 5
    assert _finalize(pearson(), outputs, targets) == pytest.approx(
        np.corrcoef(outputs[:, 0].numpy(), targets.numpy())[0, 1], abs=1e-6
    )
    assert _finalize(spearman(), outputs, targets) == pytest.approx(
        stats.spearmanr(outputs[:, 0].numpy(), targets.numpy()).statistic, abs=1e-6
    )
    # Corpus metrics over a split evaluated in batches of 7 equal the metric on the whole split.
    task = classification_task("t", 3)
    task = Task(**{**task.__dict__, "corpus_metrics": {"mcc": matthews(3), "iou": miou(3)}, "selection_metric": "mcc"})
    x, y = torch.randn(40, 5, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    model = build_model(lambda: torch.nn.Identity(), 5, [task], seed=0)
    scores = evaluate_task(model, task, Split(x, y), torch.device("cpu"), batch_size=7)
    logits = model(x)["t"]
    assert list(scores) == task.metric_names == ["loss", "accuracy", "error", "mcc", "iou"]
    assert scores["mcc"] == pytest.approx(matthews_corrcoef(y.numpy(), logits.argmax(1).numpy()), abs=1e-9)
    assert scores["iou"] == pytest.approx(_finalize(miou(3), logits, y), abs=1e-12)
    with pytest.raises(ValueError, match="clash"):
        Task(**{**task.__dict__, "corpus_metrics": {"accuracy": matthews(3)}})
    with pytest.raises(ValueError, match="selection_metric"):
        Task(**{**task.__dict__, "selection_metric": "nope"})


# -- dense losses -------------------------------------------------------------------------------
def test_dense_losses_match_per_image_loops_and_samplers():
    gen = torch.Generator().manual_seed(2)
    seg, depth = segmentation_task("s", 4, head=lambda d: None), depth_task("d", head=lambda d: None)
    logits, labels = torch.randn(3, 4, 5, 6, generator=gen), torch.randint(-1, 4, (3, 5, 6), generator=gen)
    labels[2] = -1  # an image without labels has loss 0
    expected = []
    for i in range(3):
        terms = [
            -torch.log_softmax(logits[i, :, r, c], 0)[labels[i, r, c]]
            for r in range(5)
            for c in range(6)
            if labels[i, r, c] >= 0
        ]
        expected.append(torch.stack(terms).mean() if terms else torch.tensor(0.0))
    torch.testing.assert_close(seg.loss(logits, labels), torch.stack(expected))
    pred, target = torch.randn(3, 1, 5, 6, generator=gen), torch.rand(3, 1, 5, 6, generator=gen) + 0.5
    target[0, 0, :2] = 0  # missing depth
    valid = target != 0
    expected = torch.stack([(pred[i] - target[i]).abs()[valid[i]].mean() for i in range(3)])
    torch.testing.assert_close(depth.loss(pred, target), expected)
    errs = {k: _finalize(m, pred, target) for k, m in depth.corpus_metrics.items()}
    assert errs["abs_err"] == pytest.approx((pred - target).abs()[valid].mean().item(), rel=1e-6)
    assert errs["rel_err"] == pytest.approx(((pred - target).abs() / target)[valid].mean().item(), rel=1e-6)
    # Samplers: per-pixel categorical frequencies and unit Laplace noise (E|e| = 1, Var e = 2).
    sample_gen = torch.Generator().manual_seed(3)
    two = torch.log(torch.tensor([0.2, 0.8])).reshape(1, 2, 1, 1).expand(1, 2, 100, 100)
    assert seg.sample_labels(two, sample_gen).float().mean().item() == pytest.approx(0.8, abs=0.02)
    noise = depth.sample_labels(torch.zeros(1, 1, 200, 200), sample_gen)
    assert noise.abs().mean().item() == pytest.approx(1.0, abs=0.03)
    assert noise.var().item() == pytest.approx(2.0, abs=0.1)


# -- Cityscapes ---------------------------------------------------------------------------------
def _write_official(root: Path, gen: np.random.Generator) -> dict[str, list]:
    written: dict[str, list] = {}
    for split, n in (("train", 3), ("val", 2)):
        for k in range(n):
            city = "aachen" if k % 2 == 0 else "bremen"
            stem = f"{city}_000000_{k:06d}"
            image = gen.integers(0, 256, (H, W, 3), dtype=np.uint8)
            label_ids = gen.integers(0, 34, (H, W), dtype=np.uint8)
            disparity = gen.integers(0, 30000, (H, W)).astype(np.uint16)
            disparity[0, :3] = (0, 1, 257)  # unknown, zero disparity, d = 1 px
            for top, name, array in (
                ("leftImg8bit", "leftImg8bit", image),
                ("gtFine", "gtFine_labelIds", label_ids),
                ("disparity", "disparity", disparity),
            ):
                (root / top / split / city).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / top / split / city / f"{stem}_{name}.png")
            written.setdefault(split, []).append((stem, image, label_ids, disparity))
    return written


def test_cityscapes_official_reader_maps_labels_and_disparity(tmp_path):
    written = _write_official(tmp_path, np.random.default_rng(0))
    arrays = read_official(tmp_path, "train", (H, W))
    order = sorted(written["train"], key=lambda w: w[0])  # files are read sorted by city then stem
    for i, (_, image, label_ids, disparity) in enumerate(order):
        assert torch.equal(arrays.images[i], torch.from_numpy(image).permute(2, 0, 1))
        expected = np.vectorize(lambda v: LABEL_ID_TO_CLASS.get(int(v), -1))(label_ids)
        assert np.array_equal(arrays.labels[i].numpy(), expected)
        depth = arrays.depth[i, 0].numpy()
        assert depth[0, 0] == 0 and depth[0, 1] == 0
        assert depth[0, 2] == pytest.approx(BASELINE_M * FOCAL_PX, rel=1e-6)
        valid = disparity > 1
        np.testing.assert_allclose(depth[valid], BASELINE_M * FOCAL_PX * 256 / (disparity[valid] - 1.0), rtol=1e-6)
    assert LABEL_ID_TO_CLASS[7] == 0 and LABEL_ID_TO_CLASS[23] == 4 and LABEL_ID_TO_CLASS[33] == 6
    assert LABEL_ID_TO_CLASS[0] == -1 and sorted(set(LABEL_ID_TO_CLASS.values())) == list(range(-1, 7))
    assert read_official(tmp_path, "train", (8, 16)).labels.shape == (3, 8, 16)


def _write_npy(root: Path) -> dict:
    gen = np.random.default_rng(1)
    stored = {}
    for split, n in (("train", 4), ("val", 2)):
        for sub in ("image", "label", "depth"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            image = gen.random((H, W, 3))
            label = gen.integers(-1, 7, (H, W)).astype(np.float64)
            depth = gen.random((H, W, 1)) * (gen.random((H, W, 1)) > 0.2)
            for sub, array in (("image", image), ("label", label), ("depth", depth)):
                np.save(root / split / sub / f"{i}.npy", array)
            stored[(split, i)] = (image, label, depth)
    return stored


def test_cityscapes_npy_reader_and_setting_step(tmp_path):
    stored = _write_npy(tmp_path)
    arrays = read_npy(tmp_path, "train", (H, W))
    image, label, depth = stored[("train", 3)]
    assert torch.equal(arrays.images[3], torch.from_numpy(np.round(image * 255).astype(np.uint8)).permute(2, 0, 1))
    assert torch.equal(arrays.labels[3].long(), torch.from_numpy(label).long())
    torch.testing.assert_close(arrays.depth[3, 0], torch.from_numpy(depth[..., 0]).float())

    setting = load_setting("cityscapes", root=str(tmp_path), size=(H, W), n_val=1, resnet_depth=18, width=4)
    assert setting.task_names == ["segmentation", "depth"]
    seg_data, depth_data = setting.data["segmentation"], setting.data["depth"]
    assert seg_data.source == depth_data.source  # single-input MTL
    assert (len(seg_data.train), len(seg_data.val), len(seg_data.test)) == (3, 1, 2)
    rows = torch.arange(2)
    batch = seg_data.train.inputs[rows]
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, H, W) and 0 <= batch.min() <= batch.max() <= 1
    assert seg_data.train.targets[rows].dtype == torch.int64
    _training_step(
        setting,
        {t: (setting.data[t].train.inputs[rows], setting.data[t].train.targets[rows]) for t in setting.task_names},
    )
    with pytest.raises(DatasetMissingError, match="neither"):
        load_setting("cityscapes", root=str(tmp_path / "nothing"))


def test_cityscapes_trains_and_records_corpus_metrics(tmp_path):
    _write_npy(tmp_path / "data")
    options = {"root": str(tmp_path / "data"), "size": [H, W], "n_val": 1, "resnet_depth": 18, "width": 4}
    config = parse_config({"setting": "cityscapes", "setting_options": options, "epochs": 1, "batch_size": 2})
    store = RunStore(tmp_path / "runs")
    assert train_run(config, store, progress=False) == "finished"
    rows = store.trajectory(resolve_config(config).run_id)
    quantities = set(zip(rows["task"], rows["quantity"]))
    splits = ("train", "val", "test")
    assert {("segmentation", f"{s}/{m}") for s in splits for m in ("loss", "miou", "pixel_accuracy")} <= quantities
    assert {("depth", f"{s}/{m}") for s in splits for m in ("loss", "abs_err", "rel_err")} <= quantities
    info = store.task_info()
    assert info[("cityscapes", "segmentation")]["selection_metric"] == "miou"
    assert info[("cityscapes", "segmentation")]["lower_is_better"]["miou"] is False
    assert info[("cityscapes", "depth")]["lower_is_better"]["rel_err"] is True


def _training_step(setting, batches):
    """One forward/backward step of the MTL model; every parameter gets a finite gradient; evaluation
    reports every metric name."""
    torch.manual_seed(0)
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, seed=0)
    loss = sum(setting.task(t).loss(model(x, [t])[t], y).mean() for t, (x, y) in batches.items())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.shared_parameters() for g in [g.grad])
    for task in setting.tasks:
        scores = evaluate_task(model, task, setting.data[task.name].val, torch.device("cpu"), batch_size=2)
        assert list(scores) == task.metric_names and all(np.isfinite(v) for v in scores.values())


# -- GLUE -------------------------------------------------------------------------------------------
GLUE_FILES = {
    "CoLA": {"header": None, "row": lambda i: ["gj04", str(i % 2), "*" if i % 2 == 0 else "", f"the cat sat {i}"]},
    "SST-2": {"header": ["sentence", "label"], "row": lambda i: [f"a fine film {i}", str(i % 2)]},
    "MRPC": {
        "header": ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        "row": lambda i: [str(i % 2), "1", "2", f"he said {i}", f"she said {i}"],
    },
    "QQP": {
        "header": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        "row": lambda i: [str(i), "1", "2", f"why {i}?", f"how {i}?", str(i % 2)],
    },
    "STS-B": {
        "header": [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        "row": lambda i: [str(i), "g", "f", "y", "o", "s1", "s2", f"a man {i}", f"a dog {i}", f"{i % 6}.000"],
    },
    "MNLI": {
        "header": [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        "row": lambda i: [
            str(i),
            "p",
            "q",
            "fiction",
            "(",
            "(",
            "(",
            "(",
            f"premise {i}",
            f"hyp {i}",
            "x",
            ("entailment", "neutral", "contradiction")[i % 3],
        ],
    },
    "QNLI": {
        "header": ["index", "question", "sentence", "label"],
        "row": lambda i: [str(i), f"what {i}?", f"this {i}.", ("entailment", "not_entailment")[i % 2]],
    },
    "RTE": {
        "header": ["index", "sentence1", "sentence2", "label"],
        "row": lambda i: [str(i), f"it rains {i}", f"it is wet {i}", ("entailment", "not_entailment")[i % 2]],
    },
}


def _write_glue(root: Path, n: int = 12) -> None:
    for directory, layout in GLUE_FILES.items():
        (root / directory).mkdir(parents=True)
        dev_names = ("dev_matched", "dev_mismatched") if directory == "MNLI" else ("dev",)
        for name, offset in (("train", 0), *((d, 100) for d in dev_names)):
            lines = [] if layout["header"] is None else ["\t".join(layout["header"])]
            lines += ["\t".join(layout["row"](offset + i)) for i in range(n)]
            if directory == "QQP":
                lines.append("999\tbroken line")  # malformed rows are skipped
            (root / directory / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_glue_readers_columns_and_label_mappings(tmp_path):
    _write_glue(tmp_path)
    assert sorted(GLUE_TASKS) == sorted(["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"])
    cola = read_glue_task(tmp_path, "cola", "train")
    assert cola.texts[3] == ("the cat sat 3",) and cola.labels.tolist()[:4] == [0, 1, 0, 1]
    mrpc = read_glue_task(tmp_path, "mrpc", "dev")
    assert mrpc.texts[1] == ("he said 101", "she said 101") and mrpc.labels[1] == 1
    with pytest.warns(UserWarning, match="QQP/train.tsv: skipped 1 row.* header's 6 .*first: line 14"):
        qqp = read_glue_task(tmp_path, "qqp", "train")
    assert len(qqp) == 12 and qqp.texts[5] == ("why 5?", "how 5?")
    stsb = read_glue_task(tmp_path, "stsb", "train")
    assert stsb.labels.dtype == torch.float32 and stsb.labels[5] == 5.0 and stsb.texts[0] == ("a man 0", "a dog 0")
    mnli = read_glue_task(tmp_path, "mnli", "dev_mismatched")
    assert mnli.labels.tolist()[:3] == [1, 2, 0] and mnli.texts[0] == ("premise 100", "hyp 100")
    for task in ("qnli", "rte"):
        assert read_glue_task(tmp_path, task, "train").labels.tolist()[:2] == [0, 1]


def test_glue_rows_end_only_at_newlines(tmp_path):
    """Rows were split with str.splitlines, which also breaks at U+2028, U+0085, \\x1c-\\x1e, \\v, \\f and a lone
    \\r: a sentence holding one was cut in two and its label kept with the first part (audit C)."""
    breaks = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\v", "\f", "\r"]
    rows = [f"first{c}second\t{i % 2}" for i, c in enumerate(breaks)]
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_bytes(("sentence\tlabel\r\n" + "\r\n".join(rows) + "\r\n").encode())
    sst2 = read_glue_task(tmp_path, "sst2", "train")
    assert sst2.texts == [(f"first{c}second",) for c in breaks]
    assert sst2.labels.tolist() == [i % 2 for i in range(len(breaks))]


STSB_HEADER = "\t".join(GLUE_FILES["STS-B"]["header"])


def _stsb(score: str) -> str:
    return STSB_HEADER + "\n" + "\t".join(GLUE_FILES["STS-B"]["row"](0)[:-1] + [score]) + "\n"


GLUE_DAMAGES = {
    # (task, file, content, message)
    "empty file": ("qnli", "QNLI/train.tsv", "", "QNLI/train.tsv: empty; expected a header line"),
    "empty score": ("stsb", "STS-B/dev.tsv", _stsb(""), "STS-B/dev.tsv, line 2: score '' is not a number in"),
    "score nan": ("stsb", "STS-B/dev.tsv", _stsb("nan"), r"line 2: score 'nan' is not a number in \[0, 5\]"),
    "score 7.5": ("stsb", "STS-B/dev.tsv", _stsb("7.5"), r"line 2: score '7.5' is not a number in \[0, 5\]"),
    "score -0.5": ("stsb", "STS-B/dev.tsv", _stsb("-0.5"), r"line 2: score '-0.5' is not a number in \[0, 5\]"),
    "empty label": (
        "rte",
        "RTE/train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\t\n",
        r"RTE/train.tsv, line 3: unknown label '' \(1 such row\(s\)\)",
    ),
    "column missing": ("rte", "RTE/train.tsv", "index\tsentence1\tlabel\n", r"lacks column\(s\) \['sentence2'\]"),
    "header only": ("rte", "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n", "RTE/train.tsv: no examples"),
}


@pytest.mark.parametrize("damage", list(GLUE_DAMAGES))
def test_a_malformed_glue_file_is_refused_naming_file_and_line(tmp_path, damage):
    """An empty file was an IndexError, an empty STS-B score a bare ValueError, scores outside [0, 5] (nan too)
    were read as targets; unknown labels and missing columns were ValueErrors without a line (audit C)."""
    task, name, content, message = GLUE_DAMAGES[damage]
    (tmp_path / name).parent.mkdir()
    (tmp_path / name).write_text(content, encoding="utf-8")
    split = name.split("/")[1].removesuffix(".tsv")
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_glue_task(tmp_path, task, split)
    assert str(tmp_path / name) in str(info.value)


def _bytes_to_unicode() -> list[str]:
    """GPT-2's reversible byte -> printable character map (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


@pytest.fixture
def tiny_roberta(tmp_path) -> Path:
    """A tiny random RoBERTa: byte-level tokenizer without merges and a 1-layer, width-16 config."""
    import transformers

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *_bytes_to_unicode(), "<mask>"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    model_dir = tmp_path / "tiny-roberta"
    transformers.RobertaTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(model_dir)
    transformers.RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    ).save_pretrained(model_dir)
    return model_dir


def test_glue_setting_tokenizes_and_trains(tmp_path, tiny_roberta):
    _write_glue(tmp_path / "glue")
    with pytest.warns(UserWarning, match="QQP/(train|dev).tsv: skipped 1 row"):
        setting = load_setting(
            "glue",
            root=str(tmp_path / "glue"),
            model_name=str(tiny_roberta),
            pretrained=False,
            max_length=48,
            val_fraction=0.25,
        )
    assert setting.task_names == list(GLUE_TASKS)
    rte = setting.data["rte"]
    assert (len(rte.train), len(rte.val), len(rte.test)) == (9, 3, 12)
    ids = rte.test.inputs[torch.tensor([0])]
    assert ids.shape == (1, 2, 48) and ids[0, 0, 0] == 0  # <s> first
    # RoBERTa's pair template <s> a </s></s> b </s>, one token per byte of "it rains 100", "it is wet 100"
    assert ids[0, 1].sum() == 12 + 13 + 4 and ids[0, 0, [13, 14, 28]].tolist() == [2, 2, 2]
    assert ids[0, 0, 29:].eq(1).all()  # <pad>
    assert setting.task("cola").selection_metric == "matthews" and setting.task("stsb").selection_metric == "pearson"
    assert setting.task("mrpc").corpus_metrics.keys() == {"f1"}
    assert setting.task("mnli").metrics.keys() == {"accuracy", "error"}
    rows = torch.arange(4)
    _training_step(
        setting,
        {t: (setting.data[t].train.inputs[rows], setting.data[t].train.targets[rows]) for t in setting.task_names},
    )


def test_glue_requires_only_the_selected_tasks_files(tmp_path, tiny_roberta, monkeypatch):
    """With tasks=('sst2',) the setting refused to load unless all eight tasks' files (and both MNLI dev
    files) were in $MTLENS_DATA/glue (audit C)."""
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    _write_glue(tmp_path / "glue")
    for path in (tmp_path / "glue").iterdir():
        if path.name not in ("SST-2", "MNLI"):
            shutil.rmtree(path)
    (tmp_path / "glue" / "MNLI" / "dev_matched.tsv").unlink()
    options = {"model_name": str(tiny_roberta), "pretrained": False, "max_length": 16}
    assert load_setting("glue", tasks=("sst2",), **options).task_names == ["sst2"]
    setting = load_setting("glue", tasks=("sst2", "mnli"), mnli_test="mismatched", **options)
    assert len(setting.data["mnli"].test) == 12
    with pytest.raises(DatasetMissingError, match=r"not found: MNLI/dev_matched\.tsv\. "):  # that file only
        load_setting("glue", tasks=("mnli",), **options)


def test_glue_without_transformers_imports_and_fails_only_when_used(tmp_path, monkeypatch):
    _write_glue(tmp_path / "glue")
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    from mtlens.settings import available_settings

    assert "glue" in available_settings()
    with pytest.raises(MtlensError, match=r"pip install 'mtlens\[nlp\]'"):
        load_setting("glue", root=str(tmp_path / "glue"), tasks=("rte",))


def test_glue_missing_model_is_one_clear_error(tmp_path):
    _write_glue(tmp_path / "glue")
    with pytest.raises(Exception, match="huggingface-cli download") as info:
        load_setting("glue", root=str(tmp_path / "glue"), model_name=str(tmp_path / "no-model"), tasks=("rte",))
    assert isinstance(info.value, MtlensError)


def test_bf16_mixed_precision_trains_with_its_own_run_id(tmp_path):
    raw = {
        "setting": "digits_pair",
        "epochs": 1,
        "batch_size": 32,
        "train_eval_size": 64,
        "setting_options": {"n_train": 128, "n_val": 32, "n_test": 32},
    }
    full, mixed = parse_config(raw), parse_config({**raw, "mixed_precision": "bf16"})
    assert "mixed_precision" not in full.identity() and mixed.identity()["mixed_precision"] == "bf16"
    store = RunStore(tmp_path)
    values = {}
    for config in (full, mixed):
        assert train_run(config, store, progress=False) == "finished"
        rows = store.trajectory(resolve_config(config).run_id)
        values[config.mixed_precision] = rows.sort_values(["task", "step", "quantity"])["value"].to_numpy()
    assert np.isfinite(values["bf16"]).all() and not np.array_equal(values["off"], values["bf16"])


@pytest.mark.parametrize("name", ["cityscapes", "glue"])
def test_config_files_are_valid(name):
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[1] / "configs" / f"{name}.yaml").read_text())
    config = parse_config({**raw, "setting": name})
    assert config.setting == name and config.lr is not None


def test_missing_datasets_say_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    with pytest.raises(DatasetMissingError) as city:
        load_setting("cityscapes")
    message = str(city.value)
    assert str(tmp_path / "cityscapes") in message and "cityscapes-dataset.com" in message
    assert "gtFine_trainvaltest.zip" in message and "cityscapes_npy" in message
    with pytest.raises(DatasetMissingError) as glue_missing:
        load_setting("glue")
    assert str(tmp_path / "glue") in str(glue_missing.value) and "CoLA/train.tsv" in str(glue_missing.value)
    _write_npy(tmp_path / "cityscapes_npy")  # the preprocessed layout in its registry directory is found
    assert len(load_setting("cityscapes", size=(H, W), n_val=1, resnet_depth=18, width=4).data["depth"].test) == 2
