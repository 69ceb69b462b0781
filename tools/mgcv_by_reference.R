#!/usr/bin/env Rscript
# mgcv_by_reference.R -- by= smooths (a factor by: one smooth per level; a numeric by: a varying
# coefficient) for PenalizedSplineRegressor's s("x", by=...) terms.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_by_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Input: tests/data/sim_by.csv and, for the k.check of a te, tests/data/sim_tensor.csv (y, x, z, f: simulated once with numpy, seed 1: three curves of x
# by the level of f plus 0.5 z x and N(0, 0.2^2) noise). Output: tests/data/mgcv_by_reference.json.
# mgcv is only run here; none of its code is copied.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

d <- read.csv("tests/data/sim_by.csv")
d$f <- factor(d$f, levels = sort(unique(d$f)))
entry <- function(g, formula) {
  s <- summary(g)
  cat(sprintf("%s: edf %s, REML %.8f\n", formula, paste(round(s$edf, 4), collapse = " "), g$gcv.ubre))
  list(formula = formula, fitted = jvec(fitted(g)), edf_smooth = jvec(s$edf), smooth_labels = I(rownames(s$s.table)),
       edf_total = jnum(sum(g$edf)), sp = jvec(g$sp), reml_score = jnum(g$gcv.ubre), sig2 = jnum(g$sig2),
       s_table_F = jvec(s$s.table[, 3]), s_table_ref_df = jvec(s$s.table[, 2]))
}
out <- list()
out$factor_by <- entry(gam(y ~ f + s(x, by = f, bs = "cr"), data = d, method = "REML"),
                       "y ~ f + s(x, by = f, bs = 'cr')")
out$numeric_by <- entry(gam(y ~ f + s(x, bs = "cr") + s(x, by = z, bs = "cr"), data = d, method = "REML"),
                        "y ~ f + s(x, bs = 'cr') + s(x, by = z, bs = 'cr')")
out$both_by <- entry(gam(y ~ f + s(x, by = f, bs = "cr") + s(x, by = z, bs = "cr"), data = d, method = "REML"),
                     "y ~ f + s(x, by = f, bs = 'cr') + s(x, by = z, bs = 'cr')")
out$tp2 <- entry(gam(y ~ s(x, z, k = 20), data = d, method = "REML"), "y ~ s(x, z, k = 20)")
# without the factor's main effect each level's curve is still constrained over all rows (the
# constraint is absorbed before the product with the level's indicator): another model
out$factor_by_no_main <- entry(gam(y ~ s(x, by = f, bs = "cr"), data = d, method = "REML"),
                               "y ~ s(x, by = f, bs = 'cr')")
# tensor products with by: a surface per level of f (the te's constraint from all rows), and a
# numeric by w = 1 + (i mod 5) / 4 (unconstrained); ti by a factor
d$w <- 1 + ((seq_len(nrow(d)) - 1) %% 5) / 4
out$te_by_factor <- entry(gam(y ~ f + te(x, z, by = f), data = d, method = "REML"), "y ~ f + te(x, z, by = f)")
out$te_by_numeric <- entry(gam(y ~ te(x, z, by = w), data = d, method = "REML"), "y ~ te(x, z, by = w)")
out$ti_by_factor <- entry(gam(y ~ f + ti(x) + ti(z) + ti(x, z, by = f), data = d, method = "REML"),
                          "y ~ f + ti(x) + ti(z) + ti(x, z, by = f)")
# an ordered factor: no curve for its first level (the others are differences from s(x))
d$fo <- ordered(d$f)
out$ordered_by <- entry(gam(y ~ f + s(x, bs = "cr") + s(x, by = fo, bs = "cr"), data = d, method = "REML"),
                        "y ~ f + s(x, bs = 'cr') + s(x, by = fo, bs = 'cr')")
# predict(type = "terms") with standard errors, and the lpmatrix's product with the
# coefficients, for PenalizedSplineRegressor.predict_terms and lpmatrix
g <- gam(y ~ f + z + s(x, bs = "cr"), data = d, method = "REML")
pt <- predict(g, d[1:20, ], type = "terms", se.fit = TRUE)
const <- attr(pt, "constant")
if (is.null(const)) const <- attr(pt$fit, "constant")
out$terms <- list(formula = "y ~ f + z + s(x, bs = 'cr')", rows = 20, constant = jnum(unname(const)),
                  columns = I(colnames(pt$fit)), fit = jmat(pt$fit), se = jmat(pt$se.fit),
                  lp = jvec(predict(g, d[1:20, ], type = "lpmatrix") %*% coef(g)),
                  lp_se = jvec(predict(g, d[1:20, ], se.fit = TRUE)$se.fit))
# k.check of smooths of several variables (3 nearest neighbours; a tensor product's covariates
# scaled by its slopes): the k-index is deterministic, the p-value a permutation estimate
set.seed(1)
kc <- k.check(gam(y ~ s(x, z, k = 20), data = d, method = "REML"), n.rep = 2000)
tt <- read.csv("tests/data/sim_tensor.csv")
kt <- k.check(gam(y_te ~ te(x, z), data = tt, method = "REML"), n.rep = 2000)
out$kcheck <- list(tp2_k_index = jnum(kc[1, 3]), tp2_p_value = jnum(kc[1, 4]),
                   te_k_index = jnum(kt[1, 3]), te_p_value = jnum(kt[1, 4]))
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE), "tests/data/mgcv_by_reference.json")
