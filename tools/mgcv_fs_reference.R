#!/usr/bin/env Rscript
# mgcv_fs_reference.R -- factor-smooth interactions s(x, fac, bs = "fs") for
# PenalizedSplineRegressor's s("x", "fac", bs="fs", xt=...) terms.
#
# How to run (from the repository root):
#     Rscript tools/mgcv_fs_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Writes tests/data/sim_fs.csv (simulated here, set.seed(1): 8 levels of f, 60 rows each, a
# common curve of x, per-level intercepts, slopes and wiggles, N(0, 0.3^2) noise) and
# tests/data/mgcv_fs_reference.json. mgcv is only run here; none of its code is copied.
#
# mgcv's fs basis spans the penalty's null space with the eigenvectors eigen() returns for a
# repeated eigenvalue 0, an arbitrary basis; each null-space column has its own smoothing
# parameter, so that choice changes the model. Two references therefore:
#   * "cc": a cyclic base smooth has a one-dimensional null space (the constant), so mgcv's own
#     gam(..., s(x, f, bs = "fs", xt = "cc")) is the reference.
#   * "cr" and "tp": mgcv's construction (smoothCon, then nat.param(type = 1) as
#     smooth.construct.fs.smooth.spec calls it) with the null space rotated to the canonical
#     basis sklmm documents (Gram-Schmidt of 1, x over the rows), fitted by gam() with the
#     per-level columns as a penalized parametric term carrying the fs penalties (paraPen: its
#     smoothing parameters come first in $sp, in the units of the fs penalties before gam()
#     rescales them, which are the units of sklmm's smoothing_params_).
#     The same construction with mgcv's own (unrotated) null space is checked against
#     gam(..., bs = "fs") first, so that the paraPen fit is known to be mgcv's fs model.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

set.seed(1)
G <- 8; m <- 60
f <- rep(seq_len(G), each = m)
x <- runif(G * m)
a <- rnorm(G); b <- rnorm(G); ph <- runif(G, 0, 2 * pi)
y <- sin(2 * pi * x) + a[f] + b[f] * x + 0.5 * sin(4 * x + ph[f]) + rnorm(G * m, 0, 0.3)
yc <- sin(2 * pi * x) + a[f] + 0.7 * sin(2 * pi * x + ph[f]) + rnorm(G * m, 0, 0.3)  # periodic in x
d <- data.frame(y = y, yc = yc, x = x, f = sprintf("g%d", f))
write.csv(d, "tests/data/sim_fs.csv", row.names = FALSE)
d$f <- factor(d$f)

entry <- function(g, formula) {
  s <- summary(g)
  cat(sprintf("%s: edf %s, REML %.8f, sp %s\n", formula, paste(round(s$edf, 4), collapse = " "), g$gcv.ubre,
              paste(signif(g$sp, 5), collapse = " ")))
  list(formula = formula, fitted = jvec(fitted(g)), edf_smooth = jvec(s$edf), edf_total = jnum(sum(g$edf)),
       sp = jvec(g$sp), sp_names = I(names(g$sp)),
       # gam() divides each smooth's penalties by S.scale: sp / S.scale is in the penalties' own units
       S_scale = jvec(unlist(lapply(g$smooth, function(sm) rep_len(if (is.null(sm$S.scale)) 1 else sm$S.scale, length(sm$S))))),
       reml_score = jnum(g$gcv.ubre), sig2 = jnum(g$sig2),
       s_table = jmat(s$s.table))
}

## the fs columns of mgcv's construction, optionally with the null space made canonical
fs_columns <- function(bs, k, canonical) {
  # the base smooth as smooth.construct.fs.smooth.spec builds it (its penalty not rescaled)
  sm <- smooth.construct(s(x, bs = bs, k = k), data = d, knots = NULL)
  rp <- mgcv:::nat.param(sm$X, sm$S[[1]], rank = sm$rank, type = 1)
  X <- rp$X
  r <- sm$rank; kk <- ncol(X); null <- (r + 1):kk
  if (canonical) {
    C <- cbind(1, d$x)[, seq_along(null), drop = FALSE]
    qa <- qr(crossprod(X[, null, drop = FALSE], C))
    Q <- qr.Q(qa); R <- qr.R(qa)
    X[, null] <- X[, null, drop = FALSE] %*% Q %*% diag(sign(diag(R)), length(null))
  }
  Xf <- matrix(0, nrow(X), kk * G)
  for (i in seq_len(G)) Xf[, (i - 1) * kk + 1:kk] <- X * (as.integer(d$f) == i)
  S <- list(diag(rep(c(rp$D, rep(0, length(null))), G)))
  for (j in seq_along(null)) {
    u <- rep(0, kk); u[r + j] <- 1
    S[[j + 1]] <- diag(rep(u, G))
  }
  list(X = Xf, S = S)
}
para_fit <- function(bs, k, canonical) {
  fc <- fs_columns(bs, k, canonical)
  d$Xfs <- fc$X
  gam(y ~ s(x, bs = "cr") + Xfs, data = d, paraPen = list(Xfs = fc$S), method = "REML")
}

out <- list()
# the construction reproduces mgcv's fs (its own null space)
own <- gam(y ~ s(x, bs = "cr") + s(x, f, bs = "fs", xt = "cr", k = 5), data = d, method = "REML")
check <- para_fit("cr", 5, FALSE)
cat(sprintf("paraPen with mgcv's null space vs gam(bs = 'fs'): max |fitted diff| %.2e, REML %.8f vs %.8f\n",
            max(abs(fitted(own) - fitted(check))), own$gcv.ubre, check$gcv.ubre))
stopifnot(max(abs(fitted(own) - fitted(check))) < 1e-6 * sd(d$y))
out$mgcv_fs_cr_own_basis <- entry(own, "y ~ s(x, bs = 'cr') + s(x, f, bs = 'fs', xt = 'cr', k = 5) (mgcv's null basis)")

out$fs_cr <- entry(para_fit("cr", 5, TRUE), "y ~ s(x, bs = 'cr') + s(x, f, bs = 'fs', xt = 'cr', k = 5), canonical null space")
out$fs_tp <- entry(para_fit("tp", 6, TRUE), "y ~ s(x, bs = 'cr') + s(x, f, bs = 'fs', xt = 'tp', k = 6), canonical null space")
out$fs_cc <- entry(gam(yc ~ s(x, bs = "cc") + s(x, f, bs = "fs", xt = "cc", k = 6), data = d, method = "REML"),
                   "yc ~ s(x, bs = 'cc') + s(x, f, bs = 'fs', xt = 'cc', k = 6)")
# a Poisson GAMM of counts with fs curves (cc: mgcv's own model)
set.seed(2)
d$count <- rpois(nrow(d), exp(0.5 + 0.5 * (d$yc - mean(d$yc))))
out$fs_cc_poisson <- entry(gam(count ~ s(x, f, bs = "fs", xt = "cc", k = 6), data = d, family = poisson, method = "REML"),
                           "count ~ s(x, f, bs = 'fs', xt = 'cc', k = 6), poisson")
write.csv(d[, c("y", "yc", "x", "f", "count")], "tests/data/sim_fs.csv", row.names = FALSE)
writeLines(toJSON(out, auto_unbox = TRUE, json_verbatim = TRUE, pretty = TRUE), "tests/data/mgcv_fs_reference.json")
