"""sklmm: linear mixed-effects models and penalized spline (additive mixed) models as
scikit-learn estimators, fitted by lme4's penalized least squares."""

from ._base import NoGroupsWarning
from ._inference import LikelihoodRatioTestResult
from ._mixed_inference import likelihood_ratio_test
from ._model import SingularFitWarning
from .gam import PenalizedSplineRegressor
from .mixed import MixedLinearRegressor

__version__ = "0.1.0"

__all__ = [
    "MixedLinearRegressor",
    "PenalizedSplineRegressor",
    "likelihood_ratio_test",
    "LikelihoodRatioTestResult",
    "NoGroupsWarning",
    "SingularFitWarning",
    "__version__",
]
