"""LOCE stage 2 on LT-Shapes, tiny CPU setting, as a lazy config (twin of
configs/LT-Shapes/loce_faster_rcnn_R_18_FPN_tiny_stage2.yaml): the lazy stage 1's model
(loce_faster_rcnn_R_18_FPN_tiny_stage1.py: LOCE's ROI heads and box predictor on the plain tiny
lazy Faster R-CNN) with the Equilibrium Loss and Memory-augmented Feature Sampling,
fine-tuned for 150 iterations from the stage-1 model (``train.init_checkpoint``: the
model_final.pth of loce_faster_rcnn_R_18_FPN_tiny_stage1.yaml, whose state-dict keys this model
shares) with the backbone (incl. FPN) and the shared box FCs frozen.

The fine-tune and the feature memory are trainer hooks, not model parts: ``train.hooks`` lists
them as LazyCalls (the hooks YAML configs build from ``MODEL.LOCE``), and ``train.freeze`` names the
modules projects/lazy_train_net.py freezes before the optimizer and DDP see the parameters. The
hooks take the run's weights, output folder, training datasets and mapper by interpolation, so
overriding those options moves the hooks with them. Overrides: ``train.hooks.1.queue_size=40``,
``model.roi_heads.box_predictor.use_equilibrium_loss=False``; neither hook nor freezing:
``"train.hooks=[]" "train.freeze=[]"``; MFS off: drop the FeatureMemoryHook entry below.
"""

from detectron2.config import LazyCall as L

from libra_d2.engine.loce import FeatureMemoryHook, LOCEFineTune

from .loce_faster_rcnn_R_18_FPN_tiny_stage1 import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.roi_heads.box_predictor.use_equilibrium_loss = True

train.init_checkpoint = "output/lt_shapes/loce_faster_rcnn_R_18_FPN_tiny_stage1/model_final.pth"
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
        device="",  # the model's (CPU here)
        dtype="float32",
        prefill_images_per_class=5,
        prefill_batch_size=8,
    ),
]
# 1/4 of stage 1's iterations, lr 0.02 dropped at 1/2 and 5/6
train.max_iter = 150
train.checkpointer = dict(period=50, max_to_keep=100)
lr_multiplier.scheduler.milestones = [75, 125]
lr_multiplier.scheduler.num_updates = train.max_iter
lr_multiplier.warmup_length = 12 / train.max_iter
train.output_dir = "output/lt_shapes/lazy_loce_faster_rcnn_R_18_FPN_tiny_stage2"
