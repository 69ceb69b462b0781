#!/usr/bin/env Rscript
# mgcv_interior_reference.R -- mgcv's REML fits of a model whose criterion has a local minimum
# at lambda = inf for a smooth (or a ti margin) beside a lower basin inside, for the test that
# sklmm's search does not stop in the first (tests/test_smooth_terms.py).
#
# How to run (from the repository root):
#     python tools/make_sim_interior.py        # tests/data/sim_interior.csv (numpy, seeds 2 and 20)
#                                              # and sim_interior_binomial.csv
#     Rscript tools/mgcv_interior_reference.R
# Needs R with mgcv and jsonlite. Output: tests/data/mgcv_interior_reference.json: per seed the
# smoothing parameters as lambda = sp / S.scale (what sklmm's sp takes), the edf of each smooth,
# the fitted values and mgcv's REML score. mgcv is only run here; none of its code is copied.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

all <- read.csv("tests/data/sim_interior.csv")
formula <- y ~ s(x1, bs = "cr") + s(x2, bs = "cr") + ti(x1, x2, bs = c("tp", "tp"), k = c(4, 6)) +
  s(x3, bs = "cr") + s(x4, bs = "cr") + ti(x3, x4, bs = c("tp", "ps"), k = c(6, 5))
out <- list()
for (seed in unique(all$seed)) {
  d <- all[all$seed == seed, ]
  g <- gam(formula, data = d, method = "REML")
  lambda <- g$sp / unlist(lapply(g$smooth, function(sm) sm$S.scale))
  s <- summary(g)
  cat(sprintf("seed %d: REML score %.8f, edf %s\n", seed, g$gcv.ubre, paste(round(s$edf, 4), collapse = " ")))
  out[[as.character(seed)]] <- list(lambda = jvec(lambda), edf_smooth = jvec(s$edf),
                                    fitted = jvec(fitted(g)), reml_score = jnum(g$gcv.ubre))
}
b <- read.csv("tests/data/sim_interior_binomial.csv")
g <- gam(formula, data = b, method = "REML", family = binomial)
s <- summary(g)
cat(sprintf("binomial: REML score %.8f, edf %s\n", g$gcv.ubre, paste(round(s$edf, 4), collapse = " ")))
out$binomial <- list(lambda = jvec(g$sp / unlist(lapply(g$smooth, function(sm) sm$S.scale))),
                     edf_smooth = jvec(s$edf), fitted = jvec(fitted(g)), reml_score = jnum(g$gcv.ubre))
out$versions <- list(mgcv = as.character(packageVersion("mgcv")))
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE), "tests/data/mgcv_interior_reference.json")
cat("wrote tests/data/mgcv_interior_reference.json\n")
