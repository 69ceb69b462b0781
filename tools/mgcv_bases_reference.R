#!/usr/bin/env Rscript
# mgcv_bases_reference.R -- mgcv's thin plate regression splines (bs = "tp", its default) and
# cyclic cubic regression splines (bs = "cc"), for sklmm's basis="tp" / basis="cc"
# (sklmm/_engine/smooth_bases.py) and the formula door's s(x) (which is bs = "tp", k = 10).
#
# How to run (from the repository root):
#     Rscript tools/mgcv_bases_reference.R
# Needs R with mgcv and jsonlite (Debian: apt-get install r-cran-mgcv r-cran-jsonlite).
# Input:  sklmm/datasets/data/mcycle.csv.
# Output: tests/data/sim_bases.csv (simulated data, set.seed(20240611), written here at full
#         precision and read back) and tests/data/mgcv_bases_reference.json.
# mgcv is only run here; none of its code is copied into sklmm.
#
# Data columns of sim_bases.csv (n = 300):
#   x_w, y_w   a covariate with weird spacing (a dense clump near 0, a narrow cluster at 0.5,
#              a long sparse tail up to ~3, rounded to 3 decimals so that values tie), and a
#              smooth of it plus noise;
#   doy, y_doy a day-of-year-like covariate in [0, 365] and a periodic signal plus noise;
#   y_add      the two signals added (an additive model mixing cc and tp);
#   x2, z2, y2 two covariates in the unit square and a smooth surface plus noise (a thin plate
#              spline of two variables, all points unique, n <= 2000: mgcv uses every point).
#
# Every entry holds: the fit's fitted values, per-smooth edf, total edf, sp, S.scale and
# lambda = sp / S.scale (the multiplier of the basis's own penalty: int f''^2 for cc, the thin
# plate penalty J(f) for tp), sig2 (= scale), the REML score g$gcv.ubre (mgcv's negative
# restricted log-likelihood, minimized), that score at fixed sp = factor * g$sp for factors 0.1
# and 10 (so that criteria on another scale can be compared up to an additive constant), the
# knots of cc smooths (smooth$xp), and predictions (with standard errors) at new points.

suppressPackageStartupMessages({
  library(mgcv)
  library(jsonlite)
})
script_file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
script_dir <- if (length(script_file) == 1) dirname(gsub("~+~", " ", script_file, fixed = TRUE)) else "tools"
source(file.path(script_dir, "json_helpers.R"))

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/mgcv_bases_reference.R")
}

## --- data -------------------------------------------------------------------------------------
mcycle <- read_data("sklmm/datasets/data/mcycle.csv")

set.seed(20240611)
n <- 300
x_w <- round(c(0.3 * runif(150)^3, 0.5 + 0.01 * runif(50), 0.7 + rexp(100, 1.5)), 3)
y_w <- sin(3 * x_w) * exp(-x_w / 2) + rnorm(n, sd = 0.2)
doy <- round(runif(n, 0, 365), 1)
f_doy <- 2 * sin(2 * pi * doy / 365) + cos(4 * pi * doy / 365)
y_doy <- f_doy + rnorm(n, sd = 0.5)
y_add <- f_doy + sin(3 * x_w) * exp(-x_w / 2) + rnorm(n, sd = 0.4)
x2 <- runif(n)
z2 <- runif(n)
y2 <- 1.5 * exp(-((x2 - 0.3)^2 + (z2 - 0.6)^2) / 0.08) + sin(3 * x2) * z2 + rnorm(n, sd = 0.1)
sim <- data.frame(x_w, y_w, doy, y_doy, y_add, x2, z2, y2)
sim_path <- "tests/data/sim_bases.csv"
writeLines(c(paste(names(sim), collapse = ","),
             do.call(paste, c(lapply(sim, fmt_num), sep = ","))), sim_path)
sim_read <- read_data(sim_path)
stopifnot(isTRUE(all.equal(sim_read, sim, tolerance = 0, check.attributes = FALSE)))
stopifnot(anyDuplicated(x_w) > 0, anyDuplicated(cbind(x2, z2)) == 0)

## --- one entry ---------------------------------------------------------------------------------
profile_factors <- c(0.1, 10)

entry <- function(key, form_str, data, data_name, newdata, knots = NULL) {
  form <- as.formula(form_str)
  g <- gam(form, data = data, method = "REML", knots = knots)
  if (!isTRUE(g$converged) || !identical(g$outer.info$conv, "full convergence")) {
    warning(key, ": convergence: ", g$outer.info$conv)
  }
  sm <- g$smooth
  sp <- unname(g$sp)
  edf_smooth <- vapply(sm, function(s) sum(g$edf[s$first.para:s$last.para]), 0)
  stopifnot(isTRUE(all.equal(edf_smooth, as.numeric(summary(g)$edf), tolerance = 1e-12)))
  smooths <- lapply(seq_along(sm), function(i) {
    s <- sm[[i]]
    out <- list(label = s$label, term = jchr(s$term),
                bs = if (inherits(s, "cyclic.smooth")) "cc" else if (inherits(s, "tprs.smooth")) "tp"
                     else if (inherits(s, "cr.smooth")) "cr" else stop("unexpected smooth class"),
                k = s$bs.dim, sp = jnum(sp[i]), S_scale = jnum(s$S.scale),
                lambda = jnum(sp[i] / s$S.scale), edf = jnum(edf_smooth[i]),
                null_space_dim = s$null.space.dim)
    if (inherits(s, "cyclic.smooth")) out$knots <- jvec(s$xp)
    if (inherits(s, "tprs.smooth")) {
      out$n_knots <- nrow(s$Xu)   # the unique points whose spline is truncated
      out$shift <- jvec(s$shift)  # the covariates' means, which mgcv subtracts
      out$m <- s$p.order[1]
    }
    out
  })
  prof <- lapply(profile_factors, function(f) {
    h <- gam(form, data = data, method = "REML", knots = knots, sp = sp * f)
    list(factor = jnum(f), sp = jvec(sp * f), score = jnum(h$gcv.ubre))
  })
  pr <- predict(g, newdata = newdata, se.fit = TRUE)
  cat(sprintf("%-16s REML=%.8f sp=[%s] edf=[%s] sig2=%.6g\n", key, g$gcv.ubre,
              paste(sprintf("%.6g", sp), collapse = ", "),
              paste(sprintf("%.5f", edf_smooth), collapse = ", "), g$sig2))
  list(
    formula = form_str,
    data = data_name,
    knots_arg = if (is.null(knots)) NULL else lapply(knots, jvec),
    method = "REML",
    nobs = nrow(data),
    converged = identical(g$outer.info$conv, "full convergence"),
    reml_score = jnum(g$gcv.ubre),
    sp = jvec(sp),
    S_scale = jvec(vapply(sm, function(s) s$S.scale, 0)),
    lambda = jvec(sp / vapply(sm, function(s) s$S.scale, 0)),
    sig2 = jnum(g$sig2),
    edf_total = jnum(sum(g$edf)),
    edf_smooth = jvec(edf_smooth),
    coef_intercept = jnum(coef(g)[1]),
    fitted = jvec(fitted(g)),
    y_sd = jnum(sd(g$y)),
    smooths = smooths,
    reml_profile = prof,
    new = lapply(newdata, jvec),
    new_fit = jvec(pr$fit),
    new_se = jvec(pr$se.fit)
  )
}

grid1 <- function(v, ext = 0.05, len = 41) {
  r <- range(v)
  seq(r[1] - ext * diff(r), r[2] + ext * diff(r), length = len)
}

out <- list()
for (k in c(5, 10, 20)) {
  out[[paste0("mcycle_tp_k", k)]] <- entry(
    paste0("mcycle_tp_k", k), sprintf("accel ~ s(times, k = %d)", k), mcycle, "mcycle.csv",
    data.frame(times = grid1(mcycle$times)))
}
# cr's smallest basis (mgcv accepts k = 3: one penalized direction beside the line)
out$mcycle_cr_k3 <- entry("mcycle_cr_k3", 'accel ~ s(times, bs = "cr", k = 3)', mcycle, "mcycle.csv",
                          data.frame(times = grid1(mcycle$times)))
# knots given to a tp smooth: the spline on those 25 points is truncated to rank 10
out$mcycle_tp_knots <- entry("mcycle_tp_knots", "accel ~ s(times, k = 10)", mcycle, "mcycle.csv",
                             data.frame(times = grid1(mcycle$times)),
                             knots = list(times = seq(2, 57, length = 25)))
for (k in c(5, 10, 20)) {
  out[[paste0("weird_tp_k", k)]] <- entry(
    paste0("weird_tp_k", k), sprintf('y_w ~ s(x_w, bs = "tp", k = %d)', k), sim, "sim_bases.csv",
    data.frame(x_w = grid1(sim$x_w)))
}
# the cyclic smooth: predictions beyond the knots wrap around the period
doy_new <- data.frame(doy = seq(-60, 425, length = 41))
out$doy_cc <- entry("doy_cc", 'y_doy ~ s(doy, bs = "cc", k = 10)', sim, "sim_bases.csv", doy_new)
out$doy_cc_ends <- entry("doy_cc_ends", 'y_doy ~ s(doy, bs = "cc", k = 10)', sim, "sim_bases.csv",
                         doy_new, knots = list(doy = c(0, 365)))
out$add_cc_tp <- entry("add_cc_tp", 'y_add ~ s(doy, bs = "cc", k = 12) + s(x_w, k = 10)', sim,
                       "sim_bases.csv",
                       data.frame(doy = seq(0, 365, length = 21), x_w = seq(0, 3, length = 21)),
                       knots = list(doy = c(0, 365)))
g2 <- expand.grid(x2 = seq(0.05, 0.95, length = 6), z2 = seq(0.05, 0.95, length = 6))
out$tp2d_k30 <- entry("tp2d_k30", "y2 ~ s(x2, z2, k = 30)", sim, "sim_bases.csv", g2)

# 800 points (more than sklmm's threshold for computing E's leading eigenvectors by Lanczos
# iterations rather than all of them; still below max.knots = 2000, so every point is a knot),
# from closed forms that the Python tests recompute: i = 1..800,
#   u = (i * (sqrt(5) - 1) / 2) %% 1,  v = (i * sqrt(2)) %% 1,  e = sin(37 * i) / 5
#   y1 = sin(6 * u) + e,  y2 = exp(-((u - 0.3)^2 + (v - 0.6)^2) / 0.08) + u * v + e
i <- 1:800
lg <- data.frame(u = (i * (sqrt(5) - 1) / 2) %% 1, v = (i * sqrt(2)) %% 1)
lg$y1 <- sin(6 * lg$u) + sin(37 * i) / 5
lg$y2 <- exp(-((lg$u - 0.3)^2 + (lg$v - 0.6)^2) / 0.08) + lg$u * lg$v + sin(37 * i) / 5
out$large_tp_k15 <- entry("large_tp_k15", "y1 ~ s(u, k = 15)", lg, "closed form, n = 800",
                          data.frame(u = seq(0, 1, length = 21)))
out$large_tp2d_k40 <- entry("large_tp2d_k40", "y2 ~ s(u, v, k = 40)", lg, "closed form, n = 800",
                            expand.grid(u = seq(0.1, 0.9, length = 5), v = seq(0.1, 0.9, length = 5)))

# what mgcv does with two knots for a cc smooth: the knots are placed at quantiles of the unique
# values of the two ends and the data together (so they are not evenly spaced between the ends)
sm2 <- smoothCon(s(doy, bs = "cc", k = 10), data = sim, knots = list(doy = c(0, 365)))[[1]]
xu <- sort(unique(c(0, 365, sim$doy)))
stopifnot(isTRUE(all.equal(as.numeric(sm2$xp), unname(quantile(xu, seq(0, 1, length = 10), type = 7)),
                           tolerance = 1e-12)))

out$meta <- list(
  r_version = R.version.string,
  mgcv_version = as.character(packageVersion("mgcv")),
  jsonlite_version = as.character(packageVersion("jsonlite")),
  generated_by = "tools/mgcv_bases_reference.R",
  notes = paste(
    "reml_score: g$gcv.ubre (mgcv's REML score, a negative restricted log-likelihood);",
    "reml_profile: gcv.ubre at fixed sp = factor * g$sp; lambda = sp / S.scale;",
    "edf_smooth: sum of g$edf over each smooth's coefficients; new_fit/new_se: predict(se.fit = TRUE)",
    "at the points in 'new'; y_sd: sd of the response.")
)
txt <- toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
              json_verbatim = TRUE, pretty = TRUE)
writeLines(txt, "tests/data/mgcv_bases_reference.json", useBytes = TRUE)
invisible(fromJSON("tests/data/mgcv_bases_reference.json", simplifyVector = FALSE))
cat("wrote tests/data/sim_bases.csv and tests/data/mgcv_bases_reference.json\n")
