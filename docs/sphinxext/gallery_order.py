"""Helpers for the sphinx-gallery configuration in ``docs/conf.py``.

Given by name in ``sphinx_gallery_conf`` (strings, so the configuration stays picklable).
"""

from pathlib import Path

#: the gallery's reading order; examples not listed follow in file-name order
ORDER = [
    "sleepstudy_summary.py",
    "sleepstudy_shrinkage.py",
    "schools_variance_components.py",
    "lme4_formulas.py",
    "grouped_cross_validation.py",
    "label_columns_pipeline.py",
    "gam_mcycle.py",
    "gam_engine_wear.py",
    "plot_cyclic_smooth.py",
    "plot_tensor_product.py",
    "plot_by_factor_smooths.py",
    "plot_factor_smooth.py",
    "gamm_sleepstudy.py",
    "plot_binary_gam.py",
    "glmm_calibration.py",
]


class ExampleOrder:
    """``within_subsection_order``: the order of :data:`ORDER`, then by file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = Path(filename).name
        return (ORDER.index(name), name) if name in ORDER else (len(ORDER), name)

    def __repr__(self):
        return "ExampleOrder"


def reset_sklearn(gallery_conf, fname, when=None):
    """Run before each example: scikit-learn's global configuration back to its defaults."""
    import sklearn

    sklearn.set_config(enable_metadata_routing=False)
