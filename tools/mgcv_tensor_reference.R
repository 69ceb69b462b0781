#!/usr/bin/env Rscript
# mgcv_tensor_reference.R -- mgcv's tensor product smooths te() and ti() (with their default
# margin reparameterization, np = TRUE), for sklmm's TensorSmooth (sklmm/_engine/tensor.py).
#
# How to run (from the repository root):
#     Rscript tools/mgcv_tensor_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Output: tests/data/sim_tensor.csv (simulated data, set.seed(20240612), written here at full
#         precision and read back) and tests/data/mgcv_tensor_reference.json.
# mgcv is only run here; none of its code is copied into sklmm.
#
# Data columns of sim_tensor.csv (n = 300):
#   x, z     two covariates on different scales (x in [1, 3], z in [0, 1]);
#   w        a third covariate in [0, 1];
#   y_te     a smooth surface of x and z plus noise;
#   y_add    the surface plus a smooth of w plus noise (te + s(w));
#   y_ti     main effects of x and z and a smaller interaction plus noise (ti ANOVA decomposition);
#   y_lin    (x - 2) sin(2 pi z) plus noise: linear in x for each z, so te's x-penalty's smoothing
#            parameter is large (the surface nearly in that penalty's null space).
#
# Every entry holds: the fit's fitted values, per-smooth edf, total edf, sp, S.scale of each
# penalty and lambda = sp / S.scale (the multiplier of mgcv's own tensor penalty: each margin's
# penalty in its reparameterized coordinates scaled to largest eigenvalue 1, Kronecker the other
# margins' identities), sig2 (= scale), the score g$gcv.ubre (REML or ML, minimized), that score at
# fixed sp = factors * g$sp for three factor vectors (so that criteria on another scale can be
# compared up to an additive constant), the smooths' null space dimensions and margin knots, and
# predictions (with standard errors) at new points.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

if (!dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/mgcv_tensor_reference.R")
}

## --- data -------------------------------------------------------------------------------------
set.seed(20240612)
n <- 300
x <- 1 + 2 * runif(n)
z <- runif(n)
w <- runif(n)
f_te <- 1.5 * exp(-((x - 2)^2 / 0.5 + (z - 0.6)^2 / 0.1)) + 0.5 * x * z
y_te <- f_te + rnorm(n, sd = 0.2)
y_add <- f_te + sin(2 * pi * w) + rnorm(n, sd = 0.3)
y_ti <- sin(1.5 * x) + 3 * (z - 0.5)^2 + 0.8 * (x - 2) * sin(3 * z) + rnorm(n, sd = 0.2)
y_lin <- (x - 2) * sin(2 * pi * z) + rnorm(n, sd = 0.2)
sim <- data.frame(x, z, w, y_te, y_add, y_ti, y_lin)
sim_path <- "tests/data/sim_tensor.csv"
writeLines(c(paste(names(sim), collapse = ","),
             do.call(paste, c(lapply(sim, fmt_num), sep = ","))), sim_path)
sim <- read_data(sim_path)
stopifnot(isTRUE(all.equal(sim, data.frame(x, z, w, y_te, y_add, y_ti, y_lin),
                           tolerance = 0, check.attributes = FALSE)))

## --- one entry ---------------------------------------------------------------------------------
# the profile: sp times each factor vector (recycled over the model's smoothing parameters)
profile_factors <- list(c(0.1, 10), c(10, 0.2), c(3))

smooth_info <- function(s, sp_s, edf_s) {
  out <- list(label = s$label, term = jchr(s$term), sp = jvec(sp_s), S_scale = jvec(s$S.scale),
              lambda = jvec(sp_s / s$S.scale), edf = jnum(edf_s),
              null_space_dim = s$null.space.dim, n_coef = s$last.para - s$first.para + 1)
  if (inherits(s, "tensor.smooth")) {
    out$interaction <- isTRUE(s$inter)
    out$margins <- lapply(s$margin, function(m) {
      bs <- c(cr.smooth = "cr", cyclic.smooth = "cc", pspline.smooth = "ps", tprs.smooth = "tp")[class(m)[1]]
      if (is.na(bs)) stop("unexpected margin class ", class(m)[1])
      mo <- list(term = jchr(m$term), bs = unname(bs), k = m$bs.dim)
      if (!is.null(m$xp)) mo$knots <- jvec(m$xp)   # cr and cc margins
      mo
    })
  }
  out
}

entry <- function(key, form_str, newdata, method = "REML") {
  form <- as.formula(form_str)
  g <- gam(form, data = sim, method = method)
  if (!isTRUE(g$converged) || !identical(g$outer.info$conv, "full convergence")) {
    warning(key, ": convergence: ", g$outer.info$conv)
  }
  sm <- g$smooth
  sp <- unname(g$sp)
  edf_smooth <- vapply(sm, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
  stopifnot(isTRUE(all.equal(edf_smooth, as.numeric(summary(g)$edf), tolerance = 1e-12)))
  # the smoothing parameters of each smooth (te has one per margin)
  sp_of <- list()
  j <- 0
  for (i in seq_along(sm)) {
    ns <- length(sm[[i]]$S)
    sp_of[[i]] <- sp[j + seq_len(ns)]
    j <- j + ns
  }
  stopifnot(j == length(sp))
  smooths <- lapply(seq_along(sm), function(i) smooth_info(sm[[i]], sp_of[[i]], edf_smooth[i]))
  S_scale <- unlist(lapply(sm, function(s) s$S.scale))
  prof <- lapply(profile_factors, function(f) {
    f <- rep_len(f, length(sp))
    h <- gam(form, data = sim, method = method, sp = sp * f)
    list(factor = jvec(f), sp = jvec(sp * f), score = jnum(h$gcv.ubre))
  })
  pr <- predict(g, newdata = newdata, se.fit = TRUE)
  cat(sprintf("%-18s %s=%.8f sp=[%s] edf=[%s] sig2=%.6g\n", key, method, g$gcv.ubre,
              paste(sprintf("%.6g", sp), collapse = ", "),
              paste(sprintf("%.5f", edf_smooth), collapse = ", "), g$sig2))
  list(
    formula = form_str,
    method = method,
    nobs = nrow(sim),
    converged = identical(g$outer.info$conv, "full convergence"),
    score = jnum(g$gcv.ubre),
    sp = jvec(sp),
    S_scale = jvec(S_scale),
    lambda = jvec(sp / S_scale),
    sig2 = jnum(g$sig2),
    edf_total = jnum(sum(g$edf)),
    edf_smooth = jvec(edf_smooth),
    n_coef = length(coef(g)),
    coef_intercept = jnum(coef(g)[1]),
    fitted = jvec(fitted(g)),
    y_sd = jnum(sd(g$y)),
    smooths = smooths,
    profile = prof,
    new = lapply(newdata, jvec),
    new_fit = jvec(pr$fit),
    new_se = jvec(pr$se.fit)
  )
}

# new points: a 6 x 6 grid over the data's range widened by 3% (a little extrapolation)
grid1 <- function(v, ext = 0.03, len = 6) {
  r <- range(v)
  seq(r[1] - ext * diff(r), r[2] + ext * diff(r), length = len)
}
gxz <- expand.grid(x = grid1(sim$x), z = grid1(sim$z))
gxzw <- cbind(gxz, w = rep(seq(0.05, 0.95, length = 6), 6))

out <- list()
out$te_default <- entry("te_default", "y_te ~ te(x, z)", gxz)
out$te_k64 <- entry("te_k64", "y_te ~ te(x, z, k = c(6, 4))", gxz)
out$te_cr_ps <- entry("te_cr_ps", 'y_te ~ te(x, z, bs = c("cr", "ps"))', gxz)
out$te_tp_cr <- entry("te_tp_cr", 'y_te ~ te(x, z, bs = c("tp", "cr"), k = c(6, 5))', gxz)
out$te_cr_cc <- entry("te_cr_cc", 'y_te ~ te(x, z, bs = c("cr", "cc"), k = c(5, 6))', gxz)
out$te_add <- entry("te_add", "y_add ~ te(x, z) + s(w)", gxzw)
out$ti_anova <- entry("ti_anova", "y_ti ~ ti(x) + ti(z) + ti(x, z)", gxz)
out$ti_ps <- entry("ti_ps", 'y_ti ~ ti(x) + ti(z) + ti(x, z, bs = c("ps", "cr"), k = c(6, 5))', gxz)
out$te_nearly_linear <- entry("te_nearly_linear", "y_lin ~ te(x, z)", gxz)
out$te3 <- entry("te3", "y_add ~ te(x, z, w)", gxzw)  # three margins: 125 coefficients
out$te_default_ml <- entry("te_default_ml", "y_te ~ te(x, z)", gxz, method = "ML")

# a binomial te (Laplace approximate REML, Wood 2011): y_te above its median
yb <- as.numeric(sim$y_te > median(sim$y_te))
gb <- gam(yb ~ te(x, z), family = binomial, data = cbind(sim, yb = yb), method = "REML")
stopifnot(identical(gb$outer.info$conv, "full convergence"))
out$te_binomial <- list(
  formula = "as.numeric(y_te > median(y_te)) ~ te(x, z), family = binomial", method = "REML",
  score = jnum(gb$gcv.ubre), sp = jvec(gb$sp), S_scale = jvec(gb$smooth[[1]]$S.scale),
  lambda = jvec(gb$sp / gb$smooth[[1]]$S.scale), edf_smooth = jvec(sum(gb$edf[-1])),
  edf_total = jnum(sum(gb$edf)), fitted = jvec(fitted(gb)))
cat(sprintf("%-18s REML=%.8f sp=[%s] edf=%.5f\n", "te_binomial", gb$gcv.ubre,
            paste(sprintf("%.6g", gb$sp), collapse = ", "), sum(gb$edf[-1])))

# what the entries rely on (checked here, not assumed):
# te's marginal penalties are Kronecker products with identities in mgcv's margin coordinates;
# cr and cc margins are not reparameterized (noterp), ps and tp margins are (np = TRUE);
# ti(x, z) has no overall constraint and a null space of dimension 1 for two cr margins.
s_te <- smoothCon(te(x, z), data = sim, absorb.cons = FALSE, scale.penalty = FALSE)[[1]]
S1 <- s_te$margin[[1]]$S[[1]]
S2 <- s_te$margin[[2]]$S[[1]]
S1 <- S1 / max(eigen(S1, symmetric = TRUE, only.values = TRUE)$values)
S2 <- S2 / max(eigen(S2, symmetric = TRUE, only.values = TRUE)$values)
stopifnot(length(s_te$XP) == 0,
          max(abs(s_te$S[[1]] - S1 %x% diag(5))) < 1e-12,
          max(abs(s_te$S[[2]] - diag(5) %x% S2)) < 1e-12)
s_ps <- smoothCon(te(x, z, bs = c("ps", "cr")), data = sim, absorb.cons = FALSE)[[1]]
stopifnot(length(s_ps$XP) == 1, !is.null(s_ps$XP[[1]]))
s_ti <- smoothCon(ti(x, z), data = sim, absorb.cons = TRUE)[[1]]
stopifnot(ncol(s_ti$X) == 16, s_ti$null.space.dim == 1)

out$meta <- list(
  r_version = R.version.string,
  mgcv_version = as.character(packageVersion("mgcv")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = "tools/mgcv_tensor_reference.R",
  notes = paste(
    "score: g$gcv.ubre (mgcv's REML or ML score, a negative log-likelihood);",
    "profile: gcv.ubre at fixed sp = factor * g$sp (factor recycled); lambda = sp / S.scale,",
    "one per penalty (te: one per margin); edf_smooth: sum of g$edf over each smooth's",
    "coefficients; new_fit/new_se: predict(se.fit = TRUE) at the points in 'new';",
    "y_sd: sd of the response.")
)
txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/mgcv_tensor_reference.json", useBytes = TRUE)
invisible(fromJSON("tests/data/mgcv_tensor_reference.json", simplifyVector = FALSE))
cat("wrote tests/data/sim_tensor.csv and tests/data/mgcv_tensor_reference.json\n")
