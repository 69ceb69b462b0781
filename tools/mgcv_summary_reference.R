#!/usr/bin/env Rscript
# mgcv_summary_reference.R -- what mgcv's summary.gam reports for the parametric terms (estimate,
# standard error, t value, p-value), the adjusted R^2 and the deviance explained, for
# PenalizedSplineRegressor's fixed_effects_, r2_adj_ and deviance_explained_.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_summary_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Output: tests/data/mgcv_summary_reference.json. mgcv is only run here; none of its code is copied.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

mcycle <- read_data("sklmm/datasets/data/mcycle.csv")
two <- read.csv("tests/data/sim_two_smooth.csv")  # y, x1, x2
# prior weights, a deterministic function of the row that the Python test computes the same way
two$w <- 1 + ((seq_len(nrow(two)) - 1) %% 4) / 2

entry <- function(g, formula) {
  s <- summary(g)
  pt <- s$p.table
  cat(sprintf("%s: r.sq %.6f dev.expl %.6f edf %.4f\n", formula, s$r.sq, s$dev.expl, sum(g$edf)))
  list(
    formula = formula,
    terms = I(rownames(pt)), estimate = jvec(pt[, 1]), std_error = jvec(pt[, 2]),
    t_value = jvec(pt[, 3]), p_value = jvec(pt[, 4]),
    r2_adj = jnum(s$r.sq), deviance_explained = jnum(s$dev.expl),
    residual_df = jnum(s$residual.df), edf_total = jnum(sum(g$edf)), aic = jnum(g$aic)
  )
}

out <- list()
out$mcycle_cr <- entry(gam(accel ~ s(times, bs = "cr", k = 20), data = mcycle, method = "REML"),
                       'accel ~ s(times, bs = "cr", k = 20)')
out$two_linear <- entry(gam(y ~ x1 + s(x2, bs = "cr", k = 10), data = two, method = "REML"),
                        'y ~ x1 + s(x2, bs = "cr", k = 10)')
out$two_linear_weighted <- entry(gam(y ~ x1 + s(x2, bs = "cr", k = 10), data = two, weights = w,
                                     method = "REML"),
                                 'y ~ x1 + s(x2, bs = "cr", k = 10), weights = 1 + ((row - 1) %% 4) / 2')
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE),
           "tests/data/mgcv_summary_reference.json")
