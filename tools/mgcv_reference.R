#!/usr/bin/env Rscript
# mgcv_reference.R -- fit reference penalized-spline GAMs with mgcv (and one
# GAMM with gamm4) and store the numbers the sklmm test suite compares against.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_reference.R
#
# Needs R >= 4.0 with mgcv, gamm4 (which pulls in lme4), jsonlite and MASS
# (Debian/Ubuntu:
#     apt-get install r-base-core r-cran-mgcv r-cran-gamm4 r-cran-jsonlite r-cran-mass
# ).  mgcv/gamm4 are only *run* here to produce reference numbers; none of
# their code is copied into sklmm.
#
# Input:  sklmm/datasets/data/mcycle.csv and sklmm/datasets/data/sleepstudy.csv
#         (Subject turned into a factor whose levels are the sorted labels).
# Output: tests/data/sim_two_smooth.csv (simulated data, set.seed(1), written
#         here) and tests/data/mgcv_reference.json.  Every double is written
#         with the shortest decimal representation that reads back as the
#         same IEEE double (jsonlite's own formatting stops at 15 significant
#         digits, so numbers are formatted as text by the helpers in
#         tools/json_helpers.R, which this script sources, and passed through
#         verbatim).
#
# Conventions in the JSON:
#   reml_score  = g$gcv.ubre for method = "REML": mgcv's minimized REML score,
#                 which is a *negative restricted log-likelihood* (so it is on
#                 the scale of -loglik, not -2*loglik).
#   reml_profile: mgcv's REML score re-evaluated at fixed smoothing parameters
#                 sp = factor * g$sp (all smooths scaled by the same factor).
#                 At fixed sp the score has the scale profiled out:
#                   score = P/(2 phi) + (n-Mp)/2 log(2 pi phi)
#                           + (log|X'X+S| - log|S|_+)/2,
#                 P = ||y-Xb||^2 + b'Sb, phi = P/(n-Mp), Mp = p - rank(S)
#                 (checked below to 1e-10 relative for every stored score).
#                 "phi" is that profiled value; "scale" is what gam() reports,
#                 RSS/(n - edf_total), which is a different number.
#   scale, sig2 = g$scale = g$sig2 = RSS/(n - edf_total);  reml_phi = the
#                 profiled phi P/(n-Mp) at the optimum (equal to scale up to
#                 the optimizer's tolerance);  Mp = unpenalized dimension
#                 (intercept + penalty null spaces).
#   knots       = per smooth, a list of arrays (cr: g$smooth[[i]]$xp,
#                 ps: g$smooth[[i]]$knots, i.e. the full B-spline knot vector
#                 including the exterior knots).  How mgcv placed them is
#                 written up in tools/mgcv_knots_notes.md.
#   gamm4_sleep : fitted with tightened nloptwrap tolerances (same model and
#                 optimizer); the smooth's variance is on the boundary, so its
#                 numbers can change in about the 8th significant digit from run
#                 to run (lme4's deviance is not bit-reproducible across R
#                 processes).  The mgcv entries are bit-reproducible.

suppressPackageStartupMessages({
  library(mgcv)
  library(gamm4)
  library(lme4)
  library(jsonlite)
  library(MASS)
})

# Shared JSON-number and CSV helpers (fmt_num, jnum, jvec, jchr, read_data),
# sourced from this script's own directory (Rscript passes the script as
# --file=, spaces coded as "~+~"); "tools" when source()d from the repo root.
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/mgcv_reference.R")
}

## --- data ---------------------------------------------------------------------
mcycle <- read_data("sklmm/datasets/data/mcycle.csv")
sleepstudy <- read_data("sklmm/datasets/data/sleepstudy.csv", "Subject")
stopifnot(
  isTRUE(all.equal(mcycle, MASS::mcycle, tolerance = 0, check.attributes = FALSE)),
  isTRUE(all.equal(sleepstudy, lme4::sleepstudy[, c("Reaction", "Days", "Subject")],
                   tolerance = 0, check.attributes = FALSE)),
  identical(levels(sleepstudy$Subject), levels(lme4::sleepstudy$Subject))
)

# Simulated two-smooth data; written with full precision and read back so
# that the fit below uses exactly the numbers the Python tests will read.
set.seed(1)
n <- 400
x1 <- runif(n)
x2 <- runif(n)
y <- sin(2 * pi * x1) + exp(2 * x2) / 3 + rnorm(n, sd = 0.3)
sim_path <- "tests/data/sim_two_smooth.csv"
writeLines(c("y,x1,x2", paste(fmt_num(y), fmt_num(x1), fmt_num(x2), sep = ",")), sim_path)
sim <- read_data(sim_path)
stopifnot(identical(sim$y, y), identical(sim$x1, x1), identical(sim$x2, x2))

## --- GAM reference entries -------------------------------------------------------
profile_factors <- c(0.01, 0.1, 0.5, 2, 10, 100)

# Independent re-evaluation of the Gaussian REML score at a fitted gam, from the
# published formula (Wood 2011, JRSS-B 73(1), eq. for the Laplace/REML
# criterion with the scale profiled out):
#   V = P/(2 phi) + (n - Mp)/2 * log(2 pi phi) + (log|X'X + S| - log|S|_+)/2,
#   P = ||y - X b||^2 + b' S b,  phi = P/(n - Mp),  Mp = ncol(X) - rank(S),
# with S = sum_j sp_j S_j (the penalties as stored in the fitted smooths;
# for a fit with sp supplied, h$sp is empty and the values are in h$full.sp).
# Used only as a check and to record phi and Mp alongside mgcv's numbers.
reml_check <- function(h, y, sp) {
  X <- predict(h, type = "lpmatrix")
  p <- ncol(X)
  S <- matrix(0, p, p)
  j <- 0
  for (s in h$smooth) {
    idx <- s$first.para:s$last.para
    for (Sk in s$S) {
      j <- j + 1
      S[idx, idx] <- S[idx, idx] + sp[j] * Sk
    }
  }
  b <- coef(h)
  P <- sum((y - drop(X %*% b))^2) + drop(crossprod(b, S %*% b))
  ev <- eigen(S, symmetric = TRUE, only.values = TRUE)$values
  ev <- ev[ev > max(ev) * 1e-10]
  Mp <- p - length(ev)
  n <- length(y)
  phi <- P / (n - Mp)
  V <- P / (2 * phi) + (n - Mp) / 2 * log(2 * pi * phi) +
    (as.numeric(determinant(crossprod(X) + S)$modulus) - sum(log(ev))) / 2
  list(V = V, phi = phi, Mp = Mp, P = P)
}

gam_entry <- function(key, form_str, data, data_name, grid_var = NULL) {
  form <- as.formula(form_str)
  g <- gam(form, data = data, method = "REML")
  if (!isTRUE(g$converged) || !isTRUE(g$outer.info$conv == "full convergence")) {
    warning(key, ": convergence: ", g$outer.info$conv)
  }

  sp <- unname(g$sp)
  sm <- g$smooth
  edf_smooth <- vapply(sm, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
  stopifnot(isTRUE(all.equal(edf_smooth, as.numeric(summary(g)$edf), tolerance = 1e-12)))
  knots <- lapply(sm, function(s) {
    if (inherits(s, "cr.smooth")) s$xp
    else if (inherits(s, "pspline.smooth")) s$knots
    else stop("unexpected smooth class")
  })

  smooths <- lapply(seq_along(sm), function(i) {
    s <- sm[[i]]
    list(label = s$label,
         term = s$term,
         bs = if (inherits(s, "cr.smooth")) "cr" else "ps",
         k = s$bs.dim,
         m = if (inherits(s, "pspline.smooth")) jvec(s$m) else NULL,
         first_para = s$first.para,     # 1-based index into coef(g)
         last_para = s$last.para,
         sp = jnum(sp[i]),
         S_scale = jnum(s$S.scale),
         edf_smooth = jnum(edf_smooth[i]),
         knots = jvec(knots[[i]]))
  })

  y <- data[[all.vars(form)[1]]]
  # Reported scale (g$scale = g$sig2) is the Pearson-type RSS/(n - edf_total).
  stopifnot(isTRUE(all.equal(g$scale, sum(residuals(g)^2) / (nrow(data) - sum(g$edf)),
                             tolerance = 1e-10)))
  # Identifiability constraints: smooth terms sum to zero over the data, so
  # mean(fitted) = intercept; unpenalized intercept gives sum(fitted) = sum(y).
  stopifnot(max(abs(colSums(predict(g, type = "terms")))) < 1e-8 * max(abs(y)) * nrow(data),
            isTRUE(all.equal(mean(fitted(g)), unname(coef(g)[1]), tolerance = 1e-12)),
            isTRUE(all.equal(sum(fitted(g)), sum(y), tolerance = 1e-12)))
  chk <- reml_check(g, y, sp)
  stopifnot(isTRUE(all.equal(chk$V, as.numeric(g$gcv.ubre), tolerance = 1e-10)))

  # REML score at fixed smoothing parameters (sp scaled jointly)
  prof <- lapply(profile_factors, function(f) {
    h <- gam(form, data = data, method = "REML", sp = sp * f)
    stopifnot(isTRUE(all.equal(unname(h$full.sp), sp * f, tolerance = 1e-14)))
    hc <- reml_check(h, y, sp * f)
    stopifnot(isTRUE(all.equal(hc$V, as.numeric(h$gcv.ubre), tolerance = 1e-10)))
    list(factor = jnum(f), sp = jvec(sp * f), score = jnum(h$gcv.ubre),
         phi = jnum(hc$phi), scale = jnum(h$scale))
  })
  # sanity: re-evaluating at the optimum reproduces the minimized score
  h1 <- gam(form, data = data, method = "REML", sp = sp)
  stopifnot(isTRUE(all.equal(as.numeric(h1$gcv.ubre), as.numeric(g$gcv.ubre), tolerance = 1e-10)))

  cat(sprintf("%-12s REML=%.10f sp=[%s] edf=[%s] sig2=%.8f\n", key, g$gcv.ubre,
              paste(sprintf("%.6g", sp), collapse = ", "),
              paste(sprintf("%.6f", edf_smooth), collapse = ", "), g$sig2))

  out <- list(
    formula = form_str,
    data = data_name,
    method = "REML",
    nobs = nrow(data),
    reml_score = jnum(g$gcv.ubre),
    sp = jvec(sp),
    smooth_labels = jchr(vapply(sm, function(s) s$label, "")),
    S_scale = jvec(vapply(sm, function(s) s$S.scale, 0)),
    sig2 = jnum(g$sig2),
    scale = jnum(g$scale),
    reml_phi = jnum(chk$phi),
    Mp = chk$Mp,
    edf_total = jnum(sum(g$edf)),
    edf_smooth = jvec(edf_smooth),
    coef_intercept = jnum(coef(g)[1]),
    coef = jvec(coef(g)),
    coef_names = jchr(names(coef(g))),
    fitted = jvec(fitted(g)),
    knots = lapply(knots, jvec),
    smooths = smooths,
    reml_profile = prof
  )
  if (!is.null(grid_var)) {
    xv <- data[[grid_var]]
    grid <- seq(min(xv), max(xv), length = 50)
    nd <- data.frame(grid)
    names(nd) <- grid_var
    pr <- predict(g, newdata = nd, se.fit = TRUE)
    out$grid <- jvec(grid)
    out$grid_fit <- jvec(pr$fit)
    out$grid_se <- jvec(pr$se.fit)
  }
  list(entry = out, fit = g)
}

res <- list()
res$mcycle_cr <- gam_entry("mcycle_cr", 'accel ~ s(times, bs = "cr", k = 20)',
                           mcycle, "mcycle.csv", grid_var = "times")
res$mcycle_ps <- gam_entry("mcycle_ps", 'accel ~ s(times, bs = "ps", k = 20)',
                           mcycle, "mcycle.csv", grid_var = "times")
res$two_smooth <- gam_entry("two_smooth", 'y ~ s(x1, bs = "cr", k = 10) + s(x2, bs = "cr", k = 10)',
                            sim, "sim_two_smooth.csv")

## --- gamm4 ---------------------------------------------------------------------
# The objective is very flat here: the smooth's random-effect variance ends up
# on its boundary (theta for Xr.s(Days) = 0, i.e. the smooth is shrunk to a
# straight line, edf 1), and lme4's deviance evaluations differ in the last
# bits from one R process to the next, so with the default nloptwrap
# tolerances the optimizer stops at slightly different points on different
# runs (sigma varies in the 7th significant digit).  The stored numbers come
# from the same model and optimizer (nloptwrap BOBYQA) with tighter stopping
# tolerances, which lands closer to the optimum (lower REML criterion); the
# default-control fit is also made and checked to agree.
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                    ftol_rel = 1e-15, maxeval = 1e5))
m_default <- gamm4(Reaction ~ s(Days, bs = "cr", k = 5), random = ~(1 | Subject), data = sleepstudy)
m <- gamm4(Reaction ~ s(Days, bs = "cr", k = 5), random = ~(1 | Subject), data = sleepstudy,
           control = tight)
mer <- m$mer
stopifnot(REMLcrit(mer) <= REMLcrit(m_default$mer) + 1e-9,
          isTRUE(all.equal(REMLcrit(mer), REMLcrit(m_default$mer), tolerance = 1e-12)),
          isTRUE(all.equal(sigma(mer), sigma(m_default$mer), tolerance = 1e-5)),
          isTRUE(all.equal(getME(mer, "theta"), getME(m_default$mer, "theta"), tolerance = 1e-5)),
          isTRUE(all.equal(as.numeric(fitted(m$gam)), as.numeric(fitted(m_default$gam)),
                           tolerance = 1e-6)))
stopifnot(isREML(mer))
reml_crit <- REMLcrit(mer)
stopifnot(isTRUE(all.equal(reml_crit, -2 * as.numeric(logLik(mer)), tolerance = 1e-12)))
vc <- as.data.frame(VarCorr(mer))
varcorr <- lapply(seq_len(nrow(vc)), function(i) list(
  grp = vc$grp[i],
  var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
  vcov = jnum(vc$vcov[i]),
  sdcor = jnum(vc$sdcor[i])))
theta <- getME(mer, "theta")
sm4 <- m$gam$smooth[[1]]
re_subj <- ranef(mer)$Subject
stopifnot(identical(rownames(re_subj), levels(sleepstudy$Subject)))
fit_pop <- as.numeric(fitted(m$gam))
stopifnot(isTRUE(all.equal(fit_pop, as.numeric(predict(m$gam)), tolerance = 1e-10)))
cat(sprintf("%-12s REMLcrit=%.10f sigma=%.8f theta=[%s]\n", "gamm4_sleep", reml_crit,
            sigma(mer), paste(sprintf("%.6g", theta), collapse = ", ")))

gamm4_sleep <- list(
  formula = 'Reaction ~ s(Days, bs = "cr", k = 5)',
  random = "~(1 | Subject)",
  data = "sleepstudy.csv",
  reml = TRUE,
  nobs = nrow(sleepstudy),
  lmer_control = paste("nloptwrap (BOBYQA) with optCtrl xtol_abs=1e-12, ftol_abs=1e-14,",
                       "xtol_rel=1e-12, ftol_rel=1e-15, maxeval=1e5"),
  is_singular = isSingular(mer),
  reml_criterion = jnum(reml_crit),
  varcorr = varcorr,
  theta = jvec(theta),
  theta_names = jchr(names(theta)),
  sigma = jnum(sigma(mer)),
  fitted_conditional = jvec(fitted(mer)),
  fitted_population = jvec(fit_pop),
  edf_smooth = jnum(sum(m$gam$edf[sm4$first.para:sm4$last.para])),
  edf_total = jnum(sum(m$gam$edf)),
  gam_coef = jvec(coef(m$gam)),
  gam_coef_names = jchr(names(coef(m$gam))),
  knots = jvec(sm4$xp),
  ranef_subject = list(levels = jchr(rownames(re_subj)), values = jvec(re_subj[, 1]))
)

## --- write --------------------------------------------------------------------
out <- list(
  mcycle_cr = res$mcycle_cr$entry,
  mcycle_ps = res$mcycle_ps$entry,
  two_smooth = res$two_smooth$entry,
  gamm4_sleep = gamm4_sleep,
  meta = list(
    r_version = R.version.string,
    mgcv_version = as.character(packageVersion("mgcv")),
    gamm4_version = as.character(packageVersion("gamm4")),
    lme4_version = as.character(packageVersion("lme4")),
    jsonlite_version = as.character(packageVersion("jsonlite")),
    generated_by = "tools/mgcv_reference.R",
    notes = paste(
      "reml_score: g$gcv.ubre (mgcv REML score = negative restricted log-likelihood, minimized);",
      "reml_profile: gam(..., method='REML', sp=factor*g$sp)$gcv.ubre; score uses the profiled phi = (RSS + b'Sb)/(n - Mp),",
      "stored as 'phi'; 'scale' is gam's reported RSS/(n - edf);",
      "edf_smooth: sum of g$edf over each smooth's coefficients (= summary(g)$edf);",
      "knots: cr -> smooth$xp, ps -> smooth$knots (full knot vector incl. exterior knots);",
      "gamm4_sleep: reml_criterion = REMLcrit(m$mer) = -2*logLik(m$mer);",
      "fitted_conditional = fitted(m$mer) (incl. Subject effects), fitted_population = fitted(m$gam);",
      "gamm4_sleep is fitted with tightened nloptwrap tolerances (see lmer_control): with the default",
      "control the boundary optimum is only located to ~1e-7 relative in sigma and varies between runs",
      "(the script checks the default-control fit agrees to 1e-5 relative).")
  )
)

txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/mgcv_reference.json", useBytes = TRUE)
invisible(fromJSON("tests/data/mgcv_reference.json", simplifyVector = FALSE))
cat("wrote tests/data/sim_two_smooth.csv and tests/data/mgcv_reference.json\n")
