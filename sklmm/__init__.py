"""sklmm: linear mixed-effects models and penalized spline (additive mixed) models as
scikit-learn estimators, fitted by lme4's penalized least squares."""

from ._inference.gam_compare import GamAnovaResult
from ._inference.lrt import LikelihoodRatioTestResult
from ._input.smooth_terms import s, te, ti
from .comparison import likelihood_ratio_test
from .gam import PenalizedSplineRegressor
from .gam_classifier import PenalizedSplineClassifier
from .glmm import MixedLogisticRegression, MixedPoissonRegressor, SeparationWarning
from .mixed import MixedLinearRegressor, NoGroupsWarning, SingularFitWarning

__version__ = "0.1.0"

__all__ = [
    "MixedLinearRegressor",
    "PenalizedSplineRegressor",
    "PenalizedSplineClassifier",
    "s",
    "te",
    "ti",
    "MixedLogisticRegression",
    "MixedPoissonRegressor",
    "SeparationWarning",
    "likelihood_ratio_test",
    "LikelihoodRatioTestResult",
    "GamAnovaResult",
    "NoGroupsWarning",
    "SingularFitWarning",
    "__version__",
]
