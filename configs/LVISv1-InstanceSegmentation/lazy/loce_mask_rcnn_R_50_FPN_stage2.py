"""LOCE stage 2 on LVIS v1, as a lazy config (the twin of
configs/LVISv1-InstanceSegmentation/loce_mask_rcnn_R_50_FPN_stage2.yaml): the lazy stage 1's model
with the Equilibrium Loss (alpha 0.9, background score 0.01) and Memory-augmented Feature Sampling
(M 80, k 8, m 4 per process; the 1203 x 80 x 256x7x7 memory is 4.8 GB per process in fp32 on the
CPU, ``train.hooks.1.dtype="float16"`` halves it), fine-tuned for 6 epochs (37.5k iterations, LR
0.02 dropped at 18.75k and 31.25k) from the stage-1 model with the backbone (incl. FPN) and the
shared box FCs frozen. The hooks and ``train.freeze`` work as in the tiny
configs/LT-Shapes/lazy/loce_faster_rcnn_R_18_FPN_tiny_stage2.py."""

from detectron2.config import LazyCall as L

from libra_d2.engine.loce import FeatureMemoryHook, LOCEFineTune

from .loce_mask_rcnn_R_50_FPN_stage1 import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_predictor.use_equilibrium_loss = True

train.init_checkpoint = "output/lvis/loce_mask_rcnn_R_50_FPN_stage1/model_final.pth"
train.freeze = ["backbone", "roi_heads.box_head"]
train.hooks = [
    L(LOCEFineTune)(
        weights="${train.init_checkpoint}",
        output_dir="${train.output_dir}",
        reset_scores=True,  # fresh mean scores for the fine-tune
    ),
    L(FeatureMemoryHook)(
        dataset_names="${dataloader.train.dataset.names}",  # pre-filled from these images
        mapper="${dataloader.train.mapper}",
        queue_size=80,
        num_classes_per_step=8,  # k classes drawn per step, p ~ 1 / s
        samples_per_class=4,  # m rows per drawn class
        device="cpu",  # the reference's placement
        dtype="float32",
        prefill_images_per_class=5,
        prefill_batch_size=8,
    ),
]
train.max_iter = 37500
lr_multiplier.scheduler.milestones = [18750, 31250]
lr_multiplier.scheduler.num_updates = train.max_iter
lr_multiplier.warmup_length = 1000 / train.max_iter
train.output_dir = "output/lvis/lazy_loce_mask_rcnn_R_50_FPN_stage2"
