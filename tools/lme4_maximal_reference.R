#!/usr/bin/env Rscript
# lme4_maximal_reference.R -- maximal crossed models with many covariance parameters (the
# kb07 shape: subjects x items, three +-1 contrasts, (1 + spkr + prec + load | subj) +
# (1 + spkr + prec + load | item), 20 theta), for the gradient-based optimizer's tests.
#
# How to run (from the repository root):
#     Rscript tools/lme4_maximal_reference.R
# Needs R with lme4, lmerTest and jsonlite (Debian: apt-get install r-cran-lme4
# r-cran-lmertest r-cran-jsonlite): lmerTest's Satterthwaite df at lme4's optimum, for the
# df of these (singular) fits.
# Output: tests/data/sim_maximal.csv (the simulated data, generated here with set.seed) and
# tests/data/lme4_maximal_reference.json. lme4 and lmerTest are only run here; none of their
# code is copied.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

## kb07-shaped data: 30 subjects x 20 items, fully crossed, 8 cells dropped at random
set.seed(20261202)
n_subj <- 30; n_item <- 20
d <- expand.grid(item = seq_len(n_item), subj = seq_len(n_subj))[, c("subj", "item")]
d <- d[-sample(nrow(d), 8), ]
n <- nrow(d)
C <- cbind(1, matrix(sample(c(-1, 1), 3 * n, replace = TRUE), n, 3))
s <- matrix(rnorm(4 * n_subj), n_subj) %*% diag(c(300, 50, 100, 30))
w <- matrix(rnorm(4 * n_item), n_item) %*% diag(c(350, 20, 200, 40))
d$spkr <- C[, 2]; d$prec <- C[, 3]; d$load <- C[, 4]
d$y <- round(drop(C %*% c(2000, 60, -330, 80)) + rowSums(C * (s[d$subj, ] + w[d$item, ])) +
               rnorm(n, 0, 700), 6)
d$subj <- sprintf("S%02d", d$subj)
d$item <- sprintf("I%02d", d$item)
write.csv(d[, c("y", "spkr", "prec", "load", "subj", "item")], "tests/data/sim_maximal.csv",
          row.names = FALSE)
d <- read.csv("tests/data/sim_maximal.csv")  # exactly what the Python tests read
d$subj <- factor(d$subj); d$item <- factor(d$item)

formulas <- c(
  maximal = "y ~ spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)",
  zerocorr = "y ~ spkr + prec + load + (1 + spkr + prec + load || subj) + (1 + spkr + prec + load || item)"
)
out <- list()
for (nm in names(formulas)) {
  for (reml in c(FALSE, TRUE)) {
    # the best of lme4's optimizers, each with tight tolerances (the reference is lme4's optimum)
    best <- NULL
    for (opt in c("bobyqa", "Nelder_Mead", "nloptwrap")) {
      ctrl <- lmerControl(optimizer = opt, optCtrl = if (opt == "bobyqa") list(maxfun = 1e5) else list(),
                          check.conv.singular = "ignore")
      f <- suppressWarnings(suppressMessages(lmer(as.formula(formulas[[nm]]), data = d, REML = reml,
                                                  control = ctrl)))
      if (is.null(best) || deviance(f, REML = reml) < deviance(best, REML = reml)) best <- f
    }
    f <- best
    key <- paste0(nm, if (reml) "_reml" else "_ml")
    crit <- if (reml) REMLcrit(f) else deviance(f)
    cat(sprintf("%s: criterion %.8f (%s)\n", key, crit, f@optinfo$optimizer))
    out[[key]] <- list(
      formula = formulas[[nm]], reml = reml, criterion = jnum(crit),
      theta = jvec(getME(f, "theta")), beta = jvec(fixef(f)), beta_names = I(names(fixef(f))),
      sigma = jnum(sigma(f)), optimizer = f@optinfo$optimizer,
      is_singular = isSingular(f),
      # lmerTest's Satterthwaite df of the fixed effects at this fit (its summary table)
      df = jvec(summary(lmerTest::as_lmerModLmerTest(f))$coefficients[, "df"])
    )
  }
}
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE),
           "tests/data/lme4_maximal_reference.json")
