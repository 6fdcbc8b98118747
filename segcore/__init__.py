"""segcore: how coarse can a segmentation grid, decoder and labels be — and what does each cost?

``import segcore`` stays light: Ray and MLflow are imported only inside ``segcore.tune`` and
``segcore.tracking``.
"""

__version__ = "0.1.0"
