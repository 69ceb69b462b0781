#!/usr/bin/env Rscript
# lme4_formula_reference.R -- lme4 fits of formulas that exercise sklmm's formula door beyond
# what its constructor parameters express: a random slope that is not a fixed effect, R's
# I(x^2), and prior weights given to lmer.
#
# How to run (from the repository root):
#     Rscript tools/lme4_formula_reference.R
# Needs R with lme4 and jsonlite (Debian: apt-get install r-cran-lme4 r-cran-jsonlite).
# Output: tests/data/lme4_formula_reference.json (criterion, theta, fixed effects, sigma).
# lme4 is only run here; none of its code is copied into sklmm.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

sleep <- read_data("sklmm/datasets/data/sleepstudy.csv", factors = "Subject")
# prior weights, a deterministic function of Days that the Python test computes the same way
sleep$w <- 1 + (sleep$Days %% 3) / 2

models <- list(
  random_only_slope_reml = list("Reaction ~ 1 + (1 + Days | Subject)", TRUE, NULL),
  random_only_slope_ml   = list("Reaction ~ 1 + (1 + Days | Subject)", FALSE, NULL),
  r_power_reml           = list("Reaction ~ Days + I(Days^2) + (Days | Subject)", TRUE, NULL),
  weighted_reml          = list("Reaction ~ Days + (Days | Subject)", TRUE, "w")
)

out <- list()
for (key in names(models)) {
  spec <- models[[key]]
  w <- if (is.null(spec[[3]])) NULL else sleep[[spec[[3]]]]
  fit <- if (is.null(w)) lmer(as.formula(spec[[1]]), data = sleep, REML = spec[[2]]) else
    lmer(as.formula(spec[[1]]), data = sleep, REML = spec[[2]], weights = w)
  criterion <- if (spec[[2]]) getME(fit, "devcomp")$cmp[["REML"]] else deviance(fit)
  cat(sprintf("%-24s crit=%.6f theta=[%s]\n", key, criterion,
              paste(sprintf("%.5f", getME(fit, "theta")), collapse = ", ")))
  out[[key]] <- list(
    formula = spec[[1]], reml = spec[[2]], weights = if (is.null(spec[[3]])) NULL else spec[[3]],
    criterion = jnum(criterion), sigma = jnum(sigma(fit)),
    theta = jvec(getME(fit, "theta")), theta_names = jchr(names(getME(fit, "theta"))),
    beta = jvec(fixef(fit)), beta_names = jchr(names(fixef(fit)))
  )
}
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE, null = "null"),
           "tests/data/lme4_formula_reference.json")
