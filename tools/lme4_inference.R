#!/usr/bin/env Rscript
# lme4_inference.R -- reference numbers for sklmm's inference features
# (covariance of the fixed effects, Satterthwaite df, Wald / profile /
# bootstrap confidence intervals, conditional variances of the random effects,
# likelihood-ratio tests, prediction standard errors, prior weights).
#
# How to run (from the repository root, after tools/make_datasets.R):
#     Rscript tools/lme4_inference.R
# It takes about a minute on two cores.
#
# Needs R >= 4.0 with lme4, lmerTest, pbkrtest, jsonlite and MASS
# (Debian/Ubuntu: apt-get install r-cran-lme4 r-cran-lmertest r-cran-pbkrtest
# r-cran-jsonlite r-cran-mass).  lme4, lmerTest and pbkrtest are only *run*
# here to produce reference numbers; none of their code is copied into sklmm.
#
# Input:  the same CSV files, model keys and lme4 formulas as
#         tools/lme4_reference.R (grouping columns become factors whose levels
#         are the sorted labels, C-locale / code-point order).
# Output: tests/data/lme4_inference.json with the top-level keys
#           versions  R and package versions
#           meta      generator, seeds and notes on definitions
#           models    one entry per model key (fits with lmerTest::lmer, which
#                     is the lme4 fit plus Satterthwaite df)
#           anova     likelihood-ratio tests from lme4's anova(small, large),
#                     one with a pbkrtest parametric-bootstrap LRT
#           weights   fits with prior weights
#         Doubles are written with the shortest decimal representation that
#         reads back as the same IEEE double (helpers in tools/json_helpers.R);
#         NA (e.g. a profile limit lme4 could not find) is written as null.
#         Warnings, errors and messages raised by any step are recorded, not
#         fatal, under models[key]$issues (and likewise for the other parts).
#
# The bootstrap numbers depend on R's random number generator; compare them
# in distribution, not digit for digit.  Apart from them, reruns are identical
# except for last-digit jitter in some fits (seen: penicillin, about 1e-10
# relative in theta, up to 2e-7 in profile limits and Satterthwaite df) that
# differs between R processes even with identical code -- floating-point
# summation order, not randomness -- so compare with tolerances.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

# Shared JSON-number and CSV helpers (fmt_num, jnum, jvec, jmat, jchr, read_data),
# sourced from this script's own directory (Rscript passes the script as
# --file=, spaces coded as "~+~"); "tools" when source()d from the repo root.
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/lme4_inference.R")
}

t_start <- proc.time()[["elapsed"]]
BOOT_SEED <- 20261121L
BOOT_NSIM <- 1000L
PB_SEED <- 20261122L
PB_NSIM <- 500L
PB_TIME_LIMIT <- 60      # seconds; the parametric-bootstrap LRT is skipped beyond this

## --- data ---------------------------------------------------------------------
datasets <- reference_datasets()

## --- helpers ------------------------------------------------------------------
# A log of the warnings, errors and messages raised while computing one entry.
# Each distinct (step, type, message) is kept once, with a count.
new_log <- function() {
  env <- new.env()
  env$items <- list()
  env$add <- function(step, type, msg) {
    msg <- trimws(msg)
    id <- paste(step, type, msg, sep = "\r")
    if (is.null(env$items[[id]])) {
      env$items[[id]] <- list(step = step, type = type, message = msg, count = 1L)
    } else {
      env$items[[id]]$count <- env$items[[id]]$count + 1L
    }
  }
  env
}
log_json <- function(log) unname(log$items)

# Progress messages that carry no information about the fit.
quiet_msg <- "^Computing (profile|bootstrap) confidence intervals"

# Evaluate expr; warnings and messages go to the log (muffled), an error is
# logged and gives NULL so that the script keeps going.
run_step <- function(log, step, expr) {
  withCallingHandlers(
    tryCatch(expr, error = function(e) {
      log$add(step, "error", conditionMessage(e))
      NULL
    }),
    warning = function(w) {
      log$add(step, "warning", conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      if (!grepl(quiet_msg, conditionMessage(m))) log$add(step, "message", conditionMessage(m))
      invokeRestart("muffleMessage")
    })
}

# Vectors that may hold NaN / +-Inf (which fmt_num refuses): written as null.
jvec_na <- function(x) {
  x <- as.double(x)
  x[!is.finite(x)] <- NA
  jvec(x)
}

# Array a[p, p, n] (lme4's postVar layout) as a JSON list of n p-by-p matrices.
jarr3 <- function(a) {
  p <- dim(a)[1]
  blocks <- vapply(seq_len(dim(a)[3]), function(k) unclass(jmat(matrix(a[, , k], p, p))), "")
  as_json(paste0("[", paste(blocks, collapse = ","), "]"))
}

# Confidence-interval table (rows = parameters, two columns) as names/lower/upper.
ci_json <- function(ci) {
  if (is.null(ci)) return(NULL)
  list(names = jchr(rownames(ci)), lower = jvec_na(ci[, 1]), upper = jvec_na(ci[, 2]))
}

# Fixed-effects table from lmerTest's summary (Satterthwaite df by default).
fixed_json <- function(fit, log, step = "fixed") {
  cf <- run_step(log, step, coef(summary(fit)))
  if (is.null(cf)) return(NULL)
  col <- function(nm) if (nm %in% colnames(cf)) cf[, nm] else rep(NA_real_, nrow(cf))
  if (!"df" %in% colnames(cf)) log$add(step, "error", "no Satterthwaite df in summary(fit)")
  list(
    names = jchr(rownames(cf)),
    estimate = jvec(col("Estimate")),
    std_error = jvec(col("Std. Error")),
    df = jvec_na(col("df")),
    t_value = jvec(col("t value")),
    p_value = jvec_na(col("Pr(>|t|)"))
  )
}

# as.data.frame(ranef(fit, condVar = TRUE)) in long form.
condval_json <- function(re) {
  d <- as.data.frame(re)
  list(
    grpvar = jchr(d$grpvar),
    term = jchr(d$term),
    grp = jchr(d$grp),
    condval = jvec(d$condval),
    condsd = jvec_na(d$condsd)
  )
}

criterion_of <- function(fit) {
  crit <- if (isREML(fit)) getME(fit, "devcomp")$cmp[["REML"]] else deviance(fit)
  stopifnot(isTRUE(all.equal(crit, -2 * as.numeric(logLik(fit)), tolerance = 1e-12)))
  crit
}

# Names used by confint(..., oldNames = FALSE): sd_<term>|<group>, sigma.
sd_names <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  vc <- vc[is.na(vc$var2) & vc$grp != "Residual", ]
  paste0("sd_", vc$var1, "|", sub("\\.[0-9]+$", "", vc$grp))
}

# Statistic for bootMer: sigma, standard deviations of the random effects,
# fixed effects.
boot_stat <- function(x) {
  vc <- as.data.frame(VarCorr(x))
  vc <- vc[is.na(vc$var2) & vc$grp != "Residual", ]
  c(sigma(x), vc$sdcor, fixef(x))
}

## --- prediction standard errors ---------------------------------------------------
# With lme4's matrices X (n x p), Z = t(Zt) (n x q), Lambda = t(Lambdat) and the
# spherical random effects u ~ N(0, sigma^2 I), b = Lambda u, the mixed-model
# equations at the estimated theta are
#     M = [ Lambdat Zt Z Lambda + I    Lambdat Zt X ]
#         [ X' Z Lambda                X' X         ]
# and C = sigma^2 * M^{-1} is the covariance of (u_hat - u, beta_hat - beta)
# given theta (the beta block equals vcov(fit), checked below).  For row i with
# a_i = [z_i' Lambda, x_i'] (row i of [Z Lambda, X]) the conditional prediction
# x_i' beta_hat + z_i' Lambda u_hat (= fitted(fit)[i], seen groups) has
#     se_conditional_i = sqrt(a_i' C a_i),
# and the population-level prediction x_i' beta_hat has
#     se_population_i = sqrt(x_i' vcov(fit) x_i).
# Note: lme4's condVar / postVar is sigma^2 Lambda (Lambdat Zt Z Lambda + I)^{-1}
# Lambdat, i.e. conditional on beta; the u block of C also carries the
# uncertainty of beta_hat, so it is larger.
predict_se_json <- function(fit, rows0) {
  X <- as.matrix(getME(fit, "X"))
  Zt <- getME(fit, "Zt")
  Lambdat <- getME(fit, "Lambdat")
  s <- sigma(fit)
  q <- nrow(Zt)
  p <- ncol(X)
  LtZt <- Lambdat %*% Zt                          # q x n
  ZL <- as.matrix(t(LtZt))                        # n x q  (= Z Lambda)
  M <- rbind(cbind(as.matrix(tcrossprod(LtZt)) + diag(q), t(ZL) %*% X),
             cbind(t(X) %*% ZL, crossprod(X)))
  C <- s^2 * solve(M)
  V <- as.matrix(vcov(fit))
  stopifnot(isTRUE(all.equal(unname(C[q + seq_len(p), q + seq_len(p), drop = FALSE]), unname(V), tolerance = 1e-6)))
  rows <- rows0 + 1L
  A <- cbind(ZL[rows, , drop = FALSE], X[rows, , drop = FALSE])
  se_cond <- sqrt(rowSums((A %*% C) * A))
  Xr <- X[rows, , drop = FALSE]
  se_pop <- sqrt(rowSums((Xr %*% V) * Xr))
  fit_cond <- as.vector(A %*% c(as.vector(getME(fit, "u")), fixef(fit)))
  stopifnot(isTRUE(all.equal(fit_cond, unname(fitted(fit)[rows]), tolerance = 1e-8)))
  list(
    rows = rows0,
    fitted_conditional = jvec(fitted(fit)[rows]),
    fitted_population = jvec(Xr %*% fixef(fit)),
    se_conditional = jvec(se_cond),
    se_population = jvec(se_pop)
  )
}

## --- models ------------------------------------------------------------------
models <- list(
  sleep_ri_reml     = list("Reaction ~ Days + (1|Subject)", "sleepstudy.csv", TRUE),
  sleep_slope_reml  = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", TRUE),
  sleep_slope_ml    = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", FALSE),
  sleep_uncorr_reml = list("Reaction ~ Days + (Days||Subject)", "sleepstudy.csv", TRUE),
  dyestuff_reml     = list("Yield ~ 1 + (1|Batch)", "dyestuff.csv", TRUE),
  dyestuff_ml       = list("Yield ~ 1 + (1|Batch)", "dyestuff.csv", FALSE),
  penicillin_reml   = list("diameter ~ 1 + (1|plate) + (1|sample)", "penicillin.csv", TRUE),
  penicillin_ml     = list("diameter ~ 1 + (1|plate) + (1|sample)", "penicillin.csv", FALSE),
  pastes_reml       = list("strength ~ 1 + (1|batch/cask)", "pastes.csv", TRUE),
  pastes_ml         = list("strength ~ 1 + (1|batch/cask)", "pastes.csv", FALSE),
  crossed_reml      = list("y ~ x + (x|subj) + (1|item)", "sim_crossed.csv", TRUE),
  nested_reml       = list("y ~ x + (1|outer/inner)", "sim_nested.csv", TRUE)
)
bootstrap_keys <- c("sleep_slope_reml", "dyestuff_reml")
PREDICT_ROWS <- 0:9                                 # 0-based row indices

inference_entry <- function(key, spec) {
  form_str <- spec[[1]]; data_name <- spec[[2]]; reml <- spec[[3]]
  data <- datasets[[data_name]]
  log <- new_log()
  t0 <- proc.time()[["elapsed"]]
  fit <- run_step(log, "fit", lmerTest::lmer(as.formula(form_str), data = data, REML = reml))
  if (is.null(fit)) stop("fit failed for ", key)
  for (m in fit@optinfo$conv$lme4$messages) log$add("fit", "lme4_message", m)

  ll <- logLik(fit)
  out <- list(
    formula = form_str,
    data = data_name,
    reml = reml,
    nobs = nobs(fit),
    theta = jvec(getME(fit, "theta")),
    theta_names = jchr(names(getME(fit, "theta"))),
    sigma = jnum(sigma(fit)),
    beta = jvec(fixef(fit)),
    beta_names = jchr(names(fixef(fit))),
    criterion = jnum(criterion_of(fit)),
    loglik = jnum(as.numeric(ll)),
    aic = jnum(AIC(fit)),
    bic = jnum(BIC(fit)),
    df_loglik = attr(ll, "df"),
    is_singular = isSingular(fit)
  )

  out$fixed <- fixed_json(fit, log)
  out$vcov <- jmat(as.matrix(vcov(fit)))

  ci_w <- run_step(log, "confint_wald", confint(fit, method = "Wald", level = 0.95))
  if (!is.null(ci_w)) ci_w <- ci_w[names(fixef(fit)), , drop = FALSE]
  out$confint_wald <- ci_json(ci_w)

  # confint(fit, method = "profile", oldNames = FALSE) is profile(fit,
  # signames = FALSE) followed by confint() on the profile; the profile is
  # computed once (down to alphamax = 0.01) and used for both levels.
  pr <- run_step(log, "profile", profile(fit, signames = FALSE))
  if (!is.null(pr)) {
    out$confint_profile <- ci_json(run_step(log, "confint_profile", confint(pr, level = 0.95)))
    out$confint_profile_90 <- ci_json(run_step(log, "confint_profile_90", confint(pr, level = 0.90)))
  }

  re <- run_step(log, "condvar", ranef(fit, condVar = TRUE))
  if (!is.null(re)) {
    cv <- condval_json(re)
    postvar <- list()
    for (g in names(re)) {
      pv <- attr(re[[g]], "postVar")
      if (is.array(pv) && length(dim(pv)) == 3) {
        postvar[[g]] <- list(terms = jchr(colnames(re[[g]])), levels = jchr(rownames(re[[g]])),
                             values = jarr3(pv))
      } else {
        log$add("condvar", "note", paste0("postvar for '", g, "' not stored: the factor has ",
                                          "several random-effects terms (see condsd)"))
      }
    }
    cv$postvar <- postvar
    out$condvar <- cv
  }

  out$predict_se <- run_step(log, "predict_se", predict_se_json(fit, PREDICT_ROWS))

  if (key %in% bootstrap_keys) {
    ci_b <- run_step(log, "confint_boot", confint(fit, method = "boot", nsim = BOOT_NSIM, seed = BOOT_SEED,
                                                  oldNames = FALSE, boot.type = "perc", level = 0.95))
    bb <- run_step(log, "bootmer", bootMer(fit, FUN = boot_stat, nsim = BOOT_NSIM, seed = BOOT_SEED))
    boot <- list(nsim = BOOT_NSIM, seed = BOOT_SEED, boot_type = "perc", level = 0.95,
                 confint = ci_json(ci_b))
    if (!is.null(bb)) {
      tt <- bb$t
      ok <- stats::complete.cases(tt)
      boot$bootmer <- list(
        names = jchr(c("sigma", sd_names(fit), names(fixef(fit)))),
        t0 = jvec(bb$t0),
        mean = jvec(colMeans(tt[ok, , drop = FALSE])),
        sd = jvec(apply(tt[ok, , drop = FALSE], 2, sd)),
        n_ok = sum(ok)
      )
    }
    out$bootstrap <- boot
  }

  out$issues <- log_json(log)
  cat(sprintf("%-18s %6.1fs  sigma=%.5f  issues=%d\n", key, proc.time()[["elapsed"]] - t0,
              sigma(fit), length(log$items)))
  for (it in log$items) cat(sprintf("    [%s %s x%d] %s\n", it$step, it$type, it$count, it$message))
  list(entry = out, fit = fit)
}

out_models <- list()
fits <- list()
for (key in names(models)) {
  res <- inference_entry(key, models[[key]])
  out_models[[key]] <- res$entry
  fits[[key]] <- res$fit
}

## --- likelihood-ratio tests ----------------------------------------------------------
# lme4's anova(small, large) on lme4::lmer fits; with REML fits it refits both
# models by ML first (refit = TRUE, the default), so chisq and loglik are ML.
comparisons <- list(
  list(data = "sleepstudy.csv", small = "sleep_ri_reml", large = "sleep_slope_reml",
       formula_small = "Reaction ~ Days + (1|Subject)", formula_large = "Reaction ~ Days + (Days|Subject)",
       reml = TRUE, pbmodcomp = TRUE),
  list(data = "sleepstudy.csv", small = "sleep_uncorr_reml", large = "sleep_slope_reml",
       formula_small = "Reaction ~ Days + (Days||Subject)", formula_large = "Reaction ~ Days + (Days|Subject)",
       reml = TRUE),
  list(data = "penicillin.csv", small = "penicillin_plate_only_reml", large = "penicillin_reml",
       formula_small = "diameter ~ 1 + (1|plate)", formula_large = "diameter ~ 1 + (1|plate) + (1|sample)",
       reml = TRUE),
  list(data = "sleepstudy.csv", small = "sleep_slope_nodays_ml", large = "sleep_slope_ml",
       formula_small = "Reaction ~ 1 + (Days|Subject)", formula_large = "Reaction ~ Days + (Days|Subject)",
       reml = FALSE)
)

anova_entry <- function(cmp) {
  log <- new_log()
  data <- datasets[[cmp$data]]
  small <- run_step(log, "fit_small", lme4::lmer(as.formula(cmp$formula_small), data = data, REML = cmp$reml))
  large <- run_step(log, "fit_large", lme4::lmer(as.formula(cmp$formula_large), data = data, REML = cmp$reml))
  a <- run_step(log, "anova", anova(small, large))
  out <- list(data = cmp$data, small = cmp$small, large = cmp$large,
              formula_small = cmp$formula_small, formula_large = cmp$formula_large,
              reml_fits = cmp$reml,
              refit = cmp$reml)          # anova(refit = TRUE) refits only when a model is REML
  if (!is.null(a)) {
    out$npar_small <- a["small", "npar"]
    out$npar_large <- a["large", "npar"]
    out$chisq <- jnum(a["large", "Chisq"])
    out$df <- a["large", "Df"]
    out$p_value <- jnum(a["large", "Pr(>Chisq)"])
    out$loglik_small <- jnum(a["small", "logLik"])
    out$loglik_large <- jnum(a["large", "logLik"])
    out$deviance_small <- jnum(a["small", "deviance"])
    out$deviance_large <- jnum(a["large", "deviance"])
    out$aic_small <- jnum(a["small", "AIC"])
    out$aic_large <- jnum(a["large", "AIC"])
    out$bic_small <- jnum(a["small", "BIC"])
    out$bic_large <- jnum(a["large", "BIC"])
  }
  if (isTRUE(cmp$pbmodcomp)) {
    # pbkrtest (0.5.x) refits both REML models by ML, so its observed LRT
    # statistic equals anova's chisq up to optimizer tolerance; the reference
    # distribution simulates nsim responses from the ML fit of the small
    # model and refits both models to each, and
    # pb_p_value = (1 + #{ref > stat}) / (1 + #{ref > 0}).
    t0 <- proc.time()[["elapsed"]]
    pb <- run_step(log, "pbmodcomp", {
      setTimeLimit(elapsed = PB_TIME_LIMIT, transient = TRUE)
      PBmodcomp(large, small, nsim = PB_NSIM, seed = PB_SEED)
    })
    setTimeLimit(elapsed = Inf)
    el <- proc.time()[["elapsed"]] - t0
    if (!is.null(pb)) {
      tt <- pb$test
      out$pbmodcomp <- list(
        nsim = PB_NSIM, seed = PB_SEED,
        lrt_stat = jnum(tt["LRT", "stat"]), lrt_df = tt["LRT", "df"], lrt_p_value = jnum(tt["LRT", "p.value"]),
        pb_stat = jnum(tt["PBtest", "stat"]), pb_p_value = jnum(tt["PBtest", "p.value"]),
        n_refdist = length(stats::na.omit(pb$ref)),
        n_refdist_positive = sum(pb$ref > 0, na.rm = TRUE),
        n_extreme = sum(pb$ref > tt["LRT", "stat"], na.rm = TRUE)
      )
    } else {
      log$add("pbmodcomp", "note", sprintf("skipped after %.0f s (limit %d s)", el, PB_TIME_LIMIT))
    }
    cat(sprintf("PBmodcomp %.1fs\n", el))
  }
  out$issues <- log_json(log)
  cat(sprintf("anova %s vs %s: chisq=%s issues=%d\n", cmp$small, cmp$large,
              if (is.null(a)) "NA" else format(a["large", "Chisq"]), length(log$items)))
  for (it in log$items) cat(sprintf("    [%s %s x%d] %s\n", it$step, it$type, it$count, it$message))
  out
}
out_anova <- lapply(comparisons, anova_entry)

## --- prior weights ---------------------------------------------------------------------
ss_w <- datasets[["sleepstudy.csv"]]
ss_w$w <- 1 + (ss_w$Days %% 3) / 2
dy_w <- datasets[["dyestuff.csv"]]
dy_w$w <- rep(c(1, 2, 0.5), length.out = nrow(dy_w))
weighted <- list(
  sleep_slope_w_reml = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", TRUE, ss_w,
                            "w = 1 + (Days %% 3) / 2"),
  sleep_slope_w_ml   = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", FALSE, ss_w,
                            "w = 1 + (Days %% 3) / 2"),
  dyestuff_w_reml    = list("Yield ~ 1 + (1|Batch)", "dyestuff.csv", TRUE, dy_w,
                            "w = rep(c(1, 2, 0.5), length.out = 30)")
)

weighted_entry <- function(key, spec) {
  form_str <- spec[[1]]; data_name <- spec[[2]]; reml <- spec[[3]]; data <- spec[[4]]
  log <- new_log()
  fit <- run_step(log, "fit", lmerTest::lmer(as.formula(form_str), data = data, REML = reml, weights = w))
  if (is.null(fit)) stop("fit failed for ", key)
  for (m in fit@optinfo$conv$lme4$messages) log$add("fit", "lme4_message", m)
  stopifnot(isTRUE(all.equal(unname(weights(fit)), data$w)))
  ll <- logLik(fit)
  out <- list(
    formula = form_str, data = data_name, reml = reml,
    weights_rule = spec[[5]],
    weights = jvec(data$w),
    theta = jvec(getME(fit, "theta")),
    theta_names = jchr(names(getME(fit, "theta"))),
    beta = jvec(fixef(fit)),
    beta_names = jchr(names(fixef(fit))),
    sigma = jnum(sigma(fit)),
    criterion = jnum(criterion_of(fit)),
    loglik = jnum(as.numeric(ll)),
    aic = jnum(AIC(fit)),
    bic = jnum(BIC(fit)),
    df_loglik = attr(ll, "df"),
    vcov = jmat(as.matrix(vcov(fit))),
    fitted = jvec(fitted(fit)),
    ranef = condval_json(ranef(fit, condVar = TRUE)),
    fixed = fixed_json(fit, log)
  )
  out$issues <- log_json(log)
  cat(sprintf("%-18s sigma=%.5f issues=%d\n", key, sigma(fit), length(log$items)))
  out
}
out_weights <- list()
for (key in names(weighted)) out_weights[[key]] <- weighted_entry(key, weighted[[key]])

## --- write ------------------------------------------------------------------------------
out <- list(
  versions = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest")),
    pbkrtest = as.character(packageVersion("pbkrtest")),
    Matrix = as.character(packageVersion("Matrix")),
    jsonlite = as.character(packageVersion("jsonlite"))
  ),
  meta = list(
    generated_by = "tools/lme4_inference.R",
    boot_seed = BOOT_SEED, boot_nsim = BOOT_NSIM,
    pb_seed = PB_SEED, pb_nsim = PB_NSIM,
    notes = c(
      "Fits: lmerTest::lmer (the lme4 fit); fixed: summary(fit)$coefficients with Satterthwaite df; vcov: as.matrix(vcov(fit)).",
      "criterion: deviance(fit) for ML fits, REML criterion for REML fits (= -2*logLik). df_loglik = attr(logLik(fit), 'df').",
      "confint_wald: confint(fit, method='Wald', level=0.95), fixed-effect rows only.",
      "confint_profile / confint_profile_90: confint(profile(fit, signames=FALSE), level=0.95 / 0.90), identical to confint(fit, method='profile', oldNames=FALSE); null = limit not found.",
      "condvar: as.data.frame(ranef(fit, condVar=TRUE)); postvar[g].values[k] = attr(ranef(...)[[g]], 'postVar')[, , k] for level k (only for factors with a single term).",
      "predict_se: C = sigma^2 * solve([[Lt Zt Z L + I, Lt Zt X], [X' Z L, X'X]]) (u, beta); se_conditional_i = sqrt(a_i' C a_i), a_i = row i of [Z L, X]; se_population_i = sqrt(x_i' vcov x_i); rows are 0-based.",
      "bootstrap: confint(fit, method='boot', nsim, seed, oldNames=FALSE, boot.type='perc') and bootMer(fit, c(sigma, sds, fixef), nsim, seed) with the same seed, so both summarise the same simulated responses.",
      "anova: lme4 anova(small, large) on lme4::lmer fits; refit = TRUE means both models were refitted by ML; loglik/aic/bic/deviance are from the anova table.",
      "anova[].pbmodcomp (one pair): pbkrtest::PBmodcomp(large, small, nsim, seed); both models refitted by ML; pb_p_value = (1 + n_extreme) / (1 + n_refdist_positive).",
      "weights: lmer(..., weights = w) with the weights listed; ranef is as.data.frame(ranef(fit, condVar=TRUE))."
    )
  ),
  models = out_models,
  anova = out_anova,
  weights = out_weights
)

txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/lme4_inference.json", useBytes = TRUE)
invisible(fromJSON("tests/data/lme4_inference.json", simplifyVector = FALSE))   # validate
cat(sprintf("wrote tests/data/lme4_inference.json (%.1f s)\n", proc.time()[["elapsed"]] - t_start))
