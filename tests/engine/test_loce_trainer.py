"""LOCE's training side: class-balanced memory pre-fill, per-step memory batches, freezing for the
decoupled fine-tune, the stage-2 ConfigError, and a tiny stage 1 -> stage 2 run end to end."""

import argparse
import json
import os
import types

import pytest
import torch
from conftest import TINY_INPUT
from detectron2.data import DatasetCatalog, get_detection_dataset_dicts
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage
from tiny_models import fixed_batched_inputs, random_batched_inputs, tiny_cfg
from torch import nn

from libra_d2.engine import ConfigError, LibraTrainer, setup_cfg
from libra_d2.engine.loce import (
    FeatureMemoryHook,
    LOCEFineTune,
    check_finetune_weights,
    checkpoint_has_mean_scores,
    class_balanced_image_indices,
)
from libra_d2.modeling.freeze import freeze_modules, is_frozen_norm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1 = "configs/LT-Shapes/loce_mask_rcnn_R_18_FPN_tiny_stage1.yaml"
STAGE2 = "configs/LT-Shapes/loce_mask_rcnn_R_18_FPN_tiny_stage2.yaml"
FASTER_STAGE1 = "configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml"
LAZY_STAGE2 = "configs/LT-Shapes/lazy/loce_faster_rcnn_R_18_FPN_tiny_stage2.py"
C = 32


def stage2_cfg(*opts):
    return tiny_cfg(
        "MODEL.ROI_HEADS.NAME",
        "LOCEROIHeads",
        "MODEL.LOCE.FINETUNE",
        True,
        "MODEL.LOCE.EQUILIBRIUM_LOSS",
        True,
        "MODEL.LOCE.MFS.ENABLED",
        True,
        *opts,
    )


def _assert_stage2_trained(s1, s2, metrics):
    """A stage-2 run in ``s2`` fine-tuned stage 1's ``s1`` checkpoint with MFS: memory rows and mean
    scores logged every step, backbone and box FCs (BN statistics included) unchanged, the
    classifier and the mean scores trained, the same checkpoint keys."""
    assert metrics and all(m["loce/memory_rows"] == 32 for m in metrics)
    assert all("loce/mean_score/all" in m for m in metrics)
    w1 = torch.load(s1 / "model_final.pth", map_location="cpu")["model"]
    w2 = torch.load(s2 / "model_final.pth", map_location="cpu")["model"]
    assert set(w1) == set(w2)
    for k in w1:
        if k.startswith("backbone.") or k.startswith("roi_heads.box_head."):
            assert torch.equal(w1[k], w2[k]), k  # frozen, BN statistics included
    assert not torch.equal(
        w1["roi_heads.box_predictor.cls_score.weight"],
        w2["roi_heads.box_predictor.cls_score.weight"],
    )
    assert not torch.equal(
        w2["roi_heads.box_predictor.mean_score.score"], torch.full((C + 1,), 0.01)
    )


def test_class_balanced_image_indices():
    dicts = [
        {"annotations": [{"category_id": c} for c in cats]}
        for cats in ([0, 0, 1], [0], [0], [0, 2], [0], [1])
    ]
    idx = class_balanced_image_indices(dicts, 4, images_per_class=2, seed=0)
    assert len(idx) == len(set(idx))
    per_class = [
        sum(1 for i in idx if any(a["category_id"] == c for a in dicts[i]["annotations"]))
        for c in range(4)
    ]
    assert per_class[1] == 2 and per_class[2] == 1 and per_class[3] == 0  # all there is
    assert per_class[0] >= 2 and len(idx) <= 2 + 2 + 1  # 0 rides along with 1 / 2 when possible


def test_prefill_fills_the_memory_class_balanced(lt_shapes_tiny):
    cfg = stage2_cfg("MODEL.LOCE.MFS.PREFILL_IMAGES_PER_CLASS", 2)
    torch.manual_seed(0)
    model = LibraTrainer.build_model(cfg)
    model.train()
    hook = FeatureMemoryHook(cfg, queue_size=80, prefill_images_per_class=2, device="")
    hook.trainer = types.SimpleNamespace(model=nn.parallel.DataParallel(model))  # unwrapped too
    bn = model.backbone.bottom_up.stem.conv1.norm
    before = bn.running_mean.clone()
    hook.before_train()
    memory = model.roi_heads.memory
    assert memory is hook.memory and model.training  # training mode restored
    assert torch.equal(bn.running_mean, before)
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=True)
    present = sorted({a["category_id"] for d in dicts for a in d["annotations"]})
    assert memory.available().nonzero().flatten().tolist() == present
    # every present class got >= 2 images' worth (16 rows per GT), the tail as much as the head
    assert int(memory.count[present].min()) >= min(32, 80)
    # per-step sampling: k classes x m rows, handed to the ROI heads
    with EventStorage() as storage:
        hook.trainer.storage = storage
        hook.before_step()
        assert storage.history("loce/memory_rows").latest() == 8 * 4
    batch = model.roi_heads._memory_batch
    assert batch.features.shape == (32, 64, 7, 7) and batch.targets.shape == (32, 4)
    assert set(batch.labels.tolist()) <= set(present)


def test_freezing_is_exact_and_keeps_bn_statistics():
    # BatchNorm that trains (the from-scratch recipe's), so that freezing has statistics to keep
    cfg = stage2_cfg(
        "MODEL.MASK_ON", True, "MODEL.ROI_MASK_HEAD.CONV_DIM", 8, "MODEL.RESNETS.NORM", "BN"
    )
    torch.manual_seed(0)
    model = LibraTrainer.build_model(cfg)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expect = {
        n
        for n, _ in model.named_parameters()
        if n.startswith("backbone.") or n.startswith("roi_heads.box_head.")
    }
    assert frozen == expect and expect
    trainable = {
        n.split(".")[0] + "." + n.split(".")[1]
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    assert trainable == {
        "proposal_generator.rpn_head",
        "roi_heads.box_predictor",
        "roi_heads.mask_head",
    }
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(is_frozen_norm(m) for m in bns)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    optimizer = build_optimizer(cfg, model)
    model.train()  # what the trainer (and the evaluation's restore) calls
    assert not any(m.training for m in bns) and model.roi_heads.box_predictor.training
    with EventStorage():
        loss = sum(model(random_batched_inputs(with_masks=True)).values())
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    # the same step without freezing moves the statistics (so this test can fail)
    torch.manual_seed(0)
    plain = LibraTrainer.build_model(
        tiny_cfg("MODEL.ROI_HEADS.NAME", "LOCEROIHeads", "MODEL.RESNETS.NORM", "BN")
    )
    plain.train()
    with EventStorage():
        plain(fixed_batched_inputs())
    changed = [
        k
        for k, v in plain.state_dict().items()
        if "running_mean" in k and k in stats and not torch.equal(v, stats[k])
    ]
    assert changed
    # state_dict keys are those of the unfrozen model: stage-1 checkpoints load as they are
    assert set(plain.state_dict()) == set(model.state_dict()) - {
        k for k in model.state_dict() if "mask_head" in k
    }
    with pytest.raises(ValueError, match="no such module"):
        freeze_modules(model, ["roi_heads.box_heads"])


def test_stage2_without_weights_is_a_config_error(lt_shapes_tiny, tmp_path):
    args = argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, STAGE2),
        opts=["MODEL.WEIGHTS", "", "OUTPUT_DIR", str(tmp_path), "DATASETS.TEST", "()", *TINY_INPUT],
    )
    with pytest.raises(ConfigError, match="MODEL.WEIGHTS is empty"):  # at set-up: nothing written
        setup_cfg(args, do_default_setup=False)
    # a checkpoint to resume from in OUTPUT_DIR is enough
    (tmp_path / "last_checkpoint").write_text("model_0000001.pth")
    cfg = setup_cfg(args, do_default_setup=False)
    check_finetune_weights(cfg)
    (tmp_path / "last_checkpoint").unlink()
    with pytest.raises(ConfigError, match="MODEL.WEIGHTS is empty"):  # and the trainer checks too
        LibraTrainer(cfg)


@pytest.mark.parametrize("reset", [True, False])
def test_stage2_from_a_checkpoint_without_mean_scores(tmp_path, caplog, reset):
    """A plain Faster R-CNN checkpoint has no LOCE mean scores: with the reset (default) stage 2
    says it starts from fresh scores; keeping the stage-1 scores is refused."""
    from detectron2.modeling import build_model

    plain = tmp_path / "plain.pth"
    torch.save({"model": build_model(tiny_cfg()).state_dict()}, plain)
    cfg = stage2_cfg("MODEL.WEIGHTS", str(plain), "MODEL.LOCE.RESET_SCORES_AT_START", reset)
    hook = LOCEFineTune(cfg, reset_scores=reset)
    hook.trainer = types.SimpleNamespace(model=build_model(cfg), start_iter=0)
    if reset:
        with caplog.at_level("INFO", logger="libra_d2.engine.loce"):
            hook.before_train()
        assert "holds no LOCE mean scores" in caplog.text and "fresh scores" in caplog.text
    else:
        with pytest.raises(ConfigError, match="holds none.*not a LOCE stage-1 checkpoint"):
            hook.before_train()
    # a LOCE checkpoint is told apart
    loce = tmp_path / "loce.pth"
    torch.save({"model": hook.trainer.model.state_dict()}, loce)
    assert checkpoint_has_mean_scores(str(loce)) and not checkpoint_has_mean_scores(str(plain))


def test_stage2_asks_the_checkpointer_before_reading_the_file(tmp_path):
    """With the trainer's checkpointer at hand, stage 2 takes the loaded keys from it (the file
    is not read again): here it says the mean scores were loaded, the file (a plain Faster R-CNN
    checkpoint) would say they were not."""
    from detectron2.modeling import build_model

    from libra_d2.engine.loce import MEAN_SCORE_KEY

    plain = tmp_path / "plain.pth"
    torch.save({"model": build_model(tiny_cfg()).state_dict()}, plain)
    cfg = stage2_cfg("MODEL.WEIGHTS", str(plain), "MODEL.LOCE.RESET_SCORES_AT_START", False)
    hook = LOCEFineTune(cfg)
    checkpointer = types.SimpleNamespace(loaded_model_keys=frozenset({MEAN_SCORE_KEY}))
    hook.trainer = types.SimpleNamespace(
        model=build_model(cfg), start_iter=0, checkpointer=checkpointer
    )
    hook.before_train()  # keeps the loaded scores: no error
    checkpointer.loaded_model_keys = frozenset()
    with pytest.raises(ConfigError, match="holds none"):
        hook.before_train()


def test_tiny_stage1_then_stage2_end_to_end(run_script, tmp_path):
    s1, s2 = tmp_path / "stage1", tmp_path / "stage2"
    no_eval = ["DATASETS.TEST", "()"]
    run_script(
        "projects/train_net.py",
        "--config-file",
        STAGE1,
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        str(s1),
        *no_eval,
        *TINY_INPUT,
    )
    proc = run_script(
        "projects/train_net.py",
        "--config-file",
        STAGE2,
        "SOLVER.MAX_ITER",
        "3",
        "MODEL.WEIGHTS",
        str(s1 / "model_final.pth"),
        "MODEL.LOCE.LOG_PERIOD",
        "1",
        "MODEL.LOCE.MFS.PREFILL_IMAGES_PER_CLASS",
        "1",
        "OUTPUT_DIR",
        str(s2),
        *no_eval,
        *TINY_INPUT,
    )
    assert "LOCE memory pre-fill" in proc.stdout
    with open(s2 / "metrics.json") as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    _assert_stage2_trained(s1, s2, metrics)
    assert DatasetCatalog  # registered datasets untouched


def test_lazy_train_hooks_are_the_loce_hooks(tmp_path):
    """The lazy twin lists LOCE's hooks in ``train.hooks``: built by the same constructors as the
    YAML ones, with the run's options by interpolation (overrides follow), and the stage-2 check
    at construction."""
    from detectron2.config import LazyConfig, get_cfg, instantiate

    from libra_d2.config import add_libra_config

    cfg = LazyConfig.load(os.path.join(REPO_ROOT, LAZY_STAGE2))
    cfg.train.output_dir = str(tmp_path)
    cfg.train.init_checkpoint = ""
    with pytest.raises(ConfigError, match="train.init_checkpoint is empty"):
        instantiate(cfg.train.hooks[0])
    cfg = LazyConfig.apply_overrides(
        cfg, ["train.init_checkpoint=stage1.pth", "dataloader.train.dataset.names=lt_shapes_val"]
    )
    hooks = [instantiate(h) for h in cfg.train.hooks]
    assert [type(h) for h in hooks] == [LOCEFineTune, FeatureMemoryHook]
    assert hooks[0].weights == "stage1.pth" and hooks[0].reset_scores
    mfs = hooks[1]
    assert mfs.dataset_names == ["lt_shapes_val"]
    assert isinstance(mfs.mapper, type(instantiate(cfg.dataloader.train.mapper)))
    # the same options as the YAML twin's MODEL.LOCE.MFS
    yaml_cfg = get_cfg()
    add_libra_config(yaml_cfg)
    yaml_cfg.merge_from_file(os.path.join(REPO_ROOT, STAGE2.replace("mask", "faster")))
    yaml_cfg.DATASETS.TRAIN = ("lt_shapes_train",)
    yaml_mfs = FeatureMemoryHook(yaml_cfg)
    for key in (
        "queue_size",
        "k",
        "m",
        "device",
        "dtype",
        "prefill_images_per_class",
        "prefill_batch_size",
    ):
        assert getattr(mfs, key) == getattr(yaml_mfs, key), key
    assert list(cfg.train.freeze) == list(yaml_cfg.MODEL.LOCE.FREEZE)
    # a run to resume from in the output folder stands in for the weights
    (tmp_path / "last_checkpoint").write_text("model_0000001.pth")
    cfg.train.init_checkpoint = ""
    assert instantiate(cfg.train.hooks[0]).weights == ""


def test_lazy_stage2_end_to_end(run_script, tmp_path):
    """YAML stage 1 (LOCEROIHeads, the same state-dict keys) -> lazy stage 2 via
    lazy_train_net.py."""
    s1, s2 = tmp_path / "stage1", tmp_path / "stage2"
    run_script(
        "projects/train_net.py",
        "--config-file",
        FASTER_STAGE1,
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        str(s1),
        "DATASETS.TEST",
        "()",
        *TINY_INPUT,
    )
    proc = run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        LAZY_STAGE2,
        "train.max_iter=3",
        "train.init_checkpoint=" + str(s1 / "model_final.pth"),
        "train.output_dir=" + str(s2),
        "train.hooks.1.prefill_images_per_class=1",
        "model.roi_heads.box_predictor.log_period=1",
        "dataloader.train.mapper.augmentations.0.short_edge_length=64",
        "dataloader.train.mapper.augmentations.0.max_size=64",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.test.mapper.augmentations.0.max_size=64",
    )
    assert "LOCE memory pre-fill" in proc.stdout
    assert (s2 / "model_final.pth").exists()
    with open(s2 / "metrics.json") as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    metrics = [m for m in metrics if "total_loss" in m]  # the training rows (not the eval's)
    _assert_stage2_trained(s1, s2, metrics)
