"""R-CNN Gradient Annealing: the schedule, that exactly the R-CNN module's gradients are scaled
(backbone and RPN untouched), DDP-wrapped models, the trainer integration (logged every step,
resume follows the iteration) and an end-to-end RGA + PRM run of train_net.py."""

import argparse
import json
import os
import shutil
import types

import pytest
import torch
import torch.distributed as dist
from conftest import TINY_INPUT, short_training
from detectron2.config import LazyCall as L
from detectron2.config import get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

import libra_d2
from libra_d2.engine import LibraTrainer, setup_cfg
from libra_d2.engine.gradient_annealing import (
    GradientAnnealing,
    annealing_factor,
    build_gradient_annealing_hook,
    select_parameters,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RGA_PRM = "configs/LT-Shapes/faster_rcnn_R_18_FPN_tiny_rga_prm.yaml"
RCNN_PREFIXES = (
    "roi_heads.box_head.",
    "roi_heads.box_predictor.",
    "roi_heads.box_heads.",
    "roi_heads.box_predictors.",
)


# --------------------------------------------------------------------------- schedule


def test_schedule_values():
    assert annealing_factor(0, 7.0, 1000) == 7.0
    assert annealing_factor(500, 7.0, 1000) == 4.0  # T/2: (lambda0 + 1) / 2
    assert annealing_factor(1000, 7.0, 1000) == 1.0
    assert annealing_factor(5000, 7.0, 1000) == 1.0  # stays 1 after the end
    assert annealing_factor(250, 5.0, 1000) == pytest.approx(4.0)
    values = [annealing_factor(t, 7.0, 90) for t in range(91)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing, linear
    assert values[45] == pytest.approx(4.0)
    for t in (0, 500, 1000, 5000):
        assert annealing_factor(t, 7.0, 1000, constant=True) == 7.0
    with pytest.raises(ValueError):
        annealing_factor(0, 7.0, 0)


# --------------------------------------------------------------------------- gradients


def tiny_cfg(*opts):
    cfg = get_cfg()
    libra_d2.add_libra_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs/LT-Shapes/Base-Tiny.yaml"))
    cfg.merge_from_list(["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64, *opts])
    return cfg


def batched_inputs(num_images=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        xy = torch.rand(4, 2, generator=g) * 40
        boxes = torch.cat([xy, (xy + 8 + torch.rand(4, 2, generator=g) * 16).clamp(max=63)], dim=1)
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, 32, (4,), generator=g)
        image = (torch.rand(3, 64, 64, generator=g) * 255).to(torch.uint8)
        out.append({"image": image, "instances": inst, "height": 64, "width": 64})
    return out


def fake_trainer(model, iteration, max_iter, storage):
    return types.SimpleNamespace(model=model, iter=iteration, max_iter=max_iter, storage=storage)


def gradients_after_hook(model, hook, iteration=0, max_iter=10):
    """One forward/backward on fixed input and seed, then the hook's after_backward."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    with EventStorage(iteration) as storage:
        sum(model(batched_inputs()).values()).backward()
        hook.trainer = fake_trainer(model, iteration, max_iter, storage)
        hook.before_train()
        hook.after_backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, storage


@pytest.mark.parametrize(
    "roi_heads",
    ["StandardROIHeads", "ParallelROIHeads", "CascadeROIHeads", "ParallelCascadeROIHeads"],
)
def test_only_rcnn_gradients_are_scaled(roi_heads):
    """Every R-CNN module's gradients (a Cascade R-CNN's three stages with one lambda; PRM's
    modules of every stage) and nothing else."""
    torch.manual_seed(0)
    cascade = ["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True] if "Cascade" in roi_heads else []
    model = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", roi_heads, *cascade))
    ref, _ = gradients_after_hook(model, GradientAnnealing(lambda0=1.0))  # lambda = 1
    hook = GradientAnnealing(lambda0=7.0)
    scaled, storage = gradients_after_hook(model, hook, iteration=5, max_iter=10)
    lam = 4.0  # 7 - 6 * 5 / 10
    assert storage.history("rga/lambda").values() == [(lam, 5)]
    assert ref.keys() == scaled.keys()
    rcnn = [n for n in ref if n.startswith(RCNN_PREFIXES)]
    assert sorted(hook.parameter_names) == sorted(rcnn)
    # fc1, fc2, cls, bbox (weight, bias) per module: 1, 2 (PRM), 3 (cascade stages) or 2 x 3
    modules = {
        "StandardROIHeads": 1,
        "ParallelROIHeads": 2,
        "CascadeROIHeads": 3,
        "ParallelCascadeROIHeads": 6,
    }[roi_heads]
    assert len(rcnn) == 8 * modules
    others = [n for n in ref if n not in rcnn]
    assert any(n.startswith("backbone.") for n in others)
    assert any(n.startswith("proposal_generator.") for n in others)
    for n in rcnn:
        assert torch.equal(scaled[n], ref[n] * lam), n
        assert ref[n].abs().sum() > 0, n
    for n in others:
        assert torch.equal(scaled[n], ref[n]), n


def test_clipping_happens_after_scaling():
    """Detectron2's clipping lives in optimizer.step(): it clips the RGA-scaled gradients
    (backward -> RGA -> clip -> update)."""
    from detectron2.solver.build import maybe_add_gradient_clipping

    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(1, 1, bias=False)
    model.roi_heads = torch.nn.Module()
    model.roi_heads.box_head = torch.nn.Linear(1, 1, bias=False)
    cfg = get_cfg()
    cfg.merge_from_list(
        [
            "SOLVER.CLIP_GRADIENTS.ENABLED",
            True,
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
            "value",
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
            2.0,
        ]
    )
    opt = maybe_add_gradient_clipping(cfg, torch.optim.SGD)(model.parameters(), lr=1.0)
    for p in model.parameters():
        p.data.zero_()
        p.grad = torch.ones_like(p)
    hook = GradientAnnealing(lambda0=7.0)
    with EventStorage() as storage:
        hook.trainer = fake_trainer(model, 0, 10, storage)
        hook.before_train()
        hook.after_backward()
    opt.step()
    # R-CNN gradient 1 -> 7 (RGA) -> 2 (clipped); clipping first would have given 7
    assert model.roi_heads.box_head.weight.item() == -2.0
    assert model.backbone.weight.item() == -1.0


def test_mask_head_is_scaled_only_when_asked():
    model = build_model(tiny_cfg("MODEL.MASK_ON", True, "MODEL.ROI_MASK_HEAD.CONV_DIM", 8))
    default = [n for n, _ in select_parameters(model, GradientAnnealing().modules)]
    with_mask = GradientAnnealing(include_mask_head=True).modules
    assert not any(n.startswith("roi_heads.mask_head.") for n in default)
    assert any(n.startswith("roi_heads.mask_head.") for n, _ in select_parameters(model, with_mask))


def test_prefixes_match_whole_names_and_errors_are_clear():
    model = build_model(tiny_cfg("MODEL.ROI_HEADS.NAME", "ParallelROIHeads"))
    names = [n for n, _ in select_parameters(model, ["roi_heads.box_head"])]
    assert names == []  # "box_head" does not select "box_heads.0...."
    names = [n for n, _ in select_parameters(model, ["module.roi_heads.box_heads.1"])]
    assert names and all(n.startswith("roi_heads.box_heads.1.") for n in names)
    hook = GradientAnnealing(modules=["roi_heads.nothing_here"])
    hook.trainer = fake_trainer(model, 0, 10, None)
    with pytest.raises(ValueError, match="no trainable parameter under"):
        hook.before_train()


def test_ddp_wrapped_model(tmp_path):
    model = build_model(tiny_cfg())
    expected = [n for n, _ in select_parameters(model, GradientAnnealing().modules)]
    dist.init_process_group(
        "gloo", init_method="file://" + str(tmp_path / "pg"), rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=None)
        assert next(n for n, _ in ddp.named_parameters()).startswith("module.")
        selected = select_parameters(ddp, GradientAnnealing().modules)
        assert [n for n, _ in selected] == expected
        assert all(p is dict(model.named_parameters())[n] for n, p in selected)
    finally:
        dist.destroy_process_group()


def test_registry_yaml_and_lazy_construction():
    cfg = tiny_cfg()
    assert build_gradient_annealing_hook(types.SimpleNamespace(cfg=cfg)) is None  # off by default
    cfg.merge_from_list(
        ["MODEL.RGA.ENABLED", True, "MODEL.RGA.LAMBDA0", 5.0, "SOLVER.MAX_ITER", 40]
    )
    hook = build_gradient_annealing_hook(types.SimpleNamespace(cfg=cfg))
    assert (hook.lambda0, hook.end_iter, hook.constant) == (5.0, 40, False)
    cfg.merge_from_list(["MODEL.RGA.END_ITER", 10, "MODEL.RGA.CONSTANT", True])
    hook = build_gradient_annealing_hook(types.SimpleNamespace(cfg=cfg))
    assert (hook.end_iter, hook.constant) == (10, True)
    assert GradientAnnealing(cfg).end_iter == 10  # @configurable: the YAML path of the class
    # the lazy path: a LazyCall of the same class
    hook = instantiate(L(GradientAnnealing)(lambda0=3.0))
    assert isinstance(hook, GradientAnnealing) and hook.lambda0 == 3.0 and hook.end_iter is None


# --------------------------------------------------------------------------- trainer


def _trainer(out, max_iter, resume=False):
    args = argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, RGA_PRM),
        opts=short_training(out, max_iter, "SOLVER.CHECKPOINT_PERIOD", "2"),
    )
    cfg = setup_cfg(args, do_default_setup=False)
    seed_all_rng(cfg.SEED)  # what default_setup does in train_net.py (data order, weights)
    trainer = LibraTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


def test_trainer_logs_lambda_every_step_and_resume_follows_iteration(lt_shapes_tiny, tmp_path):
    full = tmp_path / "full"
    trainer = _trainer(full, 3)
    assert sum(isinstance(h, GradientAnnealing) for h in trainer._hooks) == 1
    trainer.train()
    assert trainer.storage.history("rga/lambda").values() == [(7.0, 0), (5.0, 1), (3.0, 2)]
    # resume from the checkpoint written after iteration 1: lambda continues at iteration 2
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "model_0000001.pth", resumed / "model_0000001.pth")
    (resumed / "last_checkpoint").write_text("model_0000001.pth")
    trainer = _trainer(resumed, 3, resume=True)
    assert trainer.start_iter == 2
    trainer.train()
    assert trainer.storage.history("rga/lambda").values() == [(3.0, 2)]
    a = torch.load(full / "model_final.pth", map_location="cpu")["model"]
    b = torch.load(resumed / "model_final.pth", map_location="cpu")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("override,lam", [([], 3.0), (["train.hooks.0.constant=True"], 7.0)])
def test_lazy_train_net_rga_hook_from_train_hooks(run_script, tmp_path, override, lam):
    """The lazy twin's ``train.hooks`` entry is the hook the launcher runs (overridable)."""
    out = tmp_path / "lazy"
    run_script(
        "projects/lazy_train_net.py",
        "--config-file",
        "configs/LT-Shapes/lazy/faster_rcnn_R_18_FPN_tiny_rga_prm.py",
        "train.max_iter=3",
        "train.output_dir=" + str(out),
        "train.eval_period=0",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.mapper.augmentations.0.short_edge_length=64",
        "dataloader.train.mapper.augmentations.0.max_size=64",
        *override,
    )
    with open(out / "metrics.json") as f:
        last = [r for r in map(json.loads, f) if "rga/lambda" in r][-1]
    assert last["iteration"] == 2 and last["rga/lambda"] == pytest.approx(lam)


def test_train_net_rga_prm_end_to_end(run_script, tmp_path):
    out = tmp_path / "run"
    run_script(
        "projects/train_net.py",
        "--config-file",
        RGA_PRM,
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
        *TINY_INPUT,
    )
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    last = records[-1]
    assert last["iteration"] == 2
    assert last["rga/lambda"] == pytest.approx(3.0)  # 7 - 6 * 2 / 3
    for key in (
        "loss_cls_h0",
        "loss_cls_h1",
        "prm/num_fg_samples_h0",
        "prm/num_fg_samples_h1",
        "roi_head/num_fg_samples",
    ):
        assert key in last, key
    # the paper's Fig. 1a from this run's metrics
    png = tmp_path / "fg.png"
    run_script("dev/plot_positive_proposals.py", str(out / "metrics.json"), "--output", str(png))
    assert png.stat().st_size > 1000


def test_plot_positive_proposals_reads_metrics(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "plot_positive_proposals", os.path.join(REPO_ROOT, "dev/plot_positive_proposals.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    metrics = tmp_path / "metrics.json"
    lines = [
        {
            "iteration": it,
            "roi_head/num_fg_samples": 2.0 + it,
            "prm/num_fg_samples_h0": 2.0 + it,
            "prm/num_fg_samples_h1": 1.0 + it / 10,
            "rga/lambda": 7 - 6 * it / 100,
        }
        for it in (19, 39, 59)
    ]
    lines.insert(1, {"iteration": 30, "bbox/AP": 1.0})  # an evaluation record
    metrics.write_text(
        "\n".join(json.dumps(r) for r in lines) + '\n{"iteration": 7'
    )  # torn last line
    series = mod.load_series(str(metrics))
    assert series["prm/num_fg_samples_h1"] == ([19, 39, 59], [2.9, 4.9, 6.9])
    assert series["roi_head/num_fg_samples"][0] == [19, 39, 59]
    out = mod.plot(series, str(tmp_path / "fig.png"), show_lambda=True)
    assert os.path.getsize(out) > 1000
