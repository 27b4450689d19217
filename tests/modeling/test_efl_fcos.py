"""EFLFCOS: built from YAML; at s = 0 with Detectron2's normaliser its losses and gradients are
Detectron2's FCOS's; bad configs refused; train_net.py end to end. The statistics (layout,
checkpoint, logging) are tested for every EFL detector in test_dense_efl.py."""

import datetime
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_INPUT
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.modeling.meta_arch.fcos import FCOS
from tiny_models import cfg_from
from tiny_models import fixed_batched_inputs as batched_inputs
from tiny_models import train_losses

from libra_d2.layers.equalized_focal_loss import EFLClassificationLoss
from libra_d2.modeling.meta_arch import EFLFCOS

FCOS_TINY = "configs/LT-Shapes/fcos_R_18_FPN_tiny.yaml"
EFL_FCOS_TINY = "configs/LT-Shapes/efl_fcos_R_18_FPN_tiny.yaml"
STAT_KEYS = ("efl.statistics.pos_grad", "efl.statistics.neg_grad")
LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
EFL_ONLY = ("efl", "loss_normalizer", "frequency_groups", "log_period")


def test_registered_and_built_from_config():
    assert META_ARCH_REGISTRY.get("EFLFCOS") is EFLFCOS
    model = build_model(cfg_from(EFL_FCOS_TINY))
    assert isinstance(model, EFLFCOS) and isinstance(model, FCOS)
    assert isinstance(model.efl, EFLClassificationLoss)
    assert (model.efl.gamma_b, model.efl.scale, model.efl.alpha) == (2.0, 8.0, 0.25)
    assert model.loss_normalizer_type == "num_pos" and model.center_sampling_radius == 1.5
    assert model.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.head.cls_subnet)  # GN heads
    # P6 from P5 (FCOS), not from C5 (RetinaNet): its input has the FPN's channels
    assert model.backbone.top_block.in_feature == "p5"
    assert model.backbone.top_block.p6.in_channels == 64
    assert set(STAT_KEYS) <= set(model.state_dict())
    assert model.frequency_groups == list(MetadataCatalog.get("lt_shapes_train").category_frequency)
    assert build_model(cfg_from(FCOS_TINY)).efl.scale == 0.0

    with pytest.raises(ValueError, match="IOU_BRANCH / ANCHOR_MATCHER"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.EFL.IOU_BRANCH": True}))
    with pytest.raises(ValueError, match="LOSS_NORMALIZER"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.EFL.LOSS_NORMALIZER": "mean"}))
    with pytest.raises(ValueError, match="build_fcos_resnet_fpn_backbone"):
        build_model(cfg_from(EFL_FCOS_TINY, **{"MODEL.FCOS.IN_FEATURES": ["p2", "p3"]}))


def test_scale_zero_equals_detectron2_fcos():
    """SCALE 0 with Detectron2's EMA normaliser: the losses and gradients are Detectron2's FCOS's
    (same weights and inputs), step after step, while the statistics are accumulated."""
    cfg = cfg_from(FCOS_TINY, **{"MODEL.EFL.LOSS_NORMALIZER": "ema"})
    torch.manual_seed(0)
    ref_kwargs = {k: v for k, v in EFLFCOS.from_config(cfg).items() if k not in EFL_ONLY}
    ref = FCOS(**ref_kwargs).train()
    ours = EFLFCOS(cfg).train()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert sorted(missing) == sorted(STAT_KEYS) and not unexpected
    inputs = batched_inputs()
    for step in range(2):  # twice: g changes after the first step, the loss must not
        l_ref, s_ref = train_losses(ref, inputs, step)
        l_ours, s_ours = train_losses(ours, inputs, step)
        assert l_ref.keys() == l_ours.keys() == LOSSES
        for key in ("loss_fcos_loc", "loss_fcos_ctr"):
            torch.testing.assert_close(l_ours[key], l_ref[key], rtol=1e-6, atol=0)
        # same value up to fp32 rounding (EFL's fused kernel orders the operations differently)
        torch.testing.assert_close(
            l_ours["loss_fcos_cls"], l_ref["loss_fcos_cls"], rtol=1e-6, atol=0
        )
        assert s_ref["num_pos_anchors"] == s_ours["num_pos_anchors"] > 0
        assert float(ref.loss_normalizer) == pytest.approx(float(ours.loss_normalizer), rel=1e-12)
        if step == 0:
            for m, losses in ((ref, l_ref), (ours, l_ours)):
                m.zero_grad()
                sum(losses.values()).backward()
            for (name, p_ref), p_ours in zip(ref.named_parameters(), ours.parameters()):
                if p_ref.grad is not None:
                    torch.testing.assert_close(
                        p_ours.grad, p_ref.grad, rtol=1e-4, atol=1e-8, msg=name
                    )
            assert ours.efl.statistics.pos_grad.sum() > 0
    assert torch.all(ours.efl.focusing_factors()[0] == 2.0)


# Frozen BN: Detectron2's "BN" keeps per-process batch statistics, which two processes cannot share
# on CPU; FCOS's GN heads are per image.
FROZEN_BN = {"MODEL.RESNETS.NORM": "FrozenBN"}


def _two_steps(model, inputs):
    """Two training forwards and backwards of ``model`` on ``inputs`` without an optimizer step
    (the second uses the statistics that the first accumulated): per step the losses, the EFL
    statistics and the gradients."""
    out = []
    for step in range(2):
        model.zero_grad()
        losses, _ = train_losses(model, inputs, step)
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        for g in grads.values():  # what DistributedDataParallel does: average over processes
            if dist.is_initialized():
                dist.all_reduce(g)
                g /= dist.get_world_size()
        out.append(
            {
                "losses": {k: v.detach().clone() for k, v in losses.items()},
                "pos_grad": model.efl.statistics.pos_grad.clone(),
                "neg_grad": model.efl.statistics.neg_grad.clone(),
                "grads": grads,
            }
        )
    return out


def _fcos_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group(
        "gloo",
        init_method="file://" + init_file,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=120),
    )
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = build_model(cfg_from(EFL_FCOS_TINY, **FROZEN_BN)).train()
        inputs = batched_inputs()[rank::world_size]
        torch.save(_two_steps(model, inputs), os.path.join(out_dir, "rank{}.pth".format(rank)))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process(tmp_path):
    """EFL FCOS* with one image in each of two processes equals one process with both images, in
    both steps: the gradient ratio g of the all-reduced statistics, the DDP-averaged gradients and
    the mean of the processes' losses (the normaliser is the positives of the whole batch / world
    size)."""
    mp.spawn(
        _fcos_worker,
        args=(2, str(tmp_path / "dist_init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    torch.manual_seed(0)
    model = build_model(cfg_from(EFL_FCOS_TINY, **FROZEN_BN)).train()
    single = _two_steps(model, batched_inputs())
    ranks = [torch.load(tmp_path / "rank{}.pth".format(r), weights_only=True) for r in range(2)]
    assert single[1]["neg_grad"].sum() > single[0]["neg_grad"].sum() > 0
    for step in range(2):
        one, two = single[step], [r[step] for r in ranks]
        # the two images have different positives: each process alone sees a different loss
        assert not torch.allclose(
            two[0]["losses"]["loss_fcos_cls"], two[1]["losses"]["loss_fcos_cls"]
        )
        for r in two:
            # each process sums |d loss_r / d logit| with loss_r normalised by the positives of
            # the whole batch / world size, as the reference does: the sums are world size times
            # the one process's, and g (their ratio, what EFL uses) is the same
            for key in ("pos_grad", "neg_grad"):
                torch.testing.assert_close(r[key], 2 * one[key], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(
                r["pos_grad"] / r["neg_grad"], one["pos_grad"] / one["neg_grad"], rtol=1e-5, atol=0
            )
        for name, value in one["losses"].items():
            mean = (two[0]["losses"][name] + two[1]["losses"][name]) / 2
            torch.testing.assert_close(mean, value, rtol=1e-5, atol=1e-7, msg=name)
        assert two[0]["grads"].keys() == one["grads"].keys()
        for name, g in one["grads"].items():
            # the batch is summed in another order: fp32 rounding, relative to the largest entry
            error = (two[0]["grads"][name] - g).abs().max() / g.abs().max().clamp(min=1e-12)
            assert error < 1e-3, (step, name, float(error))


def test_train_net_end_to_end(run_script, tmp_path):
    out = tmp_path / "efl_fcos"
    run_script(
        "projects/train_net.py",
        "--config-file",
        EFL_FCOS_TINY,
        "SOLVER.MAX_ITER",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
        *TINY_INPUT,
    )
    with open(out / "metrics.json") as f:
        logged = {k for line in f if line.strip() for k in json.loads(line)}
    assert LOSSES <= logged and "efl/grad_ratio/r" in logged
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert final["efl.statistics.neg_grad"].sum() > 0
