#!/usr/bin/env Rscript
# make_datasets.R -- regenerate the CSV data sets bundled with sklmm.
#
# How to run (from the repository root):
#     Rscript tools/make_datasets.R
#
# Needs R >= 4.0 with the packages lme4, MASS (Debian/Ubuntu:
#     apt-get install r-base-core r-cran-lme4 r-cran-mass
# ).  Only *data* are taken from those packages; no R code is copied into
# sklmm.  The script writes:
#     sklmm/datasets/data/{sleepstudy,dyestuff,penicillin,pastes,mcycle,
#                          engine,schools}.csv
#     tests/data/{sim_crossed,sim_nested}.csv
#
# CSV conventions: comma separated, one header line, no row names, no quoting
# (no label contains a comma or a quote), factors written as their labels,
# doubles written with the shortest decimal representation (15, 16 or 17
# significant digits) that reads back as exactly the same IEEE double, so
# Python's float parser recovers R's numbers bit for bit.

suppressPackageStartupMessages({
  library(lme4)
  library(MASS)
})

if (!dir.exists("sklmm/datasets/data") || !dir.exists("tests/data")) {
  stop("run this script from the repository root: Rscript tools/make_datasets.R")
}

source("tools/csv_helpers.R")  # fmt_double, write_data

dd <- "sklmm/datasets/data"

## --- data sets distributed with lme4 ---------------------------------------
write_data(lme4::sleepstudy[, c("Reaction", "Days", "Subject")],
           file.path(dd, "sleepstudy.csv"))
write_data(lme4::Dyestuff[, c("Batch", "Yield")],
           file.path(dd, "dyestuff.csv"))
write_data(lme4::Penicillin[, c("diameter", "plate", "sample")],
           file.path(dd, "penicillin.csv"))
write_data(lme4::Pastes[, c("strength", "batch", "cask", "sample")],
           file.path(dd, "pastes.csv"))

## --- MASS::mcycle -----------------------------------------------------------
write_data(MASS::mcycle[, c("times", "accel")], file.path(dd, "mcycle.csv"))

## --- engine wear (Wood 2006, sec. 3.2; Hand et al. 1994) --------------------
engine <- data.frame(
  size = c(1.42, 1.58, 1.78, 1.99, 1.99, 1.99, 2.13, 2.13, 2.13, 2.32, 2.32,
           2.32, 2.32, 2.32, 2.43, 2.43, 2.78, 2.98, 2.98),
  wear = c(4.0, 4.2, 2.5, 2.6, 2.8, 2.4, 3.2, 2.4, 2.6, 4.8, 2.9, 3.8, 3.0,
           2.7, 3.1, 3.3, 3.0, 2.8, 1.7))
write_data(engine, file.path(dd, "engine.csv"))

## --- students in schools (simulated) ----------------------------------------
set.seed(123)
n_schools <- 3
n_students_per_school <- 4
school_effects <- rnorm(n_schools, 0, 10)
school_id <- rep(1:n_schools, each = 4)
score <- 50 + school_effects[school_id] + rnorm(12, 0, 15)
schools <- data.frame(school = c("A", "B", "C")[school_id], score = score)
write_data(schools, file.path(dd, "schools.csv"))

## --- tests/data/sim_crossed.csv ---------------------------------------------
# 60 subjects x 25 items, each subject sees a random 15 of the 25 items.
# y = 2 + 0.5 x + b0[subj] + b1[subj] x + c0[item] + e
# (b0, b1) ~ N(0, [1, .15; .15, .25])  (sd 1, sd 0.5, corr 0.3)
# c0 ~ N(0, 0.7^2), e ~ N(0, 1), x ~ N(0, 1).
set.seed(20261121)
n_subj <- 60; n_item <- 25; n_seen <- 15
items_seen <- lapply(seq_len(n_subj), function(i) sort(sample.int(n_item, n_seen)))
subj_id <- rep(seq_len(n_subj), each = n_seen)
item_id <- unlist(items_seen)
n <- length(subj_id)                                  # 900
x <- rnorm(n)
Sigma_subj <- matrix(c(1, 0.3 * 1 * 0.5, 0.3 * 1 * 0.5, 0.5^2), 2, 2)
b_subj <- matrix(rnorm(2 * n_subj), n_subj, 2) %*% chol(Sigma_subj)
b_item <- rnorm(n_item, 0, 0.7)
eps <- rnorm(n, 0, 1)
y <- 2 + 0.5 * x + b_subj[subj_id, 1] + b_subj[subj_id, 2] * x +
  b_item[item_id] + eps
sim_crossed <- data.frame(y = y, x = x,
                          subj = sprintf("s%02d", subj_id),
                          item = sprintf("i%02d", item_id))
stopifnot(nrow(sim_crossed) == 900)
write_data(sim_crossed, "tests/data/sim_crossed.csv")

## --- tests/data/sim_nested.csv ----------------------------------------------
# 8 outer groups o1..o8, each with 5 inner groups labelled a..e (the inner
# labels repeat across outer groups, like Pastes$cask), 6 rows per inner group.
# y = 1 + 2 x + u[outer] + v[outer, inner] + e,
# u ~ N(0, 1.5^2), v ~ N(0, 0.8^2), e ~ N(0, 0.5^2), x ~ U(0, 1).
set.seed(7)
n_outer <- 8; n_inner <- 5; n_rep <- 6
outer_id <- rep(seq_len(n_outer), each = n_inner * n_rep)
inner_id <- rep(rep(seq_len(n_inner), each = n_rep), times = n_outer)
cell_id <- (outer_id - 1) * n_inner + inner_id
n <- length(outer_id)                                 # 240
u_outer <- rnorm(n_outer, 0, 1.5)
v_inner <- rnorm(n_outer * n_inner, 0, 0.8)
x <- runif(n)
eps <- rnorm(n, 0, 0.5)
y <- 1 + 2 * x + u_outer[outer_id] + v_inner[cell_id] + eps
sim_nested <- data.frame(y = y, x = x,
                         outer = sprintf("o%d", outer_id),
                         inner = letters[inner_id])
write_data(sim_nested, "tests/data/sim_nested.csv")
