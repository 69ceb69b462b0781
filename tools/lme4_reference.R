#!/usr/bin/env Rscript
# lme4_reference.R -- fit reference linear mixed models with lme4 and store the
# numbers the sklmm test suite compares against.
#
# How to run (from the repository root, after tools/make_datasets.R):
#     Rscript tools/make_datasets.R && Rscript tools/lme4_reference.R
#
# Needs R >= 4.0 with lme4, jsonlite and MASS (Debian/Ubuntu:
#     apt-get install r-base-core r-cran-lme4 r-cran-jsonlite r-cran-mass
# ).  lme4 is only *run* here to produce reference numbers; none of its code
# is copied into sklmm.
#
# Input:  the CSV files the Python tests read (sklmm/datasets/data/*.csv and
#         tests/data/sim_*.csv), with grouping columns turned into factors
#         whose levels are the sorted labels (C-locale / code-point order,
#         which is what the Python loaders use too).
# Output: tests/data/lme4_reference.json.  Every double is written with the
#         shortest decimal representation that reads back as the same IEEE
#         double (jsonlite's own number formatting stops at 15 significant
#         digits, so numbers are formatted as text by the helpers in
#         tools/json_helpers.R, which this script sources, and passed verbatim).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

# Shared JSON-number and CSV helpers (fmt_num, jnum, jvec, jmat, jchr, read_data),
# sourced from this script's own directory (Rscript passes the script as
# --file=, spaces coded as "~+~"); "tools" when source()d from the repo root.
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/lme4_reference.R")
}

## --- data ---------------------------------------------------------------------
datasets <- reference_datasets()
# The bundled lme4 data must come back unchanged (same numbers, same levels).
stopifnot(
  isTRUE(all.equal(datasets[["sleepstudy.csv"]], lme4::sleepstudy[, c("Reaction", "Days", "Subject")],
                   tolerance = 0, check.attributes = FALSE)),
  identical(levels(datasets[["sleepstudy.csv"]]$Subject), levels(lme4::sleepstudy$Subject)),
  identical(levels(datasets[["penicillin.csv"]]$plate), levels(lme4::Penicillin$plate)),
  identical(levels(datasets[["pastes.csv"]]$sample), levels(lme4::Pastes$sample)),
  identical(datasets[["dyestuff.csv"]]$Yield, lme4::Dyestuff$Yield)
)

## --- models ------------------------------------------------------------------
models <- list(
  sleep_ri_ml            = list("Reaction ~ Days + (1|Subject)", "sleepstudy.csv", FALSE),
  sleep_ri_reml          = list("Reaction ~ Days + (1|Subject)", "sleepstudy.csv", TRUE),
  sleep_slope_ml         = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", FALSE),
  sleep_slope_reml       = list("Reaction ~ Days + (Days|Subject)", "sleepstudy.csv", TRUE),
  sleep_uncorr_reml      = list("Reaction ~ Days + (Days||Subject)", "sleepstudy.csv", TRUE),
  sleep_noint_slope_reml = list("Reaction ~ Days + (0 + Days|Subject)", "sleepstudy.csv", TRUE),
  dyestuff_reml          = list("Yield ~ 1 + (1|Batch)", "dyestuff.csv", TRUE),
  dyestuff_ml            = list("Yield ~ 1 + (1|Batch)", "dyestuff.csv", FALSE),
  penicillin_reml        = list("diameter ~ 1 + (1|plate) + (1|sample)", "penicillin.csv", TRUE),
  penicillin_ml          = list("diameter ~ 1 + (1|plate) + (1|sample)", "penicillin.csv", FALSE),
  pastes_reml            = list("strength ~ 1 + (1|batch/cask)", "pastes.csv", TRUE),
  pastes_ml              = list("strength ~ 1 + (1|batch/cask)", "pastes.csv", FALSE),
  schools_reml           = list("score ~ 1 + (1|school)", "schools.csv", TRUE),
  schools_ml             = list("score ~ 1 + (1|school)", "schools.csv", FALSE),
  crossed_ml             = list("y ~ x + (x|subj) + (1|item)", "sim_crossed.csv", FALSE),
  crossed_reml           = list("y ~ x + (x|subj) + (1|item)", "sim_crossed.csv", TRUE),
  nested_reml            = list("y ~ x + (1|outer/inner)", "sim_nested.csv", TRUE)
)

ref_entry <- function(key, spec) {
  form_str <- spec[[1]]; data_name <- spec[[2]]; reml <- spec[[3]]
  form <- as.formula(form_str)
  data <- datasets[[data_name]]
  fit <- lmer(form, data = data, REML = reml)

  criterion <- if (reml) getME(fit, "devcomp")$cmp[["REML"]] else deviance(fit)
  stopifnot(isTRUE(all.equal(criterion, -2 * as.numeric(logLik(fit)), tolerance = 1e-12)))

  theta <- getME(fit, "theta")
  lower <- getME(fit, "lower")
  diag_el <- lower == 0
  theta_probe <- 1.5 * unname(theta) + ifelse(diag_el, 0.1, 0)
  devfun <- lmer(form, data = data, REML = reml, devFunOnly = TRUE)
  crit_at_fit <- devfun(unname(theta))
  stopifnot(isTRUE(all.equal(crit_at_fit, criterion, tolerance = 1e-8)))
  criterion_at_probe <- devfun(theta_probe)

  vc <- as.data.frame(VarCorr(fit))
  varcorr <- lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i],
    var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
    var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
    vcov = jnum(vc$vcov[i]),
    sdcor = jnum(vc$sdcor[i])))
  # jsonlite drops NULL list elements unless null = "null"; handled in toJSON.

  re <- ranef(fit)
  ranef_out <- lapply(names(re), function(g) {
    m <- as.matrix(re[[g]])
    list(levels = jchr(rownames(m)), columns = jchr(colnames(m)), values = jmat(m))
  })
  names(ranef_out) <- names(re)

  msgs <- fit@optinfo$conv$lme4$messages
  cat(sprintf("%-24s crit=%.6f sigma=%.6f theta=[%s] singular=%s%s\n", key, criterion,
              sigma(fit), paste(sprintf("%.5f", theta), collapse = ", "), isSingular(fit),
              if (length(msgs)) paste0("  MESSAGES: ", paste(msgs, collapse = "; ")) else ""))

  list(
    formula = form_str,
    data = data_name,
    reml = reml,
    criterion = jnum(criterion),
    loglik = jnum(as.numeric(logLik(fit))),
    aic = jnum(AIC(fit)),
    bic = jnum(BIC(fit)),
    nobs = nobs(fit),
    sigma = jnum(sigma(fit)),
    theta = jvec(theta),
    theta_names = jchr(names(theta)),
    theta_lower = jvec(ifelse(is.finite(lower), lower, NA)),   # 0 = diagonal, null = off-diagonal (-Inf)
    beta = jvec(fixef(fit)),
    beta_names = jchr(names(fixef(fit))),
    varcorr = varcorr,
    ranef = ranef_out,
    fitted = jvec(fitted(fit)),
    is_singular = isSingular(fit),
    optimizer_evals = fit@optinfo$feval,
    optimizer = fit@optinfo$optimizer,
    lme4_messages = jchr(if (is.null(msgs)) character(0) else msgs),
    theta_probe = jvec(theta_probe),
    criterion_at_probe = jnum(criterion_at_probe)
  )
}

out <- list()
for (key in names(models)) out[[key]] <- ref_entry(key, models[[key]])

## --- fixed-effects fallback ------------------------------------------------------
ss <- datasets[["sleepstudy.csv"]]
lmfit <- lm(Reaction ~ Days, data = ss)
out[["sleep_lm"]] <- list(
  formula = "Reaction ~ Days",
  data = "sleepstudy.csv",
  beta = jvec(coef(lmfit)),
  beta_names = jchr(names(coef(lmfit))),
  sigma = jnum(summary(lmfit)$sigma),
  loglik_ml = jnum(as.numeric(logLik(lmfit))),
  nobs = nobs(lmfit)
)

out[["meta"]] <- list(
  r_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  matrix_version = as.character(packageVersion("Matrix")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = "tools/lme4_reference.R",
  notes = paste(
    "criterion: deviance(fit) for ML fits, REML criterion for REML fits (= -2*logLik).",
    "theta_probe: 1.5*theta + 0.1 on diagonal elements (theta_lower == 0), 1.5*theta on off-diagonals;",
    "criterion_at_probe: lmer(..., devFunOnly=TRUE)(theta_probe) with the same REML setting.",
    "Factor levels are the sorted labels (code-point order).")
)

txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/lme4_reference.json", useBytes = TRUE)
# validate
invisible(fromJSON("tests/data/lme4_reference.json", simplifyVector = FALSE))
cat("wrote tests/data/lme4_reference.json\n")
