"""Detectron2's DatasetMapper, with errors that name the record that caused them."""

from detectron2.data import DatasetMapper


class RecordError(RuntimeError):
    """A dataset record (an image or its annotations) could not be loaded."""


class CheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` whose failures name the image file and record: an unreadable or missing
    image otherwise surfaces as a bare PIL/OS error deep inside a data-loader worker."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except Exception as e:
            raise RecordError(
                "cannot load dataset record image_id={!r}, file_name={!r}: {}: {}".format(
                    dataset_dict.get("image_id"), dataset_dict.get("file_name"), type(e).__name__, e
                )
            ) from e
