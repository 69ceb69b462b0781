#!/usr/bin/env Rscript
# mgcv_smooth_tests_reference.R -- mgcv's inference for smooth terms, for
# PenalizedSplineRegressor.smooth_tests_ and check_basis_dimension():
#   * summary.gam's s.table (edf, Ref.df, F, p-value): Wood (2013, Biometrika 100:221-228)
#     Wald-type tests, and for smooths without a penalty null space Wood (2013, Biometrika
#     100:1005-1010) (mgcv's reTest);
#   * k.check (gam.check's basis-dimension table: k', edf, k-index, p-value);
#   * psum.chisq, the reference distribution of the fractional-rank tests, at a few points.
# Models: bases cr, ps, tp and cc (no null space), te and ti, linear terms, prior weights, smooths REML
# shrinks to a line or to 0, an under-fitted k, and two gamm4 GAMMs. Each gam entry also holds
# lambda = sp / S.scale (the penalty of sklmm's smoothing_params_), so that the tests can fit
# at mgcv's smoothing parameters as well as by REML.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_smooth_tests_reference.R
# Needs R with mgcv, gamm4 and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-gamm4
# r-cran-jsonlite). Output: tests/data/mgcv_smooth_tests_reference.json. mgcv and gamm4 are only
# run here; none of their code is copied into sklmm.
#
# Data made up here, computed the same way by the Python tests (tests/test_smooth_tests.py):
#   z  = ((37 * i) %% 400) / 400, i = 0..399   a covariate unrelated to y (a permutation of the
#                                              grid i / 400) for a smooth estimated as a line
#   w  = 1 + (i %% 4) / 2                      prior weights
#   g  = "g" + (i %% 8), y_g = y + ((3 * (i %% 8)) %% 8 - 3.5) / 2
#                                              a grouping factor with an effect, for a GAMM
# k.check's p-value comes from R's random permutations (n.rep = 400): set.seed(1) before each
# call; sklmm's is a Monte Carlo estimate from numpy's generator, so the tests compare it to
# these within Monte Carlo error, and the k-index exactly. For the GAMMs k.check is run on
# gamm4's $gam with its fitted values replaced by the conditional ones (random effects
# included), which is what sklmm's residuals are; gamm4's $gam itself holds population-level
# fitted values. gamm4_sleep's smooth has its variance on the boundary (a straight line), so its
# numbers change in about the 8th significant digit from run to run (lme4's deviance is not
# bit-reproducible across R processes, as tools/mgcv_reference.R notes); the others are.

suppressPackageStartupMessages({
  library(mgcv)
  library(gamm4)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

mcycle <- read_data("sklmm/datasets/data/mcycle.csv")
sleepstudy <- read_data("sklmm/datasets/data/sleepstudy.csv", "Subject")
two <- read.csv("tests/data/sim_two_smooth.csv")  # y, x1, x2
i <- seq_len(nrow(two)) - 1
two$z <- ((37 * i) %% 400) / 400
two$w <- 1 + (i %% 4) / 2
two$g <- factor(paste0("g", i %% 8))
two$y_g <- two$y + ((3 * (i %% 8)) %% 8 - 3.5) / 2

tables <- function(g, gam_object = g) {
  s <- summary(gam_object)
  st <- s$s.table
  set.seed(1)
  kc <- k.check(g)
  ind <- lapply(gam_object$smooth, function(sm) sm$first.para:sm$last.para)
  edf1 <- if (is.null(gam_object$edf1)) NULL else sapply(ind, function(j) sum(gam_object$edf1[j]))
  list(
    smooths = I(rownames(st)), edf = jvec(st[, "edf"]), ref_df = jvec(st[, "Ref.df"]),
    F = jvec(st[, "F"]), p_value = jvec(st[, "p-value"]),
    edf1 = if (is.null(edf1)) NULL else jvec(edf1),
    residual_df = jnum(s$residual.df),
    k_prime = jvec(kc[, "k'"]), k_edf = jvec(kc[, "edf"]), k_index = jvec(kc[, "k-index"]),
    k_p_value = jvec(kc[, "p-value"])
  )
}

entry <- function(formula, data, ..., rows = NULL) {
  g <- gam(as.formula(formula), data = data, method = "REML", ...)
  # lambda for the basis's unscaled penalty (mgcv's sp is lambda * S.scale): the tests also fit
  # with these smoothing parameters held fixed, to compare the tests on the same fit
  # (a tensor product has one S.scale per margin, as it has one sp per margin)
  lambda <- g$sp / unlist(lapply(g$smooth, function(sm) sm$S.scale))
  out <- c(list(formula = formula, rows = rows, lambda = jvec(lambda)), tables(g))
  cat(formula, "\n")
  print(summary(g)$s.table)
  set.seed(1)
  print(k.check(g))
  out
}

gamm_entry <- function(formula, random, data) {
  tight <- lmerControl(optimizer = "nloptwrap",
                       optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                      ftol_rel = 1e-15, maxeval = 1e5))
  m <- gamm4(as.formula(formula), random = as.formula(random), data = data, control = tight)
  kg <- m$gam
  kg$fitted.values <- as.numeric(fitted(m$mer))  # conditional fitted values for k.check
  out <- c(list(formula = formula, random = random), tables(kg, m$gam))
  cat(formula, random, "\n")
  print(summary(m$gam)$s.table)
  out
}

out <- list()
out$mcycle_cr <- entry('accel ~ s(times, bs = "cr", k = 20)', mcycle)
out$mcycle_cr_k5 <- entry('accel ~ s(times, bs = "cr", k = 5)', mcycle)  # under-fitted
# the end of the crash, where the signal is weak: p-values of the order of 0.01 and 0.5
out$mcycle_late30 <- entry('accel ~ s(times, bs = "cr", k = 10)', subset(mcycle, times > 30),
                           rows = "times > 30")
out$mcycle_late40 <- entry('accel ~ s(times, bs = "cr", k = 10)', subset(mcycle, times > 40),
                           rows = "times > 40")
out$mcycle_ps <- entry('accel ~ s(times, bs = "ps", k = 20)', mcycle)
out$two_smooth <- entry('y ~ s(x1, bs = "cr") + s(x2, bs = "cr")', two)
out$two_linear <- entry('y ~ x1 + s(x2, bs = "cr")', two)
out$two_linear_weighted <- entry('y ~ x1 + s(x2, bs = "cr")', two, weights = two$w)
out$two_noise <- entry('y ~ s(x1, bs = "cr") + s(x2, bs = "cr") + s(z, bs = "cr")', two)
out$two_ps <- entry('y ~ s(x1, bs = "ps") + s(z, bs = "ps")', two)
out$mcycle_tp <- entry('accel ~ s(times, bs = "tp", k = 20)', mcycle)
out$two_tp <- entry('y ~ s(x1, bs = "tp") + s(x2, bs = "tp")', two)
out$mcycle_cc <- entry('accel ~ s(times, bs = "cc", k = 20)', mcycle)  # no null space: reTest
out$two_cc <- entry('y ~ s(x1, bs = "cr") + s(x2, bs = "cr") + s(z, bs = "cc")', two)
out$two_cc_null <- entry('y ~ s(z, bs = "cc")', two)  # shrunk to 0: sp 5e7, edf 0.0002
# tensor products: with a fractional rank the statistic depends on the relative sign of two
# eigenvectors, which mgcv fixes in the QR coordinates of its own basis (te: the product of the
# margins with the sum-to-zero constraint absorbed; ti: each margin's absorbed first; ps
# margins reparameterized to their values at evenly spaced points)
out$two_ti <- entry('y ~ ti(x1) + ti(x2) + ti(x1, x2)', two)
out$two_te <- entry('y ~ te(x1, z, k = c(4, 4))', two)
out$two_te_ps <- entry('y ~ te(x1, x2, bs = c("ps", "cr"), k = c(6, 5))', two)
out$two_ti_ps <- entry('y ~ ti(x1, bs = "ps", k = 6) + ti(x2) + ti(x1, x2, bs = c("ps", "cr"), k = c(6, 5))', two)
out$gamm4_sleep <- gamm_entry('Reaction ~ s(Days, bs = "cr", k = 5)', "~ (1 | Subject)", sleepstudy)
out$gamm4_two <- gamm_entry('y_g ~ s(x1, bs = "cr") + s(x2, bs = "cr")', "~ (1 | g)", two)

# psum.chisq: P(sum_j lb_j chi^2_{df_j} > 0) as the F-type tests use it (lb = the weights of
# the fractional-rank reference distribution, and -F * rank / k0 with df k0, the residual df)
psum <- list()
for (nu in c(0.05, 0.3, 0.5, 0.9)) for (k in c(1, 3)) for (k0 in c(5, 120)) for (d in c(0.5, 4, 15, 40)) {
  rp <- nu + 1
  a <- (rp + sqrt(rp * (2 - rp))) / 2
  lb <- c(rep(1, k - 1), a, rp - a, -d / k0)
  df <- c(rep(1, k + 1), k0)
  psum[[length(psum) + 1]] <- list(lb = jvec(lb), df = jvec(df), p = jnum(psum.chisq(0, lb, df = df)))
}
out$psum_chisq <- psum
# and P(sum_j lb_j chi^2_1 > q), the reference of a known scale (non-Gaussian families)
psum_known <- list()
for (nu in c(0.05, 0.5, 0.9)) for (k in c(1, 3)) for (q in c(0.5, 4, 15, 40)) {
  rp <- nu + 1
  a <- (rp + sqrt(rp * (2 - rp))) / 2
  lb <- c(rep(1, k - 1), a, rp - a)
  psum_known[[length(psum_known) + 1]] <- list(lb = jvec(lb), q = jnum(q), p = jnum(psum.chisq(q, lb)))
}
out$psum_chisq_known_scale <- psum_known
out$versions <- list(mgcv = as.character(packageVersion("mgcv")),
                     gamm4 = as.character(packageVersion("gamm4")))
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE, null = "null"),
           "tests/data/mgcv_smooth_tests_reference.json")
