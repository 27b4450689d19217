#!/usr/bin/env python
"""libra_d2: balanced learning for object detection on Detectron2."""

from setuptools import find_packages, setup

setup(
    name="libra_d2",
    version="0.1.0",
    description="Libra R-CNN, LOCE, RGA+PRM and EFL as Detectron2 components",
    packages=find_packages(include=("libra_d2", "libra_d2.*")),
    python_requires=">=3.8",
    # torch, torchvision and detectron2 are installed by dev/install_env.py (see README):
    # detectron2 is not on PyPI under its name, so it cannot be a plain requirement here.
    install_requires=["fvcore", "pycocotools", "lvis", "opencv-python-headless", "matplotlib"],
    # projects/submit.py (Slurm through submitit)
    extras_require={"slurm": ["submitit"]},
)
