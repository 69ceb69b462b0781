#!/usr/bin/env Rscript
# mgcv_anova_reference.R -- comparing GAMs as mgcv's anova(m0, m1, test = ...) and AIC() do,
# for sklmm.likelihood_ratio_test on PenalizedSplineRegressor / PenalizedSplineClassifier.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_anova_reference.R
# Needs R with mgcv and jsonlite. Writes tests/data/sim_anova.csv (gamSim(1, n = 400), set.seed(3),
# plus a binary response) and tests/data/mgcv_anova_reference.json. mgcv is only run here.
#
# mgcv's anova between GAMs uses the residual df n - sum(edf1) - (sum(edf2) - sum(edf)), where
# edf2 is the edf of the covariance corrected for smoothing-parameter uncertainty,
# Vc = Vp + J V_rho J' + Vc2, J = d beta / d log(sp) and V_rho the inverse Hessian of the REML
# score in log(sp) (and log scale). Its last term Vc2 comes from derivatives of a Cholesky factor
# and depends on mgcv's coefficient basis; sklmm computes the first two. So besides mgcv's own
# edf2, this script computes the first-order edf2 from mgcv's fit: J by central differences of
# mgcv's coefficients over refits at fixed sp, V_rho from mgcv's stored Hessian as mgcv inverts it.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

set.seed(3)
d <- gamSim(1, n = 400, verbose = FALSE)[, c("y", "x0", "x1", "x2", "x3")]
d$b <- rbinom(nrow(d), 1, plogis(d$y / 4 - 2))
write.csv(d, "tests/data/sim_anova.csv", row.names = FALSE)

first_order_edf2 <- function(b, form, family) {
  M <- length(b$sp); h <- 1e-5
  J <- sapply(seq_len(M), function(j) {
    up <- b$sp; up[j] <- up[j] * exp(h); dn <- b$sp; dn[j] <- dn[j] * exp(-h)
    (coef(gam(form, data = d, family = family, sp = up)) - coef(gam(form, data = d, family = family, sp = dn))) / (2 * h)
  })
  ev <- eigen(b$outer.info$hess, symmetric = TRUE)
  dd <- ev$values; ind <- dd <= 0; dd[ind] <- 0; dd[!ind] <- 1 / sqrt(dd[!ind])
  rV <- (dd * t(ev$vectors))[, 1:M, drop = FALSE]
  Vc <- b$Vp + crossprod(rV %*% t(J))
  X <- model.matrix(b)
  sum(rowSums(Vc * crossprod(sqrt(b$weights) * X))) / b$sig2
}
model <- function(form, family = gaussian()) {
  b <- gam(form, data = d, family = family, method = "REML")
  ll <- logLik(b)
  cat(sprintf("%s: edf %.4f edf1 %.4f edf2 %.4f\n", deparse(form), sum(b$edf), sum(b$edf1), sum(b$edf2)))
  list(formula = deparse(form), edf = jnum(sum(b$edf)), edf1 = jnum(sum(b$edf1)), edf2 = jnum(sum(b$edf2)),
       edf2_first_order = jnum(first_order_edf2(b, form, family)), deviance = jnum(deviance(b)),
       sig2 = jnum(b$sig2), aic = jnum(AIC(b)), loglik = jnum(as.numeric(ll)), loglik_df = jnum(attr(ll, "df")),
       fitted = jvec(fitted(b)), model = b)
}
table_of <- function(a) list(resid_df = jvec(a[, 1]), resid_dev = jvec(a[, 2]), df = jvec(a[-1, 3]),
                             deviance = jvec(a[-1, 4]), statistic = jvec(if (ncol(a) == 6) a[-1, 5] else a[-1, 4]),
                             p_value = jvec(a[-1, ncol(a)]))
strip <- function(m) m[names(m) != "model"]
out <- list()
g0 <- model(y ~ s(x0, bs = "cr") + s(x1, bs = "cr"))
g1 <- model(y ~ s(x0, bs = "cr") + s(x1, bs = "cr") + s(x2, bs = "cr"))
g2 <- model(y ~ s(x0, bs = "cr") + s(x1, bs = "cr") + s(x2, bs = "cr") + s(x3, bs = "cr"))
out$gaussian <- list(models = list(strip(g0), strip(g1), strip(g2)),
                     F = table_of(anova(g0$model, g1$model, g2$model, test = "F")),
                     Chisq = table_of(anova(g0$model, g1$model, g2$model, test = "Chisq")))
b0 <- model(b ~ s(x0, bs = "cr"), binomial())
b1 <- model(b ~ s(x0, bs = "cr") + s(x2, bs = "cr"), binomial())
out$binomial <- list(models = list(strip(b0), strip(b1)),
                     Chisq = table_of(anova(b0$model, b1$model, test = "Chisq")))
print(anova(g0$model, g1$model, g2$model, test = "F"))
print(anova(b0$model, b1$model, test = "Chisq"))
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE), "tests/data/mgcv_anova_reference.json")
