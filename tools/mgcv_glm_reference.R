#!/usr/bin/env Rscript
# mgcv_glm_reference.R -- non-Gaussian GAMs (mgcv::gam, method = "REML") and GAMMs
# (gamm4::gamm4, i.e. lme4::glmer with the Laplace approximation): binomial, binomial with
# trials, Poisson and Gamma (log link), all smooths bs = "cr" except one bs = "re".
#
# How to run (from the repository root; about half a minute):
#     Rscript tools/mgcv_glm_reference.R
# Needs R >= 4.0 with mgcv, gamm4 (pulls in lme4), mlmRev and jsonlite (Debian/Ubuntu:
#     apt-get install r-base-core r-cran-mgcv r-cran-gamm4 r-cran-mlmrev r-cran-jsonlite
# ).  mgcv/gamm4 are only run here; none of their code is copied into sklmm.
#
# Input:  sklmm/datasets/data/contraception.csv (what sklmm.datasets.load_contraception
#         reads; checked here to equal mlmRev::Contraception).
# Output (simulated data are generated here with set.seed, written at full precision by
# tools/csv_helpers.R's write_data, and READ BACK from the CSV before any fit):
#   tests/data/sim_glm_binomial.csv        n = 400: x, y, g, y_re          (cases 1 and 6)
#   tests/data/sim_glm_binomial_multi.csv  n = 1000: y, z, x1, x2, x3      (case 2)
#   tests/data/sim_glm_poisson.csv         n = 500: x1, x2, y, g, y_re     (cases 3 and 7)
#   tests/data/sim_glm_binomial_trials.csv n = 300: x, successes, failures, trials (case 4)
#   tests/data/sim_glm_gamma.csv           n = 400: x, y                   (case 8)
#   tests/data/mgcv_glm_reference.json
# g is a factor with the 20 labels "g01".."g20" (sorted order = numeric order); y_re is the
# response simulated WITH the random intercept of g (sd 0.7 on the link scale), y without.
# Every double in the JSON is the shortest decimal that reads back as the same IEEE double
# (tools/json_helpers.R).
#
# Contraception coding (same columns and level orders as load_contraception):
#   use    = 1 if the CSV's use is "Y", 0 if "N" (a double 0/1 response)
#   livch  = factor, levels "0", "1", "2", "3+"  (treatment contrasts: livch1, livch2, livch3+)
#   urban  = factor, levels "N", "Y"             (treatment contrast: urbanY)
#   district = factor, levels "1", ..., "61" in NUMERIC order (no "54"; 60 levels), so the
#            bs = "re" coefficients s(district).1..60 follow that order
#   age    = the CSV's (centred) age as a double
#
# JSON layout: one object per case key (see `cases` printed at the end and meta$notes).
#
# gam entries (method = "REML"):
#   formula, family, link, data, nobs, response (how y is formed)
#   reml_score      g$gcv.ubre, mgcv's Laplace-approximate REML score, a NEGATIVE restricted
#                   log-likelihood (scale of -loglik, not -2 loglik), minimized.  Checked here
#                   to 1e-9 relative against the published formula (Wood 2011, JRSS-B 73(1)):
#                     V = -l(b; phi) + b'Sb/(2 phi) + (log|X'WX + S| - log|S|_+)/2
#                         - Mp/2 log(2 pi phi)
#                   l = the FULL log-likelihood at the fitted mu (dbinom incl. log choose(n,k),
#                   dpois incl. -lgamma(y+1), dgamma with shape 1/phi and scale mu*phi),
#                   S = sum_j sp_j S_j (the penalties stored in g$smooth, i.e. already divided
#                   by S.scale), W = g$working.weights (Newton weights: equal to the Fisher
#                   weights g$weights for binomial/poisson; for Gamma(log) W = y/mu while the
#                   Fisher weights are 1), Mp = p - rank(S), phi = 1 (binomial, poisson) or
#                   g$reml.scale (Gamma).  The pieces are in `laplace` so a criterion on
#                   another scale can be compared term by term.
#   sp, sp_names    g$sp, one per penalty (here one per smooth), multiplying mgcv's SCALED
#                   penalty S_j (stored) = S_raw_j / S.scale_j.  S_scale per smooth,
#                   lambda = sp / S_scale = the multiplier of the raw penalty (cr: int f''(x)^2
#                   dx in the units of x, on the knot-value basis, before mgcv's sum-to-zero
#                   reparametrization; re: the identity), checked here against
#                   smoothCon(..., scale.penalty = FALSE).
#   scale           g$scale = g$sig2 (1 for binomial/poisson).  For Gamma this is the Pearson
#                   estimate sum(pearson residuals^2)/(n - edf_total) (used by summary and Vp),
#                   NOT the scale in the REML score, which is reml_scale = g$reml.scale (mgcv
#                   optimizes log(phi) jointly with log(sp)).
#   edf_smooth      per smooth, = summary(g)$edf; edf_total = sum(g$edf) (intercept and
#                   parametric terms count 1 each)
#   coef, coef_names g$coefficients in mgcv's parametrization (sum-to-zero absorbed by QR)
#   p_table         summary(g)$p.table: estimate, std_error, stat (stat_name "z value" when the
#                   scale is known, "t value" for Gamma), p_value
#   s_table         summary(g)$s.table: edf, ref_df, stat (stat_name "Chi.sq" or "F"), p_value
#                   (mgcv's own p-values: Wood 2013's reference distributions for smooths, a
#                   different test for bs = "re"; NOT pchisq(stat, ref_df).  mgcv returns 0 for
#                   anything below ~1e-16 (summary prints "<2e-16"); stored as returned)
#   deviance, null_deviance, dev_expl (summary's fraction, not percent), r_sq, aic
#   fitted          g$fitted.values (response scale: probabilities, means);
#   linear_predictor g$linear.predictors (link scale)
#   prior_weights   g$prior.weights (only for the cbind case: the trials; g$y is then the
#                   proportion successes/trials)
#   knots           per smooth (cr only): g$smooth[[i]]$xp
#   outer_conv, outer_iter, outer_grad  g$outer.info (the gradient is with respect to log(sp),
#                   and for Gamma also log(scale) last); converged = g$converged (P-IRLS)
#   warnings, messages  everything the gam call raised (captured)
#   reml_profile    refits at fixed sp = factors * g$sp (one factor per smooth): score =
#                   refit's g$gcv.ubre, also its reml_scale / scale / edf_total.  For Gamma
#                   mgcv still optimizes the scale at fixed sp, so the profile score is the
#                   minimum over phi.
#   grid            (one-smooth fits) 50 equally spaced x from min to max: predict(g, se.fit =
#                   TRUE) on the link scale (fit, se)
#
# gamm4 entries (gamm4(..., family = ...) -> glmer with nAGQ = 1, its default control):
#   minus2loglik    -2 * logLik(m$mer): the Laplace approximation to -2 log marginal
#                   likelihood (= m$mer@devcomp$cmp["dev"], stored as devcomp_dev).  For 0/1
#                   data no log choose term arises.  NOT deviance(m$mer), which for glmer is the
#                   conditional deviance sum(residuals(mer, "deviance")^2), stored as
#                   deviance_conditional (and equal to m$gam$gcv.ubre, which gamm4 fills with it)
#   theta, theta_names  getME(m$mer, "theta"): relative sds (scale 1) of the grouping factor's
#                   intercept AND of each smooth's penalized part (terms "Xr", "Xr.0", ...)
#   fixef, fixef_names  fixef(m$mer): gamm4's fixed columns (X(Intercept), parametric terms,
#                   the smooths' unpenalized null-space columns Xs(x)Fx1), not mgcv's coefs
#   gam_coef, gam_coef_names  coef(m$gam): the same fit in mgcv's gam parametrization
#   sp              m$gam$sp, checked = 1 / theta_smooth^2 (multiplies the SCALED penalty,
#                   as for gam; lambda = sp / S_scale as above)
#   edf_smooth, edf_total, p_table, s_table  from m$gam and summary(m$gam) (gamm4's Ref.df is
#                   the edf)
#   fitted_population  fitted(m$gam) = linkinv(X b) with the smooths' full estimates (fixed
#                   and penalized parts) but WITHOUT the grouping factor's random effects;
#                   linear_predictor_population = m$gam$linear.predictors
#   fitted_conditional  fitted(m$mer): response scale, WITH the grouping random effects
#   ranef           the grouping factor's conditional modes (levels, values)
#   warnings, messages, optinfo_conv  (lme4 convergence messages, if any)
#   gamm4 calls lme4's optimizeGlmer itself (bobyqa, then Nelder_Mead), and its results are
#   NOT bit-reproducible across R processes: over repeated runs of this script the stored
#   numbers moved by up to 1.5e-11 relative in minus2loglik (3e-8 absolute, Contraception),
#   4e-5 relative in theta, 1e-5 in fixef, 7e-5 absolute in edf and 1e-4 absolute in
#   fitted means (Poisson).  A tighter optCtrl did not remove that.  The gam entries are
#   bit-reproducible.
#
# Cases: binom_1smooth (1), binom_multi (2), poisson_2smooth (3), binom_trials (4),
# contraception_gam and contraception_gamm4 (5), gamm4_binom (6), gamm4_poisson (7),
# gamma_log (8).  Cases 1 and 5 have reml_profile at 0.5x and 2x sp (as asked) and every
# other gam entry has it too; multi-smooth fits also get a mixed vector.

suppressPackageStartupMessages({
  library(mgcv)
  library(gamm4)
  library(lme4)
  library(mlmRev)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))   # fmt_num, jnum, jvec, jmat, jchr, read_data
source(file.path(script_dir, "csv_helpers.R"))    # write_data (full precision, checked round trip)

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/mgcv_glm_reference.R")
}

## --- simulated data -----------------------------------------------------------
glabels <- sprintf("g%02d", 1:20)

# written, then read back: every fit below uses what the Python tests read
write_and_read <- function(df, path, factors = character(0)) {
  write_data(df, path)
  back <- read_data(path, factors)
  for (nm in names(df)) {
    if (nm %in% factors) stopifnot(identical(as.character(back[[nm]]), as.character(df[[nm]])))
    else stopifnot(identical(back[[nm]], as.double(df[[nm]])))
  }
  back
}

# 1 and 6: one wiggly smooth; y without, y_re with a random intercept of g (sd 0.7)
set.seed(20240701)
n <- 400
x <- runif(n)
f_b1 <- function(x) 2 * sin(3 * pi * x) + x - 0.5
y <- rbinom(n, 1, plogis(f_b1(x)))
g <- sample(rep(1:20, length.out = n))
b_g <- rnorm(20, sd = 0.7)
y_re <- rbinom(n, 1, plogis(f_b1(x) + b_g[g]))
sim_b1 <- write_and_read(data.frame(x = x, y = y, g = glabels[g], y_re = y_re),
                         "tests/data/sim_glm_binomial.csv", "g")
stopifnot(identical(levels(sim_b1$g), glabels))

# 2: three smooths and a linear term
set.seed(20240702)
n <- 1000
z <- rnorm(n); x1 <- runif(n); x2 <- runif(n); x3 <- runif(n)
eta <- -0.3 + 0.8 * z + 1.5 * sin(2 * pi * x1) + 2 * exp(-10 * (x2 - 0.4)^2) - 1 +
  1.2 * (2 * x3 - 1)^2 - 0.4
y <- rbinom(n, 1, plogis(eta))
sim_bm <- write_and_read(data.frame(y = y, z = z, x1 = x1, x2 = x2, x3 = x3),
                         "tests/data/sim_glm_binomial_multi.csv")

# 3 and 7: Poisson counts, two smooths; y_re with a random intercept of g (sd 0.7)
set.seed(20240703)
n <- 500
x1 <- runif(n); x2 <- runif(n)
f_p <- function(x1, x2) 0.8 + 0.8 * sin(2 * pi * x1) + 1.2 * exp(-8 * (x2 - 0.3)^2) - 0.5
y <- rpois(n, exp(f_p(x1, x2)))
g <- sample(rep(1:20, length.out = n))
b_g <- rnorm(20, sd = 0.7)
y_re <- rpois(n, exp(f_p(x1, x2) + b_g[g]))
sim_p <- write_and_read(data.frame(x1 = x1, x2 = x2, y = y, g = glabels[g], y_re = y_re),
                        "tests/data/sim_glm_poisson.csv", "g")
stopifnot(identical(levels(sim_p$g), glabels))

# 4: binomial with 1..20 trials per row
set.seed(20240704)
n <- 300
x <- runif(n)
trials <- sample(1:20, n, replace = TRUE)
successes <- rbinom(n, trials, plogis(1.5 * sin(2 * pi * x) - 0.3 + x))
sim_bt <- write_and_read(data.frame(x = x, successes = successes, failures = trials - successes,
                                    trials = trials),
                         "tests/data/sim_glm_binomial_trials.csv")

# 8: positive responses, Gamma with shape 4 (scale 1/4) and log mean 0.5 + sin(2 pi x) + x
set.seed(20240708)
n <- 400
x <- runif(n)
mu <- exp(0.5 + sin(2 * pi * x) + x)
y <- rgamma(n, shape = 4, rate = 4 / mu)
sim_ga <- write_and_read(data.frame(x = x, y = y), "tests/data/sim_glm_gamma.csv")

## --- Contraception --------------------------------------------------------------
con_raw <- read.csv("sklmm/datasets/data/contraception.csv", colClasses = "character")
stopifnot(identical(names(con_raw), c("woman", "district", "use", "livch", "age", "urban")),
          all(con_raw$use %in% c("N", "Y")))
district_levels <- as.character(sort(unique(as.integer(con_raw$district))))
contra <- data.frame(
  use = as.numeric(con_raw$use == "Y"),
  age = as.numeric(con_raw$age),
  livch = factor(con_raw$livch, levels = c("0", "1", "2", "3+")),
  urban = factor(con_raw$urban, levels = c("N", "Y")),
  district = factor(con_raw$district, levels = district_levels)
)
mc <- mlmRev::Contraception
stopifnot(!anyNA(contra), nlevels(contra$district) == 60,
          identical(levels(contra$district), levels(mc$district)),
          identical(as.character(contra$district), as.character(mc$district)),
          identical(levels(contra$livch), levels(mc$livch)),
          identical(as.character(contra$livch), as.character(mc$livch)),
          identical(levels(contra$urban), levels(mc$urban)),
          identical(as.character(contra$urban), as.character(mc$urban)),
          identical(contra$use, as.numeric(mc$use == "Y")),
          identical(contra$age, as.numeric(mc$age)))

## --- helpers ---------------------------------------------------------------------
# Evaluate expr, collecting (and muffling) its warnings and messages.
capture <- function(expr) {
  warns <- character(0)
  msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    })
  list(value = val, warnings = warns, messages = msgs)
}

# Full log-likelihood at mean mu (scale phi) for the families used here.
loglik_fun <- function(fam, y, w, mu, phi) {
  switch(fam,
    binomial = sum(dbinom(round(y * w), round(w), mu, log = TRUE)),
    poisson = sum(dpois(y, mu, log = TRUE)),
    Gamma = sum(dgamma(y, shape = 1 / phi, scale = mu * phi, log = TRUE)),
    stop("family"))
}

# The pieces of the Laplace REML score (formula in the header), evaluated independently of
# mgcv's own code from the fitted object's matrices.
laplace_reml <- function(h) {
  X <- predict(h, type = "lpmatrix")
  p <- ncol(X)
  sp <- if (length(h$sp)) h$sp else h$full.sp
  S <- matrix(0, p, p)
  j <- 0
  for (s in h$smooth) {
    idx <- s$first.para:s$last.para
    for (Sk in s$S) {
      j <- j + 1
      S[idx, idx] <- S[idx, idx] + sp[j] * Sk
    }
  }
  stopifnot(j == length(sp))
  b <- coef(h)
  fam <- h$family$family
  phi <- if (h$scale.estimated) h$reml.scale else 1
  ll <- loglik_fun(fam, h$y, h$prior.weights, fitted(h), phi)
  ev <- eigen(S, symmetric = TRUE, only.values = TRUE)$values
  ev <- ev[ev > max(ev) * 1e-10]
  Mp <- p - length(ev)
  W <- h$working.weights
  ldH <- as.numeric(determinant(crossprod(X, W * X) + S)$modulus)
  ldS <- sum(log(ev))
  bSb <- drop(crossprod(b, S %*% b))
  V <- -ll + bSb / (2 * phi) + (ldH - ldS) / 2 - Mp / 2 * log(2 * pi * phi)
  list(V = V, loglik = ll, bSb = bSb, logdet_H = ldH, logdet_S_plus = ldS, Mp = Mp, phi = phi,
       X = X, S = S)
}

p_table_json <- function(pt) {
  list(terms = jchr(rownames(pt)), estimate = jvec(pt[, 1]), std_error = jvec(pt[, 2]),
       stat = jvec(pt[, 3]), stat_name = colnames(pt)[3], p_value = jvec(pt[, 4]))
}
s_table_json <- function(st) {
  list(terms = jchr(rownames(st)), edf = jvec(st[, "edf"]), ref_df = jvec(st[, "Ref.df"]),
       stat = jvec(st[, 3]), stat_name = colnames(st)[3], p_value = jvec(st[, 4]))
}

smooth_bs <- function(s) {
  if (inherits(s, "cr.smooth")) "cr" else if (inherits(s, "random.effect")) "re" else stop("bs")
}

# mgcv's raw (unscaled) penalty of smooth s, rebuilt with scale.penalty = FALSE
check_S_scale <- function(s, data) {
  spec <- eval(parse(text = sprintf('s(%s, bs = "%s", k = %d)', s$term, smooth_bs(s), s$bs.dim)))
  raw <- smoothCon(spec, data = data, absorb.cons = TRUE, scale.penalty = FALSE)[[1]]
  stopifnot(max(abs(raw$S[[1]] - s$S[[1]] * s$S.scale)) <= 1e-10 * max(abs(raw$S[[1]])))
}

# canonical links: Newton and Fisher weights coincide
canonical <- function(fam) fam$family %in% c("binomial", "poisson") &&
  fam$link %in% c("logit", "log")

gam_entry <- function(key, form_str, fam, data, data_name, response,
                      profile = list(c(0.5), c(2)), grid_var = NULL) {
  form <- as.formula(form_str)
  r <- capture(gam(form, data = data, family = fam, method = "REML"))
  g <- r$value
  s <- summary(g)
  sm <- g$smooth
  nsm <- length(sm)
  stopifnot(length(g$sp) == nsm)      # one penalty per smooth here
  sp <- unname(g$sp)
  edf_smooth <- vapply(sm, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
  stopifnot(isTRUE(all.equal(edf_smooth, as.numeric(s$edf), tolerance = 1e-12)),
            identical(rownames(s$s.table), vapply(sm, function(s) s$label, "")))
  for (si in sm) check_S_scale(si, data)

  lap <- laplace_reml(g)
  stopifnot(isTRUE(all.equal(lap$V, as.numeric(g$gcv.ubre), tolerance = 1e-9)))
  X <- lap$X
  eta <- drop(X %*% coef(g))
  stopifnot(max(abs(eta - g$linear.predictors)) < 1e-10 * max(1, abs(eta)),
            max(abs(g$family$linkinv(eta) - g$fitted.values)) < 1e-12 * max(1, g$fitted.values),
            isTRUE(all.equal(g$scale, g$sig2, tolerance = 1e-14)))
  # Vp = (X'W_F X + S)^{-1} * scale with the Fisher weights g$weights and g$scale
  Vp_chk <- solve(crossprod(X, g$weights * X) + lap$S) * g$scale
  stopifnot(max(abs(Vp_chk - g$Vp)) < 1e-8 * max(abs(g$Vp)))
  if (canonical(g$family)) {
    stopifnot(max(abs(g$weights - g$working.weights)) < 1e-10 * max(g$weights))
  }
  if (g$scale.estimated) {
    pear <- sum(residuals(g, "pearson")^2) / (nrow(data) - sum(g$edf))
    stopifnot(isTRUE(all.equal(g$scale, pear, tolerance = 1e-10)))
  } else {
    stopifnot(g$scale == 1)
  }

  smooths <- lapply(seq_len(nsm), function(i) {
    si <- sm[[i]]
    list(label = si$label, term = si$term, bs = smooth_bs(si), k = si$bs.dim,
         first_para = si$first.para, last_para = si$last.para,   # 1-based into coef
         sp = jnum(sp[i]), S_scale = jnum(si$S.scale), lambda = jnum(sp[i] / si$S.scale),
         edf = jnum(edf_smooth[i]),
         knots = if (inherits(si, "cr.smooth")) jvec(si$xp) else NULL)
  })

  # REML score at fixed sp
  prof <- lapply(profile, function(fac) {
    fac <- rep_len(fac, nsm)
    spf <- sp * fac
    rh <- capture(gam(form, data = data, family = fam, method = "REML", sp = spf))
    h <- rh$value
    stopifnot(isTRUE(all.equal(unname(h$full.sp), spf, tolerance = 1e-14)))
    hl <- laplace_reml(h)
    # at fixed sp mgcv stops P-IRLS after fewer iterations (default epsilon 1e-7), and its
    # score uses the last iteration's weights: agreement is ~1e-9 relative (1e-6 absolute)
    stopifnot(isTRUE(all.equal(hl$V, as.numeric(h$gcv.ubre), tolerance = 1e-8)))
    list(factors = jvec(fac), sp = jvec(spf), score = jnum(h$gcv.ubre), score_formula = jnum(hl$V),
         reml_scale = jnum(hl$phi), scale = jnum(h$scale), edf_total = jnum(sum(h$edf)),
         loglik = jnum(hl$loglik), bSb = jnum(hl$bSb), logdet_H = jnum(hl$logdet_H),
         logdet_S_plus = jnum(hl$logdet_S_plus),
         warnings = jchr(rh$warnings))
  })
  # re-evaluating at the optimum reproduces the minimized score
  h1 <- suppressWarnings(gam(form, data = data, family = fam, method = "REML", sp = sp))
  stopifnot(isTRUE(all.equal(as.numeric(h1$gcv.ubre), as.numeric(g$gcv.ubre), tolerance = 1e-8)))

  conv <- g$outer.info$conv
  cat(sprintf("%-20s %-8s REML=%.8f sp=[%s] edf=[%s] scale=%.6g reml.scale=%.6g dev=%.5f conv=%s%s\n",
              key, g$family$family, g$gcv.ubre, paste(sprintf("%.5g", sp), collapse = ", "),
              paste(sprintf("%.4f", edf_smooth), collapse = ", "), g$scale,
              if (g$scale.estimated) g$reml.scale else 1, g$deviance,
              if (is.null(conv)) "NA" else conv,
              if (length(r$warnings)) paste0(" WARNINGS: ", paste(r$warnings, collapse = " | ")) else ""))

  out <- list(
    type = "gam", formula = form_str, family = g$family$family, link = g$family$link,
    method = "REML", data = data_name, nobs = nrow(data), response = response,
    reml_score = jnum(g$gcv.ubre),
    scale_estimated = isTRUE(as.logical(g$scale.estimated)),
    scale = jnum(g$scale), sig2 = jnum(g$sig2),
    reml_scale = jnum(if (g$scale.estimated) g$reml.scale else 1),
    sp = jvec(sp), sp_names = jchr(names(g$sp)),
    S_scale = jvec(vapply(sm, function(s) s$S.scale, 0)),
    lambda = jvec(sp / vapply(sm, function(s) s$S.scale, 0)),
    smooth_labels = jchr(vapply(sm, function(s) s$label, "")),
    edf_smooth = jvec(edf_smooth), edf_total = jnum(sum(g$edf)),
    coef = jvec(coef(g)), coef_names = jchr(names(coef(g))),
    p_table = p_table_json(s$p.table), s_table = s_table_json(s$s.table),
    deviance = jnum(g$deviance), null_deviance = jnum(g$null.deviance),
    dev_expl = jnum(s$dev.expl), r_sq = jnum(s$r.sq), aic = jnum(g$aic),
    fitted = jvec(g$fitted.values), linear_predictor = jvec(g$linear.predictors),
    prior_weights = if (any(g$prior.weights != 1)) jvec(g$prior.weights) else NULL,
    knots = lapply(sm, function(s) if (inherits(s, "cr.smooth")) jvec(s$xp) else NULL),
    smooths = smooths,
    laplace = list(score_formula = jnum(lap$V), loglik = jnum(lap$loglik), bSb = jnum(lap$bSb), logdet_H = jnum(lap$logdet_H),
                   logdet_S_plus = jnum(lap$logdet_S_plus), Mp = lap$Mp, phi = jnum(lap$phi)),
    converged = isTRUE(g$converged),
    outer_conv = if (is.null(conv)) NULL else conv,
    outer_iter = if (is.null(g$outer.info$iter)) NULL else g$outer.info$iter,
    outer_grad = if (is.null(g$outer.info$grad)) NULL else jvec(g$outer.info$grad),
    warnings = jchr(r$warnings), messages = jchr(r$messages),
    reml_profile = prof
  )
  if (!is.null(grid_var)) {
    xv <- data[[grid_var]]
    grid <- seq(min(xv), max(xv), length.out = 50)
    nd <- data.frame(grid)
    names(nd) <- grid_var
    pr <- predict(g, newdata = nd, se.fit = TRUE)
    out$grid <- list(x = jvec(grid), fit_link = jvec(pr$fit), se_link = jvec(pr$se.fit))
  }
  out
}

gamm4_entry <- function(key, form_str, random_str, fam, data, data_name, response, group) {
  r <- capture(gamm4(as.formula(form_str), random = as.formula(random_str), family = fam,
                     data = data))
  m <- r$value
  mer <- m$mer
  G <- m$gam
  ll <- logLik(mer)
  m2ll <- -2 * as.numeric(ll)
  stopifnot(isTRUE(all.equal(m2ll, unname(mer@devcomp$cmp[["dev"]]), tolerance = 1e-12)),
            isTRUE(all.equal(deviance(mer), as.numeric(G$gcv.ubre), tolerance = 1e-12)))
  theta <- getME(mer, "theta")
  sm <- G$smooth
  sg <- summary(G)
  edf_smooth <- vapply(sm, function(s) sum(G$edf[s$first.para:s$last.para]), 0)
  stopifnot(isTRUE(all.equal(edf_smooth, as.numeric(sg$edf), tolerance = 1e-12)))
  # gamm4's sp = 1/theta^2 of each smooth's penalized random effect (scale 1); lme4 orders
  # the terms its own way (e.g. g, Xr.0, Xr), so match theta "Xr[.j].<label>" by label
  th_sm <- theta[grepl("^Xr", names(theta))]
  th_sm <- th_sm[match(vapply(sm, function(s) s$label, ""),
                       sub("^Xr(\\.[0-9]+)?\\.", "", names(th_sm)))]
  stopifnot(length(th_sm) == length(sm), !anyNA(th_sm),
            isTRUE(all.equal(unname(G$sp), unname(1 / th_sm^2), tolerance = 1e-8)))
  Xp <- predict(G, type = "lpmatrix")
  eta_pop <- drop(Xp %*% coef(G))
  stopifnot(max(abs(eta_pop - G$linear.predictors)) < 1e-10 * max(1, abs(eta_pop)),
            max(abs(fam$linkinv(eta_pop) - fitted(G))) < 1e-12 * max(1, fitted(G)))
  fit_cond <- fitted(mer)
  re <- ranef(mer)[[group]]
  stopifnot(identical(rownames(re), levels(data[[group]])))
  # conditional = population + the grouping factor's effect (the smooth's own random part is in both)
  stopifnot(max(abs(fam$linkfun(fit_cond) - (eta_pop + re[as.integer(data[[group]]), 1]))) < 1e-7)
  conv_msgs <- mer@optinfo$conv$lme4$messages
  cat(sprintf("%-20s %-8s -2logLik=%.8f theta=[%s] edf=[%s] sp=[%s]%s\n", key, fam$family, m2ll,
              paste(sprintf("%.6g", theta), collapse = ", "),
              paste(sprintf("%.4f", edf_smooth), collapse = ", "),
              paste(sprintf("%.5g", G$sp), collapse = ", "),
              if (length(r$warnings) + length(conv_msgs))
                paste0(" WARNINGS: ", paste(c(r$warnings, conv_msgs), collapse = " | ")) else ""))
  list(
    type = "gamm4", formula = form_str, random = random_str, family = fam$family,
    link = fam$link, data = data_name, nobs = nrow(data), response = response,
    nAGQ = 1L,
    minus2loglik = jnum(m2ll), loglik = jnum(as.numeric(ll)), loglik_df = attr(ll, "df"),
    devcomp_dev = jnum(mer@devcomp$cmp[["dev"]]),
    deviance_conditional = jnum(deviance(mer)),
    theta = jvec(theta), theta_names = jchr(names(theta)),
    fixef = jvec(fixef(mer)), fixef_names = jchr(names(fixef(mer))),
    gam_coef = jvec(coef(G)), gam_coef_names = jchr(names(coef(G))),
    sp = jvec(unname(G$sp)), sp_names = jchr(names(G$sp)),
    S_scale = jvec(vapply(sm, function(s) s$S.scale, 0)),
    lambda = jvec(unname(G$sp) / vapply(sm, function(s) s$S.scale, 0)),
    smooth_labels = jchr(vapply(sm, function(s) s$label, "")),
    edf_smooth = jvec(edf_smooth), edf_total = jnum(sum(G$edf)),
    p_table = p_table_json(sg$p.table), s_table = s_table_json(sg$s.table),
    fitted_population = jvec(fitted(G)), linear_predictor_population = jvec(G$linear.predictors),
    fitted_conditional = jvec(fit_cond),
    ranef = list(group = group, levels = jchr(rownames(re)), values = jvec(re[, 1])),
    knots = lapply(sm, function(s) jvec(s$xp)),
    warnings = jchr(r$warnings), messages = jchr(r$messages),
    optinfo_conv = jchr(conv_msgs), optimizer = jchr(mer@optinfo$optimizer)
  )
}

## --- fits ----------------------------------------------------------------------------
t_start <- proc.time()[["elapsed"]]
mixed <- function(k) lapply(list(0.5, 2, c(0.5, rep(2, k - 1))), function(f) rep_len(f, k))
cases <- list()

cases$binom_1smooth <- gam_entry(
  "binom_1smooth", 'y ~ s(x, bs = "cr", k = 10)', binomial(), sim_b1, "sim_glm_binomial.csv",
  "y (0/1)", grid_var = "x")
cases$binom_multi <- gam_entry(
  "binom_multi", 'y ~ z + s(x1, bs = "cr", k = 10) + s(x2, bs = "cr", k = 10) + s(x3, bs = "cr", k = 8)',
  binomial(), sim_bm, "sim_glm_binomial_multi.csv", "y (0/1)", profile = mixed(3))
cases$poisson_2smooth <- gam_entry(
  "poisson_2smooth", 'y ~ s(x1, bs = "cr", k = 10) + s(x2, bs = "cr", k = 10)', poisson(),
  sim_p, "sim_glm_poisson.csv", "y (counts)", profile = mixed(2))
cases$binom_trials <- gam_entry(
  "binom_trials", 'cbind(successes, failures) ~ s(x, bs = "cr", k = 10)', binomial(), sim_bt,
  "sim_glm_binomial_trials.csv",
  "cbind(successes, failures): g$y = successes/trials, prior weights = trials", grid_var = "x")
cases$contraception_gam <- gam_entry(
  "contraception_gam", 'use ~ s(age, bs = "cr", k = 10) + livch + urban + s(district, bs = "re")',
  binomial(), contra, "contraception.csv", "use = 1 if 'Y', 0 if 'N'", profile = mixed(2))
cases$contraception_gamm4 <- gamm4_entry(
  "contraception_gamm4", 'use ~ s(age, bs = "cr", k = 10) + livch + urban', "~(1 | district)",
  binomial(), contra, "contraception.csv", "use = 1 if 'Y', 0 if 'N'", "district")
cases$gamm4_binom <- gamm4_entry(
  "gamm4_binom", 'y_re ~ s(x, bs = "cr", k = 10)', "~(1 | g)", binomial(), sim_b1,
  "sim_glm_binomial.csv", "y_re (0/1, simulated with the g random intercept)", "g")
cases$gamm4_poisson <- gamm4_entry(
  "gamm4_poisson", 'y_re ~ s(x1, bs = "cr", k = 10) + s(x2, bs = "cr", k = 10)', "~(1 | g)",
  poisson(), sim_p, "sim_glm_poisson.csv", "y_re (counts, simulated with the g random intercept)",
  "g")
cases$gamma_log <- gam_entry(
  "gamma_log", 'y ~ s(x, bs = "cr", k = 10)', Gamma(link = "log"), sim_ga, "sim_glm_gamma.csv",
  "y (positive)", grid_var = "x")
cat(sprintf("fits took %.1f s\n", proc.time()[["elapsed"]] - t_start))

## --- write -----------------------------------------------------------------------------
out <- c(cases, list(meta = list(
  r_version = R.version.string,
  mgcv_version = as.character(packageVersion("mgcv")),
  gamm4_version = as.character(packageVersion("gamm4")),
  lme4_version = as.character(packageVersion("lme4")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = "tools/mgcv_glm_reference.R",
  contraception_coding = paste(
    "use = 1 if 'Y' else 0; livch levels 0,1,2,3+; urban levels N,Y;",
    "district levels 1..61 in numeric order (no 54), 60 levels; age as in the CSV (centred)"),
  notes = paste(
    "gam reml_score = g$gcv.ubre, Laplace REML, a negative restricted log-likelihood:",
    "-l(b;phi) + b'Sb/(2phi) + (log|X'WX+S| - log|S|_+)/2 - Mp/2 log(2 pi phi), l the full",
    "log-likelihood (incl. log choose / lgamma(y+1) / Gamma's normalizing terms), W the Newton",
    "weights g$working.weights, phi = 1 or g$reml.scale (Gamma); pieces in 'laplace'.",
    "sp multiplies mgcv's scaled penalty; lambda = sp/S_scale multiplies the raw penalty",
    "(cr: int f''^2 in x units).  scale = g$scale (Gamma: Pearson estimate, used by summary);",
    "reml_scale = g$reml.scale (the scale in the REML score).",
    "reml_profile: refits with sp = factors*sp fixed (Gamma: scale re-optimized).",
    "gamm4: minus2loglik = -2 logLik(mer) (Laplace, = devcomp dev); deviance_conditional =",
    "deviance(mer) (conditional deviance, not -2 logLik); fitted_population = fitted(m$gam)",
    "(no grouping random effects); fitted_conditional = fitted(m$mer) (with them);",
    "sp = 1/theta_Xr^2; gamm4 numbers vary across R processes (theta ~4e-5 relative,",
    "-2logLik ~1.5e-11 relative), gam numbers are bit-reproducible.",
    "s_table p-values are mgcv's (not pchisq(stat, ref_df)); 0 means below ~1e-16.")
)))

txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/mgcv_glm_reference.json", useBytes = TRUE)
invisible(fromJSON("tests/data/mgcv_glm_reference.json", simplifyVector = FALSE))
cat("wrote tests/data/mgcv_glm_reference.json\n")
