"""Installs swiderrnet_tf.

Pick the TensorFlow build for your machine with an extra:
  pip install -e ".[cpu]"   # CPU wheel (what CI uses)
  pip install -e ".[gpu]"   # NVIDIA GPUs (CUDA libraries come from pip)
  pip install -e ".[tpu]"   # Cloud TPU VMs
Add `test` for the test suite, e.g. ".[cpu,test]".
"""

import setuptools

setuptools.setup(
    name="swiderrnet_tf",
    version="0.1.0",
    description="SWideRNet backbones in Panoptic-DeepLab, Keras 3 on TensorFlow",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["swiderrnet_tf", "swiderrnet_tf.*"]),
    install_requires=[
        "keras==3.15.1",
        "gin-config==0.5.0",
        "absl-py==2.5.1",
        # The range is set by the TensorFlow wheels of the extras below.
        "numpy>=1.26,<2.5",
        "pycocotools==2.0.11",
        "pillow==13.0.0",
        "pyyaml==6.0.4",
        # Plots of the grid search.
        "matplotlib==3.11.2",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu==2.21.0"],
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        # The newest TensorFlow wheel published for TPU VMs, with the libtpu
        # release its metadata names (`libtpu~=0.0.14`): without the pin pip
        # takes the newest 0.0.x, built for later TensorFlow releases.
        "tpu": ["tensorflow-tpu==2.20.0", "libtpu==0.0.14"],
        "test": ["pytest==9.2.0", "ruff==0.17.6", "jax[cpu]==0.10.2"],
    },
)
