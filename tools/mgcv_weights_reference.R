#!/usr/bin/env Rscript
# mgcv_weights_reference.R -- mgcv fits with prior weights, for PenalizedSplineRegressor's
# sample_weight (mgcv's `weights`).
#
# How to run (from the repository root):
#     Rscript tools/mgcv_weights_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Output: tests/data/mgcv_weights_reference.json: fitted values, EDF, sp / S.scale, sig2 and the
# standard errors of the fit on a grid. mgcv is only run here; none of its code is copied.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

mcycle <- read_data("sklmm/datasets/data/mcycle.csv")
# prior weights, a deterministic function of the row that the Python test computes the same way
mcycle$w <- 1 + ((seq_len(nrow(mcycle)) - 1) %% 4) / 2

out <- list()
for (bs in c("cr", "ps")) {
  g <- gam(accel ~ s(times, bs = bs, k = 20), data = mcycle, weights = w, method = "REML")
  sm <- g$smooth[[1]]
  grid <- seq(min(mcycle$times), max(mcycle$times), length = 50)
  pr <- predict(g, newdata = data.frame(times = grid), se.fit = TRUE)
  cat(sprintf("weighted %s: edf %.6f sig2 %.6f\n", bs, sum(g$edf[-1]), g$sig2))
  out[[paste0("mcycle_", bs, "_weighted")]] <- list(
    formula = sprintf('accel ~ s(times, bs = "%s", k = 20), weights = 1 + ((row - 1) %%%% 4) / 2', bs),
    edf_smooth = jnum(sum(g$edf[-1])), edf_total = jnum(sum(g$edf)),
    lambda = jnum(g$sp[1] / sm$S.scale), sig2 = jnum(g$sig2),
    coef_intercept = jnum(coef(g)[1]), fitted = jvec(fitted(g)),
    grid = jvec(grid), grid_fit = jvec(pr$fit), grid_se = jvec(pr$se.fit)
  )
}
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE),
           "tests/data/mgcv_weights_reference.json")
