"""Scalars logged from inside the forward pass without a device-to-host synchronisation there.

``EventStorage.put_scalar`` converts its value to a Python float, which for a CUDA tensor waits for
every kernel queued so far: a statistic logged in the middle of the forward pass (the sampler's
foreground count, the number of positive anchors) stalls the GPU once per call. The methods instead
hand the tensor to :func:`put_scalar_deferred`; the train loop writes all of an iteration's pending
values with one copy per device at the end of the step (see
:class:`~libra_d2.engine.train_loop.LibraTrainLoop`). Values, names and iterations in the storage
are the same as with ``put_scalar``.

With a trainer that never calls :func:`flush_deferred_scalars` (Detectron2's own ``SimpleTrainer``),
pending values are written when the next iteration logs its first deferred value, so nothing is
lost; on Detectron2 versions whose ``put_scalar`` takes no ``cur_iter`` they are then recorded one
iteration late.
"""

import weakref

import torch
from detectron2.utils.events import get_event_storage

from .compat import EVENT_STORAGE_PUT_TAKES_ITER

__all__ = ["put_scalar_deferred", "flush_deferred_scalars"]

# storage -> (iteration, [(name, value, smoothing_hint)]); weak keys: a finished storage is dropped.
_PENDING = weakref.WeakKeyDictionary()


def put_scalar_deferred(name, value, smoothing_hint=True):
    """``get_event_storage().put_scalar(name, value)`` for a tensor (or number) ``value``, without
    reading it back from the device now."""
    storage = get_event_storage()
    entry = _PENDING.get(storage)
    if entry is not None and entry[0] != storage.iter:
        flush_deferred_scalars(storage)
        entry = None
    if entry is None:
        entry = _PENDING[storage] = (storage.iter, [])
    if isinstance(value, torch.Tensor):
        value = value.detach()
    entry[1].append((name, value, smoothing_hint))


def flush_deferred_scalars(storage=None):
    """Write the pending values into ``storage`` (default: the current one) with one transfer per
    device; a no-op when nothing is pending."""
    storage = get_event_storage() if storage is None else storage
    entry = _PENDING.pop(storage, None)
    if not entry:
        return
    iteration, items = entry
    tensors = [(i, v) for i, (_, v, _) in enumerate(items) if isinstance(v, torch.Tensor)]
    values = [v for _, v, _ in items]
    by_device = {}
    for i, v in tensors:
        by_device.setdefault(v.device, []).append(i)
    for idx in by_device.values():
        host = torch.stack([items[i][1].reshape(()).float() for i in idx]).cpu().tolist()
        for i, h in zip(idx, host):
            values[i] = h
    kwargs = {"cur_iter": iteration} if EVENT_STORAGE_PUT_TAKES_ITER else {}
    for (name, _, smoothing_hint), value in zip(items, values):
        storage.put_scalar(name, float(value), smoothing_hint=smoothing_hint, **kwargs)
